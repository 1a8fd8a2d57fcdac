//! Noise schedules: the betas of the forward process and their cumulative products
//! alpha_bar_t = prod_{s <= t} (1 - beta_s), both in f64.
//!
//! The linear schedule is computed exactly as `torch.linspace(start, end, n, dtype=float64)`
//! does on the CPU: `start + i * step` for the first half of the indices and
//! `end - (n - 1 - i) * step` for the second, each a fused multiply-add, so alpha_bar agrees bit
//! for bit with the course's sampler. The cosine schedule is
//! Nichol & Dhariwal's (2021): alpha_bar(t) = cos^2(((t / n) + s) / (1 + s) pi / 2), s = 0.008,
//! betas clipped at 0.999.

use serde::{Deserialize, Serialize};

/// How the betas run over the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020).
    Linear,
    /// Nichol & Dhariwal's cosine alpha_bar (ignores `beta_start` / `beta_end`).
    Cosine,
}

/// A schedule's description, saved beside a trained noise model (`schedule.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub n_t: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub schedule: BetaSchedule,
}

impl ScheduleConfig {
    pub fn build(&self) -> NoiseSchedule {
        match self.schedule {
            BetaSchedule::Linear => NoiseSchedule::linear(self.n_t, self.beta_start, self.beta_end),
            BetaSchedule::Cosine => NoiseSchedule::cosine(self.n_t),
        }
    }
}

/// Betas and alpha_bar, indexed from 0 (index `i` is the DDPM step `t = i + 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alpha_bar: Vec<f64>,
}

/// Nichol & Dhariwal's offset, which keeps beta_1 from being vanishingly small.
const COSINE_OFFSET: f64 = 0.008;
const MAX_COSINE_BETA: f64 = 0.999;

/// `torch.linspace(start, end, n)` in f64, element for element.
pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let halfway = n / 2;
    // torch's vectorised kernel fuses the multiply-add; unfused results differ by an ulp at
    // about a fifth of the indices.
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f64, start)
            } else {
                (-step).mul_add((n - 1 - i) as f64, end)
            }
        })
        .collect()
}

impl NoiseSchedule {
    pub fn from_betas(betas: Vec<f64>) -> Self {
        let alpha_bar = betas
            .iter()
            .scan(1.0f64, |product, beta| {
                *product *= 1.0 - beta;
                Some(*product)
            })
            .collect();
        NoiseSchedule { betas, alpha_bar }
    }

    pub fn linear(n: usize, beta_start: f64, beta_end: f64) -> Self {
        Self::from_betas(linspace(beta_start, beta_end, n))
    }

    pub fn cosine(n: usize) -> Self {
        let f = |t: usize| {
            (((t as f64 / n as f64) + COSINE_OFFSET) / (1.0 + COSINE_OFFSET)
                * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        Self::from_betas(
            (0..n)
                .map(|t| (1.0 - f(t + 1) / f(t)).min(MAX_COSINE_BETA))
                .collect(),
        )
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    pub fn alpha_bar(&self) -> &[f64] {
        &self.alpha_bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_is_torchs_two_sided_formula() {
        let betas = linspace(1e-4, 2e-2, 1000);
        assert_eq!(betas[0], 1e-4);
        assert_eq!(betas[999], 2e-2);
        let step: f64 = (2e-2 - 1e-4) / 999.0;
        assert_eq!(betas[499], step.mul_add(499.0, 1e-4));
        assert_eq!(betas[500], (-step).mul_add(499.0, 2e-2));
        let s = NoiseSchedule::linear(1000, 1e-4, 2e-2);
        assert_eq!(s.alpha_bar()[0], 1.0 - 1e-4);
        assert!(s.alpha_bar()[999] < 1e-4 && s.alpha_bar()[999] > 0.0);
    }

    #[test]
    fn cosine_alpha_bar_decreases_to_near_zero() {
        let s = NoiseSchedule::cosine(100);
        assert!(s.alpha_bar().windows(2).all(|w| w[1] < w[0]));
        assert!(s.alpha_bar()[99] < 1e-3, "{}", s.alpha_bar()[99]);
        assert!(s.betas().iter().all(|&b| b > 0.0 && b <= MAX_COSINE_BETA));
    }
}
