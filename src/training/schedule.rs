//! The schedules of the DANN paper (Ganin et al. 2016, section 5.2.2) as pure functions of the
//! training progress `p`, which goes linearly from 0 at the first step to 1 at the end.

/// The paper's steepness `gamma` of the lambda schedule.
pub const LAMBDA_GAMMA: f64 = 10.0;
/// `alpha` of the learning-rate annealing.
const LR_ALPHA: f64 = 10.0;
/// `beta` of the learning-rate annealing.
const LR_BETA: f64 = 0.75;

/// The gradient-reversal weight `lambda_p = 2 / (1 + exp(-gamma p)) - 1` (the paper's gamma is
/// [`LAMBDA_GAMMA`]): 0 at the start, close to 1 at the end, which keeps the noisy early domain
/// gradients from swamping the label loss. A smaller gamma ramps up later (gamma 3: 0.64 at half
/// way, 0.91 at the end), which short runs need: the label predictor must learn something before
/// the reversed domain gradient dominates the feature extractor.
pub fn dann_lambda(p: f64, gamma: f64) -> f64 {
    2.0 / (1.0 + (-gamma * p).exp()) - 1.0
}

/// The annealed learning rate `lr_p = mu0 / (1 + 10 p)^0.75`.
pub fn annealed_lr(mu0: f64, p: f64) -> f64 {
    mu0 / (1.0 + LR_ALPHA * p).powf(LR_BETA)
}

/// Training progress of 0-based `step` out of `total` steps, in `[0, 1)`.
pub fn progress(step: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        step as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_matches_the_formula() {
        assert_eq!(dann_lambda(0.0, LAMBDA_GAMMA), 0.0);
        let half = 2.0 / (1.0 + (-5.0f64).exp()) - 1.0;
        assert!((dann_lambda(0.5, LAMBDA_GAMMA) - half).abs() < 1e-15);
        assert!((dann_lambda(0.5, LAMBDA_GAMMA) - 0.986_614_298_151_430_5).abs() < 1e-12);
        assert!((dann_lambda(1.0, LAMBDA_GAMMA) - 0.999_909_204_262_595_2).abs() < 1e-12);
        assert!((dann_lambda(1.0, 3.0) - 0.905_148_253_644_866_5).abs() < 1e-12);
    }

    #[test]
    fn lr_matches_the_formula() {
        assert_eq!(annealed_lr(0.01, 0.0), 0.01);
        assert!((annealed_lr(0.01, 0.5) - 0.01 / 6f64.powf(0.75)).abs() < 1e-15);
        assert!((annealed_lr(0.01, 0.5) - 0.002_608_474_300_122_145).abs() < 1e-12);
        assert!((annealed_lr(0.01, 1.0) - 0.001_655_600_260_761_702).abs() < 1e-12);
    }

    #[test]
    fn progress_spans_zero_to_one() {
        assert_eq!(progress(0, 10), 0.0);
        assert_eq!(progress(5, 10), 0.5);
        assert_eq!(progress(0, 0), 0.0);
    }
}
