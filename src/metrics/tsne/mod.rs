//! Barnes-Hut t-SNE (van der Maaten, "Accelerating t-SNE using tree-based algorithms", JMLR
//! 2014) into 2-D, following scikit-learn's `TSNE(method="barnes_hut")` step for step so that
//! results are comparable: sparse input affinities over the `3 * perplexity` nearest neighbours
//! with per-point perplexity calibration, PCA initialisation scaled to std 1e-4, early
//! exaggeration 12 with momentum 0.5 for the first 250 iterations then momentum 0.8, per-parameter
//! gains (delta-bar-delta, +0.2 / x0.8, floor 0.01), learning rate `max(n / 12 / 4, 50)`.
//! Unlike scikit-learn it always runs the requested number of iterations (no early stop on a
//! small gradient), which keeps runs reproducible.
//!
//! Input: f32 `[n, dim]` row-major. Output: f32 `[n, 2]`. Deterministic for a given seed: the
//! parallel parts (neighbour search, calibration, gradient) compute per-point values that are
//! combined in a fixed order.
//!
//! Why not the `bhtsne` crate: it is a port of the same algorithm but fixes neither the PCA
//! initialisation nor the learning rate of scikit-learn, has no cancellation hook, and the
//! whole algorithm is a few hundred lines here.

mod affinity;
mod init;
mod quadtree;

use std::ops::ControlFlow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use affinity::SparseMatrix;
use quadtree::QuadTree;

/// Smallest gain of the delta-bar-delta rule (scikit-learn's `min_gain`).
const MIN_GAIN: f64 = 0.01;
/// Floor of probabilities inside the KL divergence's logarithm (scikit-learn's).
const TINY: f64 = f32::MIN_POSITIVE as f64;
/// How often the KL divergence is reported to the progress callback.
const REPORT_EVERY: usize = 250;

/// How the embedding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// First two principal components, scaled to std 1e-4 (scikit-learn's default).
    Pca,
    /// Gaussian noise with std 1e-4 from the seed.
    Random,
}

/// Settings of a run; [`TsneConfig::default`] is scikit-learn's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours; must be below the number of points.
    pub perplexity: f64,
    /// Gradient steps in total, exaggeration phase included.
    pub iterations: usize,
    /// Barnes-Hut accuracy: 0 is exact (quadratic), 0.5 the usual trade-off, at most 1.
    pub theta: f64,
    pub early_exaggeration: f64,
    pub exaggeration_iterations: usize,
    /// `None`: scikit-learn's "auto", `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    pub init: Init,
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        TsneConfig {
            perplexity: 30.0,
            iterations: 1000,
            theta: 0.5,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            learning_rate: None,
            init: Init::Pca,
            seed: 0,
        }
    }
}

/// What the progress callback sees after each iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneProgress {
    /// 1-based count of finished iterations.
    pub iteration: usize,
    /// KL(P || Q) before this iteration's step, every 250 iterations.
    pub kl_divergence: Option<f64>,
}

/// A finished embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// `[n, 2]` row-major.
    pub coords: Vec<f32>,
    pub n: usize,
    /// KL(P || Q) of the final embedding (Barnes-Hut estimate of Q's normalisation).
    pub kl_divergence: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TsneError {
    #[error("t-SNE input has {len} values, not a multiple of the feature dimension {dim}")]
    InputShape { len: usize, dim: usize },
    #[error(
        "t-SNE input value {value} in row {row} is not finite: check the features for NaN/inf"
    )]
    InputNotFinite { row: usize, value: f32 },
    #[error("t-SNE perplexity {perplexity} must be positive and below the number of points ({n}): lower it or use more points")]
    PerplexityOutOfRange { perplexity: f64, n: usize },
    #[error("t-SNE theta {0} is outside [0, 1]")]
    ThetaOutOfRange(f64),
    #[error("t-SNE learning rate {0} must be positive")]
    LearningRateNotPositive(f64),
    #[error("t-SNE stopped by the caller after {iteration} iterations")]
    Stopped { iteration: usize },
}

