//! Input-space affinities of Barnes-Hut t-SNE: exact k nearest neighbours (k = 3 * perplexity),
//! conditional probabilities `p(j|i)` whose entropy is calibrated to `ln(perplexity)` by a binary
//! search on the Gaussian precision, then the symmetric joint `P = (P_cond + P_cond^T) / sum`
//! as a sparse matrix, all as in scikit-learn's `_joint_probabilities_nn`.

use rayon::prelude::*;

use crate::metrics::distance::squared_f32;

/// Entropy tolerance and step budget of the binary search (scikit-learn's values).
const ENTROPY_TOLERANCE: f64 = 1e-5;
const SEARCH_STEPS: usize = 100;

/// The k nearest neighbours of every row (self excluded), nearest first.
pub(super) struct Neighbours {
    pub k: usize,
    /// `[n, k]` row indices.
    pub indices: Vec<u32>,
    /// `[n, k]` squared euclidean distances.
    pub sq_distances: Vec<f32>,
}

/// Exact neighbour search by brute force, parallel over rows.
pub(super) fn nearest_neighbours(data: &[f32], dim: usize, k: usize) -> Neighbours {
    let n = data.len() / dim;
    let rows: Vec<Vec<(f32, u32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let row = &data[i * dim..(i + 1) * dim];
            let mut all: Vec<(f32, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (squared_f32(row, &data[j * dim..(j + 1) * dim]), j as u32))
                .collect();
            // Ties are broken by index so the result does not depend on the selection algorithm.
            let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if k < all.len() {
                all.select_nth_unstable_by(k, order);
                all.truncate(k);
            }
            all.sort_unstable_by(order);
            all
        })
        .collect();
    Neighbours {
        k,
        indices: rows
            .iter()
            .flat_map(|r| r.iter().map(|&(_, j)| j))
            .collect(),
        sq_distances: rows
            .iter()
            .flat_map(|r| r.iter().map(|&(d, _)| d))
            .collect(),
    }
}

/// `p(j|i)` for each row's neighbours, `[n, k]`, each row summing to 1 with entropy
/// `ln(perplexity)`.
pub(super) fn conditional_probabilities(neighbours: &Neighbours, perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let mut probabilities = vec![0.0; neighbours.sq_distances.len()];
    probabilities
        .par_chunks_mut(neighbours.k)
        .zip(neighbours.sq_distances.par_chunks(neighbours.k))
        .for_each(|(out, distances)| calibrate_row(distances, target, out));
    probabilities
}

/// Binary search on the precision `beta` of `exp(-beta * d)` until the row's entropy (in nats)
/// is within tolerance of `target`. Distances are shifted by their minimum first: the normalised
/// probabilities are unchanged, and the exponentials no longer underflow for large distances.
pub(super) fn calibrate_row(sq_distances: &[f32], target: f64, out: &mut [f64]) {
    let nearest = sq_distances.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f64> = sq_distances
        .iter()
        .map(|&d| f64::from(d - nearest))
        .collect();
    let (mut beta, mut beta_min, mut beta_max) = (1.0, f64::NEG_INFINITY, f64::INFINITY);
    for _ in 0..SEARCH_STEPS {
        let entropy = gaussian_row(&shifted, beta, out);
        let excess = entropy - target;
        if excess.abs() <= ENTROPY_TOLERANCE {
            break;
        }
        // Too much entropy means the kernel is too wide: raise the precision.
        if excess > 0.0 {
            beta_min = beta;
            beta = if beta_max.is_infinite() {
                beta * 2.0
            } else {
                (beta + beta_max) / 2.0
            };
        } else {
            beta_max = beta;
            beta = if beta_min.is_infinite() {
                beta / 2.0
            } else {
                (beta + beta_min) / 2.0
            };
        }
    }
}

