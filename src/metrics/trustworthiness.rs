//! Trustworthiness of an embedding (Venna & Kaski 2001), computed exactly as
//! `sklearn.manifold.trustworthiness(X, Y, n_neighbors=k)` with euclidean distances:
//!
//! `T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in N_k^Y(i)} max(0, r(i, j) - k)`
//!
//! where `N_k^Y(i)` are the k nearest neighbours of i in the embedding and `r(i, j)` is the rank
//! of j among i's neighbours in the input space (1 = nearest). 1 means every embedded neighbour
//! is also an input-space neighbour. Quadratic in n: subsample above a few thousand points.

use rayon::prelude::*;

use super::distance::{distances_from, nearest};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrustworthinessError {
    #[error("trustworthiness: {what} has {len} values, not a multiple of its dimension {dim}")]
    Shape {
        what: &'static str,
        len: usize,
        dim: usize,
    },
    #[error("trustworthiness: the input has {input} points but the embedding {embedded}")]
    PointCountMismatch { input: usize, embedded: usize },
    #[error(
        "trustworthiness: k = {k} must be at least 1 and below half the number of points ({n})"
    )]
    NeighboursOutOfRange { k: usize, n: usize },
}

/// Trustworthiness of `embedded` (`[n, embedded_dim]`) as a picture of `input` (`[n, input_dim]`)
/// over `k` neighbours, in `[0, 1]`.
pub fn trustworthiness(
    input: &[f32],
    input_dim: usize,
    embedded: &[f32],
    embedded_dim: usize,
    k: usize,
) -> Result<f64, TrustworthinessError> {
    let n = rows("input", input, input_dim)?;
    let embedded_n = rows("embedding", embedded, embedded_dim)?;
    if n != embedded_n {
        return Err(TrustworthinessError::PointCountMismatch {
            input: n,
            embedded: embedded_n,
        });
    }
    if k == 0 || 2 * k >= n {
        return Err(TrustworthinessError::NeighboursOutOfRange { k, n });
    }
    let penalties: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let input_distances = distances_from(input, input_dim, i);
            nearest(&distances_from(embedded, embedded_dim, i), k)
                .into_iter()
                .map(|j| rank(&input_distances, j).saturating_sub(k) as u64)
                .sum()
        })
        .collect();
    let total: u64 = penalties.iter().sum();
    let (n, k) = (n as f64, k as f64);
    Ok(1.0 - total as f64 * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))
}

fn rows(what: &'static str, values: &[f32], dim: usize) -> Result<usize, TrustworthinessError> {
    if dim == 0 || values.len() % dim != 0 {
        return Err(TrustworthinessError::Shape {
            what,
            len: values.len(),
            dim,
        });
    }
    Ok(values.len() / dim)
}

/// 1-based rank of `j` by distance (ties go to the lower index, as a stable sort would).
fn rank(distances: &[f64], j: usize) -> usize {
    let dj = distances[j];
    1 + distances
        .iter()
        .enumerate()
        .filter(|&(l, &d)| d < dj || (d == dj && l < j))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize) -> Vec<f32> {
        (0..n * 3)
            .map(|v| ((v * 7919) % 101) as f32 / 10.0)
            .collect()
    }

    #[test]
    fn identical_embedding_is_fully_trustworthy() {
        let x = points(40);
        assert_eq!(trustworthiness(&x, 3, &x, 3, 5).unwrap(), 1.0);
    }

    #[test]
    fn a_reversed_line_is_still_trustworthy_but_a_shuffled_one_is_not() {
        let line: Vec<f32> = (0..30).map(|v| v as f32).collect();
        let reversed: Vec<f32> = line.iter().map(|v| 100.0 - 2.0 * v).collect();
        assert_eq!(trustworthiness(&line, 1, &reversed, 1, 3).unwrap(), 1.0);
        let shuffled: Vec<f32> = (0..30).map(|v| ((v * 17) % 30) as f32).collect();
        assert!(trustworthiness(&line, 1, &shuffled, 1, 3).unwrap() < 0.8);
    }

    #[test]
    fn rejects_too_many_neighbours() {
        let x = points(10);
        let err = trustworthiness(&x, 3, &x, 3, 5).unwrap_err();
        assert_eq!(
            err,
            TrustworthinessError::NeighboursOutOfRange { k: 5, n: 10 }
        );
    }
}
