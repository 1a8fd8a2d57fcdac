//! The schedules of the DANN paper (Ganin et al. 2016, section 5.2.2) as pure functions of the
//! training progress `p`, which goes linearly from 0 at the first step to 1 at the end.

/// Steepness `gamma` of the lambda schedule.
const LAMBDA_GAMMA: f64 = 10.0;
/// `alpha` of the learning-rate annealing.
const LR_ALPHA: f64 = 10.0;
/// `beta` of the learning-rate annealing.
const LR_BETA: f64 = 0.75;

/// The gradient-reversal weight `lambda_p = 2 / (1 + exp(-10 p)) - 1`: 0 at the start, close to 1
/// at the end, which keeps the noisy early domain gradients from swamping the label loss.
pub fn dann_lambda(p: f64) -> f64 {
    2.0 / (1.0 + (-LAMBDA_GAMMA * p).exp()) - 1.0
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
        assert_eq!(dann_lambda(0.0), 0.0);
        let half = 2.0 / (1.0 + (-5.0f64).exp()) - 1.0;
        assert!((dann_lambda(0.5) - half).abs() < 1e-15);
        assert!((dann_lambda(0.5) - 0.986_614_298_151_430_5).abs() < 1e-12);
        assert!((dann_lambda(1.0) - 0.999_909_204_262_595_2).abs() < 1e-12);
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