/// Writes the normalised kernel `exp(-beta * d)` into `out` and returns its entropy in nats.
fn gaussian_row(shifted: &[f64], beta: f64, out: &mut [f64]) -> f64 {
    let mut sum = 0.0;
    let mut weighted = 0.0;
    for (p, &d) in out.iter_mut().zip(shifted) {
        *p = (-beta * d).exp();
        sum += *p;
        weighted += d * *p;
    }
    // The nearest neighbour has weight exp(0) = 1, so the sum is at least 1.
    for p in out.iter_mut() {
        *p /= sum;
    }
    sum.ln() + beta * weighted / sum
}

/// A symmetric sparse matrix in compressed rows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SparseMatrix {
    /// Row `i` owns entries `row_start[i]..row_start[i + 1]`.
    pub row_start: Vec<usize>,
    pub columns: Vec<u32>,
    pub values: Vec<f64>,
}

/// `(P + P^T) / sum(P + P^T)` from the conditional probabilities of each row's neighbours.
pub(super) fn joint_probabilities(neighbours: &Neighbours, conditional: &[f64]) -> SparseMatrix {
    let n = conditional.len() / neighbours.k.max(1);
    let mut entries: Vec<(u32, u32, f64)> = Vec::with_capacity(2 * conditional.len());
    for (position, (&j, &p)) in neighbours.indices.iter().zip(conditional).enumerate() {
        let i = (position / neighbours.k) as u32;
        entries.push((i, j, p));
        entries.push((j, i, p));
    }
    entries.sort_unstable_by_key(|e| (e.0, e.1));
    let total: f64 = entries.iter().map(|e| e.2).sum();
    let mut matrix = SparseMatrix {
        row_start: vec![0; n + 1],
        columns: Vec::new(),
        values: Vec::new(),
    };
    let mut previous = None;
    for (row, column, value) in entries {
        match matrix.values.last_mut() {
            Some(last) if previous == Some((row, column)) => *last += value / total,
            _ => {
                matrix.columns.push(column);
                matrix.values.push(value / total);
                matrix.row_start[row as usize + 1] += 1;
            }
        }
        previous = Some((row, column));
    }
    for i in 1..=n {
        matrix.row_start[i] += matrix.row_start[i - 1];
    }
    matrix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entropy(p: &[f64]) -> f64 {
        -p.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| v * v.ln())
            .sum::<f64>()
    }

    #[test]
    fn calibration_hits_the_target_entropy() {
        let distances: Vec<f32> = (0..90).map(|j| 0.3 * j as f32 + 1000.0).collect();
        for perplexity in [5.0f64, 30.0, 50.0] {
            let mut p = vec![0.0; distances.len()];
            calibrate_row(&distances, perplexity.ln(), &mut p);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(
                (entropy(&p) - perplexity.ln()).abs() < 1e-4,
                "perplexity {perplexity}"
            );
        }
    }

    #[test]
    fn neighbours_are_sorted_and_exclude_self() {
        let data: Vec<f32> = [0.0, 1.0, 3.0, 6.0, 10.0].to_vec();
        let nn = nearest_neighbours(&data, 1, 2);
        assert_eq!(nn.indices, vec![1, 2, 0, 2, 1, 0, 2, 4, 3, 2]);
        assert_eq!(&nn.sq_distances[..2], &[1.0, 9.0]);
    }

    #[test]
    fn joint_probabilities_are_symmetric_and_sum_to_one() {
        let data: Vec<f32> = (0..12).map(|v| (v as f32).sin() * 4.0).collect();
        let nn = nearest_neighbours(&data, 2, 3);
        let p = joint_probabilities(&nn, &conditional_probabilities(&nn, 2.0));
        assert!((p.values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let get = |i: usize, j: u32| {
            let range = p.row_start[i]..p.row_start[i + 1];
            p.columns[range.clone()]
                .iter()
                .position(|&c| c == j)
                .map(|k| p.values[range.start + k])
        };
        for i in 0..6 {
            for e in p.row_start[i]..p.row_start[i + 1] {
                assert_eq!(get(p.columns[e] as usize, i as u32), Some(p.values[e]));
            }
        }
    }
}
