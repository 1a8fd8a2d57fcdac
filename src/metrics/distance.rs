//! Squared euclidean distances between rows of row-major f32 matrices, the inner loop of the
//! neighbour searches in t-SNE, trustworthiness and k-NN accuracy, and the exact neighbour search
//! of the last two.

/// Lanes of the unrolled loops: independent accumulators let the compiler vectorise the sum
/// (a single running float sum cannot be reordered).
const LANES: usize = 8;

/// `|a - b|^2` accumulated in f32: fast, for neighbour searches whose results feed an iterative
/// calibration anyway.
pub fn squared_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for lane in 0..LANES {
            let d = x[lane] - y[lane];
            acc[lane] += d * d;
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `|a - b|^2` accumulated in f64: exact enough that neighbour ranks match scikit-learn's
/// (which upcasts f32 input to f64 for its distances).
pub fn squared_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for lane in 0..LANES {
            let d = f64::from(x[lane]) - f64::from(y[lane]);
            acc[lane] += d * d;
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// Squared distances from row `i` to every row, infinite to itself so it is nobody's neighbour.
pub fn distances_from(values: &[f32], dim: usize, i: usize) -> Vec<f64> {
    let row = &values[i * dim..(i + 1) * dim];
    values
        .chunks_exact(dim)
        .enumerate()
        .map(|(j, other)| {
            if j == i {
                f64::INFINITY
            } else {
                squared_f64(row, other)
            }
        })
        .collect()
}

/// Indices of the `k` smallest distances.
pub fn nearest(distances: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..distances.len()).collect();
    order.select_nth_unstable_by(k, |&a, &b| {
        distances[a].total_cmp(&distances[b]).then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_precisions_agree_with_the_naive_sum() {
        let a: Vec<f32> = (0..19).map(|v| v as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|v| (v * v) as f32 * 0.1).collect();
        let naive: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        assert!((squared_f64(&a, &b) - naive).abs() < 1e-9 * naive);
        assert!((f64::from(squared_f32(&a, &b)) - naive).abs() < 1e-5 * naive);
    }
}
