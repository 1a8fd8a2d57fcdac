//! Initial 2-D embeddings: the first two principal components scaled so that the first
//! coordinate has standard deviation 1e-4 (scikit-learn's default `init="pca"`), or Gaussian
//! noise with that standard deviation (`init="random"`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Standard deviation of the initial first coordinate (scikit-learn's choice: small enough that
/// the early gradient is dominated by the attraction within clusters).
const INITIAL_STD: f64 = 1e-4;
/// Subspace iterations of the PCA: the init only needs the leading plane roughly right.
const POWER_ITERATIONS: usize = 50;
/// Rows per parallel chunk when summing over rows (fixed so sums are deterministic).
const ROW_CHUNK: usize = 256;

/// `[n, 2]` Gaussian noise with standard deviation 1e-4.
pub(super) fn random(n: usize, seed: u64) -> Vec<f64> {
    gaussian(2 * n, seed)
        .into_iter()
        .map(|v| v * INITIAL_STD)
        .collect()
}

/// `[n, 2]` projections on the two leading principal axes, scaled to std 1e-4 on the first.
/// Falls back to [`random`] when the data has fewer than 2 dimensions or no variance.
pub(super) fn pca(data: &[f32], dim: usize, seed: u64) -> Vec<f64> {
    let n = data.len() / dim.max(1);
    if dim < 2 || n < 2 {
        return random(n, seed);
    }
    let mean = column_means(data, dim);
    let mut basis = gaussian(2 * dim, seed);
    orthonormalise(&mut basis, dim);
    for _ in 0..POWER_ITERATIONS {
        let projected = project(data, dim, &mean, &basis);
        basis = back_project(data, dim, &mean, &projected);
        orthonormalise(&mut basis, dim);
    }
    let embedding = principal_rotation(project(data, dim, &mean, &basis));
    let std = column_std(&embedding, 0);
    if !(std > 0.0) {
        return random(n, seed);
    }
    embedding
        .into_iter()
        .map(|v| v / std * INITIAL_STD)
        .collect()
}

/// Standard normal samples by the Box-Muller transform.
fn gaussian(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1], so the log is finite
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

fn column_means(data: &[f32], dim: usize) -> Vec<f64> {
    let n = data.len() / dim;
    let mut mean = vec![0.0; dim];
    for row in data.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter().map(|m| m / n as f64).collect()
}

/// `(X - mean) B` for the `[dim, 2]` basis `B` stored as two consecutive columns: `[n, 2]`.
fn project(data: &[f32], dim: usize, mean: &[f64], basis: &[f64]) -> Vec<f64> {
    let (b0, b1) = basis.split_at(dim);
    data.par_chunks_exact(dim)
        .flat_map_iter(|row| {
            let mut out = [0.0; 2];
            for ((&v, &m), (&u, &w)) in row.iter().zip(mean).zip(b0.iter().zip(b1)) {
                let centred = f64::from(v) - m;
                out[0] += centred * u;
                out[1] += centred * w;
            }
            out
        })
        .collect()
}

/// `(X - mean)^T P` for `[n, 2]` projections `P`: two columns of length `dim`.
fn back_project(data: &[f32], dim: usize, mean: &[f64], projected: &[f64]) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = data
        .par_chunks(ROW_CHUNK * dim)
        .zip(projected.par_chunks(ROW_CHUNK * 2))
        .map(|(rows, weights)| {
            let mut partial = vec![0.0; 2 * dim];
            for (row, w) in rows.chunks_exact(dim).zip(weights.chunks_exact(2)) {
                let (c0, c1) = partial.split_at_mut(dim);
                for (((&v, &m), a), b) in row.iter().zip(mean).zip(c0).zip(c1) {
                    let centred = f64::from(v) - m;
                    *a += centred * w[0];
                    *b += centred * w[1];
                }
            }
            partial
        })
        .collect();
    partials
        .into_iter()
        .fold(vec![0.0; 2 * dim], |mut total, partial| {
            total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
            total
        })
}

/// Gram-Schmidt on the two columns; a degenerate column is replaced by a unit axis.
fn orthonormalise(basis: &mut [f64], dim: usize) {
    let (b0, b1) = basis.split_at_mut(dim);
    normalise(b0, 0);
    let overlap: f64 = b0.iter().zip(b1.iter()).map(|(a, b)| a * b).sum();
    b1.iter_mut()
        .zip(b0.iter())
        .for_each(|(b, a)| *b -= overlap * a);
    normalise(b1, 1);
}

fn normalise(column: &mut [f64], fallback_axis: usize) {
    let norm = column.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 1e-300 {
        column.iter_mut().for_each(|v| *v /= norm);
    } else {
        column
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = f64::from(u8::from(i == fallback_axis)));
    }
}

/// Rotates `[n, 2]` coordinates so the first axis carries the most variance (the subspace
/// iteration finds the leading plane, not the order of the axes within it).
fn principal_rotation(points: Vec<f64>) -> Vec<f64> {
    let n = (points.len() / 2) as f64;
    let mean = [column_mean(&points, 0), column_mean(&points, 1)];
    let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
    for p in points.chunks_exact(2) {
        let (x, y) = (p[0] - mean[0], p[1] - mean[1]);
        a += x * x / n;
        b += x * y / n;
        c += y * y / n;
    }
    let angle = 0.5 * (2.0 * b).atan2(a - c);
    let (sin, cos) = angle.sin_cos();
    points
        .chunks_exact(2)
        .flat_map(|p| [p[0] * cos + p[1] * sin, -p[0] * sin + p[1] * cos])
        .collect()
}

fn column_mean(points: &[f64], axis: usize) -> f64 {
    let values: Vec<f64> = points.chunks_exact(2).map(|p| p[axis]).collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn column_std(points: &[f64], axis: usize) -> f64 {
    let mean = column_mean(points, axis);
    let n = (points.len() / 2).max(1) as f64;
    (points
        .chunks_exact(2)
        .map(|p| (p[axis] - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_most_variance() {
        // Points spread along (1, 1, 0) with small noise on the other axes.
        let noise = gaussian(300, 7);
        let data: Vec<f32> = (0..100)
            .flat_map(|i| {
                let t = i as f64 - 50.0;
                [
                    t + 0.1 * noise[3 * i],
                    t + 0.1 * noise[3 * i + 1],
                    0.1 * noise[3 * i + 2],
                ]
                .map(|v| v as f32)
            })
            .collect();
        let embedding = pca(&data, 3, 0);
        assert!((column_std(&embedding, 0) - INITIAL_STD).abs() < 1e-12);
        assert!(column_std(&embedding, 1) < 0.1 * INITIAL_STD);
        // The first coordinate is monotone in t (up to sign).
        let first: Vec<f64> = embedding.chunks_exact(2).map(|p| p[0]).collect();
        let sign = (first[99] - first[0]).signum();
        assert!(first.windows(2).all(|w| (w[1] - w[0]) * sign > 0.0));
    }

    #[test]
    fn random_init_is_seeded() {
        assert_eq!(random(10, 3), random(10, 3));
        assert_ne!(random(10, 3), random(10, 4));
    }
}
