//! DDIM sampling (Song et al. 2021): with x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t),
//! sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) and
//! x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z, over `steps` evenly
//! spaced timesteps of the schedule.
//!
//! Two timestep lists are in circulation and both are offered ([`Convention`]):
//! `Offset` (t = n - stride + 1, ..., 1 + stride, 1, the previous alpha_bar of t = 1 being
//! alpha_bar[0], x0 clamped to [-1, 1]) reproduces the course's face ground truth; `Zero`
//! (t = n - stride, ..., 0, ending at alpha_bar = 1, ermongroup's `generalized_steps`) is the
//! other. Each step casts its two alpha_bars from f64 to f32 and does all arithmetic in f32,
//! as the course's sampler does, so the outputs agree with it to the last bits.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::schedule::NoiseSchedule;

/// Which timesteps the sampler visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// `981, 961, ..., 1` for 1000 steps and 50 samples; the last previous alpha_bar is
    /// alpha_bar[0]. The course's.
    Offset,
    /// `980, 960, ..., 0`; the last previous alpha_bar is 1.
    Zero,
}

impl Convention {
    /// Whether the course's sampler clamps x0 under this convention (the default of `clip_x0`).
    pub fn clips_x0(self) -> bool {
        self == Convention::Offset
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DdimError {
    #[error(
        "{steps} DDIM steps do not divide the {n} steps of the schedule; choose a divisor of {n}"
    )]
    Steps { steps: usize, n: usize },
    #[error("the offset convention (t = 1 + k * stride) needs fewer DDIM steps than the schedule's {n}; take fewer steps or `convention = \"zero\"`")]
    OffsetEveryStep { n: usize },
    #[error("eta is {0}; it must be a finite number >= 0")]
    Eta(f64),
}

/// A DDIM sampler over a schedule.
#[derive(Debug, Clone)]
pub struct Ddim {
    alpha_bar: Vec<f64>,
    steps: usize,
    stride: usize,
    convention: Convention,
    clip_x0: bool,
}

impl Ddim {
    pub fn new(
        schedule: &NoiseSchedule,
        steps: usize,
        convention: Convention,
        clip_x0: bool,
    ) -> Result<Self, DdimError> {
        let n = schedule.len();
        if steps == 0 || n % steps != 0 {
            return Err(DdimError::Steps { steps, n });
        }
        // The offset convention's first timestep is 1 + (steps - 1) * stride, past the schedule
        // when every step is taken.
        if convention == Convention::Offset && steps == n {
            return Err(DdimError::OffsetEveryStep { n });
        }
        Ok(Ddim {
            alpha_bar: schedule.alpha_bar().to_vec(),
            steps,
            stride: n / steps,
            convention,
            clip_x0,
        })
    }

    /// The timesteps (indices into alpha_bar, also what the network is given), first to last.
    pub fn timesteps(&self) -> Vec<usize> {
        let first = match self.convention {
            Convention::Offset => 1,
            Convention::Zero => 0,
        };
        (0..self.steps)
            .rev()
            .map(|i| first + i * self.stride)
            .collect()
    }

    /// alpha_bar of the step after `t`.
    fn alpha_bar_prev(&self, t: usize) -> f64 {
        match (t.checked_sub(self.stride), self.convention) {
            (Some(prev), _) => self.alpha_bar[prev],
            (None, Convention::Offset) => self.alpha_bar[0],
            (None, Convention::Zero) => 1.0,
        }
    }

    /// One step from `x` at timestep `t` with the predicted noise `eps`; `noise` (same shape as
    /// `x`) is the z of the stochastic term, needed only when `eta > 0`.
    pub fn step(
        &self,
        eps: &Tensor,
        t: usize,
        x: &Tensor,
        eta: f64,
        noise: Option<&Tensor>,
    ) -> Result<Tensor, DdimError> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(DdimError::Eta(eta));
        }
        let a_t = self.alpha_bar[t] as f32;
        let a_prev = self.alpha_bar_prev(t) as f32;
        let eta = eta as f32;
        let x0 = (x - eps * f64::from((1.0 - a_t).sqrt())) / f64::from(a_t.sqrt());
        let x0 = if self.clip_x0 {
            x0.clamp(-1.0, 1.0)
        } else {
            x0
        };
        let sigma = eta * ((1.0 - a_prev) / (1.0 - a_t)).sqrt() * (1.0 - a_t / a_prev).sqrt();
        let direction = (1.0 - a_prev - sigma * sigma).max(0.0).sqrt();
        let x = x0 * f64::from(a_prev.sqrt()) + eps * f64::from(direction);
        Ok(match noise {
            Some(z) if sigma > 0.0 => x + z * f64::from(sigma),
            _ => x,
        })
    }

    /// The whole chain from `x` (noise at the first timestep): `eps(x, t)` is the noise model,
    /// `noise(k)` the z of step `k` (called only when `eta > 0`).
    pub fn sample(
        &self,
        x: &Tensor,
        eta: f64,
        mut eps: impl FnMut(&Tensor, usize) -> Tensor,
        mut noise: impl FnMut(usize) -> Tensor,
    ) -> Result<Tensor, DdimError> {
        let mut x = x.shallow_clone();
        for (k, t) in self.timesteps().into_iter().enumerate() {
            let predicted = eps(&x, t);
            let z = (eta > 0.0).then(|| noise(k));
            x = self.step(&predicted, t, &x, eta, z.as_ref())?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn both_conventions_visit_fifty_timesteps() {
        let s = NoiseSchedule::linear(1000, 1e-4, 2e-2);
        let offset = Ddim::new(&s, 50, Convention::Offset, true).unwrap();
        let t = offset.timesteps();
        assert_eq!((t.len(), t[0], t[1], t[49]), (50, 981, 961, 1));
        assert_eq!(offset.alpha_bar_prev(1), s.alpha_bar()[0]);
        let zero = Ddim::new(&s, 50, Convention::Zero, false).unwrap();
        assert_eq!((zero.timesteps()[0], zero.timesteps()[49]), (980, 0));
        assert_eq!(zero.alpha_bar_prev(0), 1.0);
        assert_eq!(
            Ddim::new(&s, 30, Convention::Zero, false).unwrap_err(),
            DdimError::Steps { steps: 30, n: 1000 }
        );
    }

    #[test]
    fn the_exact_noise_is_removed_in_one_deterministic_step() {
        let s = NoiseSchedule::linear(1000, 1e-4, 2e-2);
        let ddim = Ddim::new(&s, 1000, Convention::Zero, false).unwrap();
        let x0 = Tensor::rand([2, 3, 4, 4], (Kind::Float, Device::Cpu)) - 0.5;
        let eps = Tensor::randn([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        let a = s.alpha_bar()[0];
        let x1 = &x0 * a.sqrt() + &eps * (1.0 - a).sqrt();
        let back = ddim.step(&eps, 0, &x1, 0.0, None).unwrap();
        assert!(back.allclose(&x0, 1e-5, 1e-5, false));
        assert_eq!(
            ddim.step(&eps, 0, &x1, -0.5, None).unwrap_err(),
            DdimError::Eta(-0.5)
        );
    }
}
