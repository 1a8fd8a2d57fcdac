//! Leave-one-out k-nearest-neighbour accuracy: the share of points whose `k` nearest other points
//! (euclidean) give their own label by majority vote. With domains as labels, on a t-SNE's input
//! features or on its 2-D embedding, it says how far apart the domains lie (about 0.5 for two
//! mixed domains of equal size, 1.0 for domains apart); with classes as labels, within one
//! domain, how well that domain's classes cluster. It turns "the domains overlap in the picture"
//! into a number. Quadratic in the points, like trustworthiness.

use rayon::prelude::*;

use super::distance::{distances_from, nearest};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnnError {
    #[error("k-NN accuracy: {len} values are not rows of dimension {dim}")]
    Shape { len: usize, dim: usize },
    #[error("k-NN accuracy: {labels} labels for {n} points")]
    LabelCount { labels: usize, n: usize },
    #[error("k-NN accuracy: k = {k} must be at least 1 and below the number of points ({n})")]
    NeighboursOutOfRange { k: usize, n: usize },
}

/// Leave-one-out accuracy of the `k`-nearest-neighbour vote over `points` (`[n, dim]`,
/// row-major) labelled `labels`. A tied vote goes to the tied label whose member lies nearest.
pub fn knn_accuracy(points: &[f32], dim: usize, labels: &[i64], k: usize) -> Result<f64, KnnError> {
    if dim == 0 || points.len() % dim != 0 {
        return Err(KnnError::Shape {
            len: points.len(),
            dim,
        });
    }
    let n = points.len() / dim;
    if labels.len() != n {
        return Err(KnnError::LabelCount {
            labels: labels.len(),
            n,
        });
    }
    if k == 0 || k >= n {
        return Err(KnnError::NeighboursOutOfRange { k, n });
    }
    let correct = (0..n)
        .into_par_iter()
        .filter(|&i| {
            let distances = distances_from(points, dim, i);
            let mut neighbours = nearest(&distances, k);
            neighbours.sort_by(|&a, &b| distances[a].total_cmp(&distances[b]).then(a.cmp(&b)));
            vote(neighbours.iter().map(|&j| labels[j])) == labels[i]
        })
        .count();
    Ok(correct as f64 / n as f64)
}

/// The most frequent of `labels` (nearest first); among tied labels the one seen first.
fn vote(labels: impl Iterator<Item = i64>) -> i64 {
    let mut counts: Vec<(i64, usize)> = Vec::new();
    for label in labels {
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1,
            None => counts.push((label, 1)),
        }
    }
    // `max_by_key` keeps the last maximum; the reversed order makes it the first seen.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, count)| *count)
        .map_or(-1, |&(label, _)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_groups_are_recognised_and_mixed_ones_are_at_chance() {
        // Two groups far apart on a line, labelled by group: every vote is right.
        let points: Vec<f32> = (0..20)
            .map(|i| if i < 10 { i as f32 } else { 100.0 + i as f32 })
            .collect();
        let by_group: Vec<i64> = (0..20).map(|i| i64::from(i >= 10)).collect();
        assert_eq!(knn_accuracy(&points, 1, &by_group, 3).unwrap(), 1.0);
        // Alternating labels along the line: each point's two nearest carry the other label.
        let alternating: Vec<i64> = (0..20).map(|i| i % 2).collect();
        let mixed = knn_accuracy(&points, 1, &alternating, 2).unwrap();
        assert!(mixed < 0.2, "{mixed}");
    }

    #[test]
    fn ties_go_to_the_nearest_label() {
        assert_eq!(vote([3, 5, 5, 3].into_iter()), 3);
        assert_eq!(vote([5, 3, 3].into_iter()), 3);
    }

    #[test]
    fn bad_shapes_and_k_are_errors() {
        let points = [0.0f32; 6];
        assert_eq!(
            knn_accuracy(&points, 4, &[0, 1], 1),
            Err(KnnError::Shape { len: 6, dim: 4 })
        );
        assert_eq!(
            knn_accuracy(&points, 2, &[0, 1], 1),
            Err(KnnError::LabelCount { labels: 2, n: 3 })
        );
        assert_eq!(
            knn_accuracy(&points, 2, &[0, 1, 0], 3),
            Err(KnnError::NeighboursOutOfRange { k: 3, n: 3 })
        );
    }
}