/// Embeds the rows of `data` (`[n, dim]`) in 2-D. `on_progress` runs after every iteration and
/// can stop the run with `ControlFlow::Break`.
pub fn tsne(
    data: &[f32],
    dim: usize,
    config: &TsneConfig,
    mut on_progress: impl FnMut(TsneProgress) -> ControlFlow<()>,
) -> Result<Embedding, TsneError> {
    let n = validate(data, dim, config)?;
    let p = input_affinities(data, dim, n, config.perplexity);
    let mut y = match config.init {
        Init::Pca => init::pca(data, dim, config.seed),
        Init::Random => init::random(n, config.seed),
    };
    let learning_rate = config
        .learning_rate
        .unwrap_or((n as f64 / config.early_exaggeration / 4.0).max(50.0));
    let mut descent = Descent::new(2 * n);
    let mut gradient = vec![0.0; 2 * n];
    for iteration in 0..config.iterations {
        let exploring = iteration < config.exaggeration_iterations;
        let exaggeration = if exploring {
            config.early_exaggeration
        } else {
            1.0
        };
        let z = compute_gradient(&p, &y, exaggeration, config.theta, &mut gradient);
        let momentum = if exploring { 0.5 } else { 0.8 };
        descent.step(&mut y, &gradient, momentum, learning_rate);
        let done = iteration + 1;
        let report = done % REPORT_EVERY == 0 || done == config.iterations;
        let progress = TsneProgress {
            iteration: done,
            kl_divergence: report.then(|| kl_divergence(&p, &y, z)),
        };
        if on_progress(progress).is_break() {
            return Err(TsneError::Stopped { iteration: done });
        }
    }
    let z = compute_gradient(&p, &y, 1.0, config.theta, &mut gradient);
    Ok(Embedding {
        coords: y.iter().map(|&v| v as f32).collect(),
        n,
        kl_divergence: kl_divergence(&p, &y, z),
    })
}

/// Checks shape, values and settings; returns the number of points.
fn validate(data: &[f32], dim: usize, config: &TsneConfig) -> Result<usize, TsneError> {
    if dim == 0 || data.len() % dim != 0 {
        return Err(TsneError::InputShape {
            len: data.len(),
            dim,
        });
    }
    if let Some(position) = data.iter().position(|v| !v.is_finite()) {
        return Err(TsneError::InputNotFinite {
            row: position / dim,
            value: data[position],
        });
    }
    let n = data.len() / dim;
    if !(config.perplexity > 0.0 && config.perplexity < n as f64) {
        return Err(TsneError::PerplexityOutOfRange {
            perplexity: config.perplexity,
            n,
        });
    }
    if !(0.0..=1.0).contains(&config.theta) {
        return Err(TsneError::ThetaOutOfRange(config.theta));
    }
    match config.learning_rate {
        Some(rate) if !(rate > 0.0) => Err(TsneError::LearningRateNotPositive(rate)),
        _ => Ok(n),
    }
}

/// The joint probabilities P over the `3 * perplexity` nearest neighbours (scikit-learn's k).
fn input_affinities(data: &[f32], dim: usize, n: usize, perplexity: f64) -> SparseMatrix {
    let k = (n - 1).min((3.0 * perplexity + 1.0) as usize);
    let neighbours = affinity::nearest_neighbours(data, dim, k);
    let conditional = affinity::conditional_probabilities(&neighbours, perplexity);
    affinity::joint_probabilities(&neighbours, &conditional)
}

/// The gradient of KL(P || Q) at `y` with P multiplied by `exaggeration`, into `gradient`;
/// returns Q's normalisation `Z = sum_{i != j} 1 / (1 + |y_i - y_j|^2)`.
fn compute_gradient(
    p: &SparseMatrix,
    y: &[f64],
    exaggeration: f64,
    theta: f64,
    gradient: &mut [f64],
) -> f64 {
    let tree = QuadTree::build(y);
    let forces: Vec<([f64; 2], [f64; 2], f64)> = (0..y.len() / 2)
        .into_par_iter()
        .map(|i| {
            let (repulsion, kernel_sum) = tree.repulsion([y[2 * i], y[2 * i + 1]], theta);
            // The tree includes point i itself, whose kernel term is exactly 1.
            (attraction(p, y, i), repulsion, kernel_sum - 1.0)
        })
        .collect();
    let z: f64 = forces.iter().map(|f| f.2).sum();
    for (g, (attract, repel, _)) in gradient.chunks_exact_mut(2).zip(&forces) {
        for axis in 0..2 {
            g[axis] = 4.0 * (exaggeration * attract[axis] - repel[axis] / z);
        }
    }
    z
}

/// `sum_j p_ij q_ij (y_i - y_j)` with the unnormalised kernel `q_ij = 1 / (1 + |y_i - y_j|^2)`.
fn attraction(p: &SparseMatrix, y: &[f64], i: usize) -> [f64; 2] {
    let mut force = [0.0; 2];
    for entry in p.row_start[i]..p.row_start[i + 1] {
        let j = p.columns[entry] as usize;
        let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
        let weight = p.values[entry] / (1.0 + dx * dx + dy * dy);
        force[0] += weight * dx;
        force[1] += weight * dy;
    }
    force
}

