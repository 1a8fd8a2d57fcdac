//! The DDPM forward process and ancestral sampling (Ho et al. 2020) with classifier-free
//! guidance (Ho & Salimans 2022).
//!
//! Steps run t = 1..=n (schedule index t - 1). Training noises x0 to
//! x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps; sampling runs
//! x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(1 - beta_t) + sqrt(beta_t) z (z = 0 at
//! t = 1) with the guided noise eps = (1 + w) eps_cond - w eps_uncond.

use tch::{Kind, Tensor};

use super::schedule::NoiseSchedule;

/// A conditional noise model: `eps(x_t, t, drop_class)` for a batch at step `t` (1-based);
/// `drop_class` asks for the unconditional prediction.
pub trait GuidedNoiseModel {
    fn eps(&self, x: &Tensor, t: usize, drop_class: bool) -> Tensor;
}

/// x_t for a batch: `x0`, `t` (1-based steps, `[b]` int64) and `noise`.
pub fn noised(schedule: &NoiseSchedule, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Tensor {
    let device = x0.device();
    let alpha_bar = Tensor::from_slice(schedule.alpha_bar()).to_device(device);
    // (b,) -> (b, 1, 1, 1)
    let ab = alpha_bar
        .index_select(0, &(t - 1))
        .to_kind(Kind::Float)
        .reshape([-1, 1, 1, 1]);
    let keep: Tensor = ab.sqrt();
    let spread: Tensor = (-&ab + 1.0).sqrt();
    keep * x0 + spread * noise
}

/// The guided noise prediction; `w = 0` skips the unconditional pass.
pub fn guided_eps(model: &dyn GuidedNoiseModel, x: &Tensor, t: usize, w: f64) -> Tensor {
    let cond = model.eps(x, t, false);
    if w == 0.0 {
        return cond;
    }
    cond * (1.0 + w) - model.eps(x, t, true) * w
}

/// Ancestral sampling from `x` (pure noise at step n). `z(t)` draws the noise added at step
/// t > 1. Returns the sample and x_t at each step of `snapshot_at` (0 is the final sample).
pub fn sample(
    schedule: &NoiseSchedule,
    model: &dyn GuidedNoiseModel,
    x: &Tensor,
    w: f64,
    mut z: impl FnMut(usize) -> Tensor,
    snapshot_at: &[usize],
) -> (Tensor, Vec<(usize, Tensor)>) {
    let mut x = x.shallow_clone();
    let mut snapshots = Vec::new();
    let n = schedule.len();
    if snapshot_at.contains(&n) {
        snapshots.push((n, x.copy()));
    }
    for t in (1..=n).rev() {
        let beta = schedule.betas()[t - 1];
        let ab = schedule.alpha_bar()[t - 1];
        let eps = guided_eps(model, &x, t, w);
        let mean = (&x - eps * (beta / (1.0 - ab).sqrt())) / (1.0 - beta).sqrt();
        x = if t > 1 {
            mean + z(t) * beta.sqrt()
        } else {
            mean
        };
        if snapshot_at.contains(&(t - 1)) {
            snapshots.push((t - 1, x.copy()));
        }
    }
    (x, snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The optimal noise model for data that is always `target`.
    struct Oracle {
        schedule: NoiseSchedule,
        target: Tensor,
    }

    impl GuidedNoiseModel for Oracle {
        fn eps(&self, x: &Tensor, t: usize, _drop: bool) -> Tensor {
            let ab = self.schedule.alpha_bar()[t - 1];
            (x - &self.target * ab.sqrt()) / (1.0 - ab).sqrt()
        }
    }

    #[test]
    fn sampling_with_the_optimal_model_lands_on_the_data() {
        tch::manual_seed(3);
        let schedule = NoiseSchedule::linear(50, 1e-4, 0.2);
        let target = Tensor::full([1, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu));
        let oracle = Oracle {
            schedule: schedule.clone(),
            target: target.copy(),
        };
        let x = Tensor::randn([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let (out, snaps) = sample(
            &schedule,
            &oracle,
            &x,
            2.0,
            |_| Tensor::randn([1, 1, 2, 2], (Kind::Float, Device::Cpu)),
            &[50, 25, 0],
        );
        assert!(out.allclose(&target, 1e-4, 1e-4, false), "{out}");
        assert_eq!(snaps.iter().map(|s| s.0).collect::<Vec<_>>(), [50, 25, 0]);
        let t = Tensor::from_slice(&[1i64, 50]);
        let noisy = noised(
            &schedule,
            &target.repeat([2, 1, 1, 1]),
            &t,
            &Tensor::zeros([2, 1, 2, 2], (Kind::Float, Device::Cpu)),
        );
        assert!(
            (noisy.double_value(&[1, 0, 0, 0]) - 0.5 * schedule.alpha_bar()[49].sqrt()).abs()
                < 1e-6
        );
    }
}