/// KL(P || Q) over the non-zero entries of P, with Q normalised by `z`.
fn kl_divergence(p: &SparseMatrix, y: &[f64], z: f64) -> f64 {
    let rows: Vec<f64> = (0..y.len() / 2)
        .into_par_iter()
        .map(|i| {
            (p.row_start[i]..p.row_start[i + 1])
                .map(|entry| {
                    let j = p.columns[entry] as usize;
                    let d2 = (y[2 * i] - y[2 * j]).powi(2) + (y[2 * i + 1] - y[2 * j + 1]).powi(2);
                    let q = 1.0 / (1.0 + d2) / z;
                    let pij = p.values[entry];
                    pij * (pij.max(TINY) / q.max(TINY)).ln()
                })
                .sum::<f64>()
        })
        .collect();
    rows.iter().sum()
}

/// Gradient descent with momentum and per-parameter gains (scikit-learn's `_gradient_descent`).
struct Descent {
    update: Vec<f64>,
    gains: Vec<f64>,
}

impl Descent {
    fn new(len: usize) -> Self {
        Descent {
            update: vec![0.0; len],
            gains: vec![1.0; len],
        }
    }

    fn step(&mut self, y: &mut [f64], gradient: &[f64], momentum: f64, learning_rate: f64) {
        for (((value, update), gain), &grad) in y
            .iter_mut()
            .zip(&mut self.update)
            .zip(&mut self.gains)
            .zip(gradient)
        {
            // A gradient against the running update means we are moving the right way: speed up.
            *gain = if *update * grad < 0.0 {
                *gain + 0.2
            } else {
                *gain * 0.8
            }
            .max(MIN_GAIN);
            *update = momentum * *update - learning_rate * *gain * grad;
            *value += *update;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well separated 5-d Gaussian blobs of `per` points, with their labels.
    fn blobs(per: usize) -> (Vec<f32>, Vec<usize>) {
        // `random(m)` gives 2m values: 5 per point for 3 * per points.
        let noise = init::random(per * 3 * 5 / 2 + 1, 11);
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for (i, chunk) in noise.chunks_exact(5).take(3 * per).enumerate() {
            let cluster = i % 3;
            data.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(axis, v)| (v * 1e4 + if axis == cluster { 10.0 } else { 0.0 }) as f32),
            );
            labels.push(cluster);
        }
        (data, labels)
    }

    fn small(seed: u64) -> TsneConfig {
        TsneConfig {
            perplexity: 10.0,
            seed,
            ..TsneConfig::default()
        }
    }

    #[test]
    fn separates_blobs_and_is_deterministic() {
        let (data, labels) = blobs(40);
        let first = tsne(&data, 5, &small(1), |_| ControlFlow::Continue(())).unwrap();
        let again = tsne(&data, 5, &small(1), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(first, again);
        // Every point's nearest embedded neighbour has its label.
        let y = &first.coords;
        for i in 0..first.n {
            let nearest = (0..first.n)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let d = |j: usize| {
                        (y[2 * i] - y[2 * j]).powi(2) + (y[2 * i + 1] - y[2 * j + 1]).powi(2)
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            assert_eq!(labels[nearest], labels[i], "point {i}");
        }
        assert!(
            first.kl_divergence > 0.0 && first.kl_divergence < 2.0,
            "{}",
            first.kl_divergence
        );
    }

    #[test]
    fn barnes_hut_gradient_is_close_to_exact() {
        let (data, _) = blobs(100);
        let p = input_affinities(&data, 5, 300, 10.0);
        let y = init::random(300, 5)
            .iter()
            .map(|v| v * 1e4)
            .collect::<Vec<_>>();
        let (mut exact, mut approx) = (vec![0.0; 600], vec![0.0; 600]);
        compute_gradient(&p, &y, 1.0, 0.0, &mut exact);
        compute_gradient(&p, &y, 1.0, 0.5, &mut approx);
        let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let diff: Vec<f64> = exact.iter().zip(&approx).map(|(a, b)| a - b).collect();
        assert!(
            norm(&diff) < 0.05 * norm(&exact),
            "{} vs {}",
            norm(&diff),
            norm(&exact)
        );
    }

    #[test]
    fn rejects_bad_settings_and_can_be_stopped() {
        let (data, _) = blobs(4);
        let err = tsne(&data, 5, &TsneConfig::default(), |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert_eq!(
            err,
            TsneError::PerplexityOutOfRange {
                perplexity: 30.0,
                n: 12
            }
        );
        let stopped = tsne(
            &data,
            5,
            &TsneConfig {
                perplexity: 3.0,
                ..TsneConfig::default()
            },
            |progress| {
                if progress.iteration == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(stopped.unwrap_err(), TsneError::Stopped { iteration: 3 });
        let nan = [0.0, f32::NAN, 1.0, 2.0];
        assert!(matches!(
            tsne(&nan, 2, &TsneConfig::default(), |_| ControlFlow::Continue(
                ()
            )),
            Err(TsneError::InputNotFinite { row: 0, .. })
        ));
    }
}
