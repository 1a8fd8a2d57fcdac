//! Optimizers with their settings, learning-rate schedule and state in one place.
//!
//! Every training stage takes its optimizers as nested tables of one type,
//! [`OptimizerSettings`] (`[stages.dann.optimizer]`, a GAN's `[stages.gan.generator.optimizer]`),
//! each stage kind supplying its own defaults. [`Optimizer`] implements SGD with momentum with
//! PyTorch's formulas, and Adam and AdamW with PyTorch's fused kernels (`Adam(fused=True)`, one
//! vectorised pass over all parameters instead of ten small ops per parameter), so that its state
//! (moments, momentum buffers, step counts) can be saved with a checkpoint and restored exactly:
//! a resumed run continues bit for bit. libtorch's own optimizers, which tch wraps, keep their
//! state out of reach.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::schedule::annealed_lr;
use super::state::{StateError, TrainingState};
use crate::accel::{self, AccelError, AdamConfig, FusedAdam, MemoryFormat};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball) momentum, as in the DANN paper.
    Sgd,
    /// Adam with L2 weight decay added to the gradient.
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    Adamw,
}

/// How the learning rate evolves with the training progress `p` (0 at the first step, 1 at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr` throughout.
    Constant,
    /// DANN's `lr / (1 + 10 p)^0.75`.
    Annealed,
    /// `lr (1 - p)`: linear decay to zero (the conditional DDPM's).
    Linear,
    /// `lr (1 + cos(pi p)) / 2`.
    Cosine,
}

impl LrSchedule {
    /// The learning rate at progress `p` for base rate `lr`.
    pub fn at(self, lr: f64, p: f64) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Annealed => annealed_lr(lr, p),
            LrSchedule::Linear => lr * (1.0 - p),
            LrSchedule::Cosine => lr * (1.0 + (std::f64::consts::PI * p).cos()) / 2.0,
        }
    }
}

/// An `[...optimizer]` table. Stage kinds fill in the keys a recipe leaves out with their own
/// defaults (DANN: SGD 0.01 annealed; DCGAN: Adam 2e-4 betas (0.5, 0.999); ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// `sgd`, `adam` or `adamw`.
    pub kind: OptimizerKind,
    /// The base learning rate.
    pub lr: f64,
    /// Adam's (beta1, beta2).
    pub betas: [f64; 2],
    /// SGD momentum.
    pub momentum: f64,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
    /// Adam's epsilon.
    pub eps: f64,
    /// `constant`, `annealed`, `linear` or `cosine`.
    pub schedule: LrSchedule,
}

/// PyTorch's default Adam betas and epsilon.
const ADAM_BETAS: [f64; 2] = [0.9, 0.999];
const ADAM_EPS: f64 = 1e-8;

impl OptimizerSettings {
    /// SGD with `momentum`, constant schedule.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        OptimizerSettings {
            kind: OptimizerKind::Sgd,
            lr,
            betas: ADAM_BETAS,
            momentum,
            weight_decay: 0.0,
            eps: ADAM_EPS,
            schedule: LrSchedule::Constant,
        }
    }

    /// Adam with `betas`, constant schedule.
    pub fn adam(lr: f64, betas: [f64; 2]) -> Self {
        OptimizerSettings {
            kind: OptimizerKind::Adam,
            betas,
            momentum: 0.0,
            ..Self::sgd(lr, 0.0)
        }
    }

    pub fn with_schedule(self, schedule: LrSchedule) -> Self {
        OptimizerSettings { schedule, ..self }
    }

    /// The settings as a TOML table, for a stage kind's defaults.
    pub fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }

    /// The first setting out of range, as (key, what it must be).
    pub fn out_of_range(&self) -> Option<(&'static str, &'static str)> {
        let unit = |v: f64| (0.0..1.0).contains(&v);
        if !(self.lr.is_finite() && self.lr > 0.0) {
            Some(("lr", "a finite number > 0"))
        } else if !self.betas.iter().all(|&b| unit(b)) {
            Some(("betas", "two numbers in [0, 1)"))
        } else if !unit(self.momentum) {
            Some(("momentum", "a number in [0, 1)"))
        } else if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            Some(("weight_decay", "a finite number >= 0"))
        } else if !(self.eps.is_finite() && self.eps > 0.0) {
            Some(("eps", "a finite number > 0"))
        } else {
            None
        }
    }

    /// The learning rate at progress `p`.
    pub fn lr_at(&self, p: f64) -> f64 {
        self.schedule.at(self.lr, p)
    }
}

/// SGD's momentum buffer of one parameter (none before its first step).
type MomentumBuffer = Option<Tensor>;

/// How the parameters are updated: SGD over the Rust formulas, Adam and AdamW by libtorch's
/// fused kernels.
enum Rule {
    Sgd {
        params: Vec<(String, Tensor)>,
        buffers: Vec<MomentumBuffer>,
    },
    Adam(FusedAdam),
}

/// An optimizer over named trainable tensors.
pub struct Optimizer {
    settings: OptimizerSettings,
    rule: Rule,
    steps: i64,
    lr: f64,
}

impl Optimizer {
    /// An optimizer over the trainable variables of `stores`, in name order. The stores' 4-D
    /// weights are laid out channels-last first, oneDNN's and cuDNN's native convolution layout
    /// (the same values; conv outputs, gradients and the moments then stay channels-last, and no
    /// convolution reorders its operands on each call).
    pub fn new(settings: OptimizerSettings, stores: &[&nn::VarStore]) -> Self {
        Self::in_layout(settings, stores, MemoryFormat::ChannelsLast)
    }

    /// [`Optimizer::new`] with the 4-D weights laid out in `layout`, for the nets that run
    /// faster contiguous (double backward through convolutions: WGAN-GP's penalty).
    pub fn in_layout(
        settings: OptimizerSettings,
        stores: &[&nn::VarStore],
        layout: MemoryFormat,
    ) -> Self {
        for vs in stores {
            if let Err(error) = accel::memory_format::convert_vars(vs, layout) {
                tracing::warn!("{error}; training with the weights' layout as it is");
            }
        }
        let mut params: Vec<(String, Tensor)> = stores
            .iter()
            .flat_map(|vs| vs.variables())
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::over(settings, params)
    }

    /// An optimizer over `params`.
    pub fn over(settings: OptimizerSettings, params: Vec<(String, Tensor)>) -> Self {
        let rule = match settings.kind {
            OptimizerKind::Sgd => Rule::Sgd {
                buffers: params.iter().map(|_| None).collect(),
                params,
            },
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let config = AdamConfig {
                    lr: settings.lr,
                    betas: (settings.betas[0], settings.betas[1]),
                    eps: settings.eps,
                    weight_decay: settings.weight_decay,
                    decoupled: settings.kind == OptimizerKind::Adamw,
                    amsgrad: false,
                };
                Rule::Adam(FusedAdam::over(params, config))
            }
        };
        Optimizer {
            settings,
            rule,
            steps: 0,
            lr: settings.lr,
        }
    }

    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// The learning rate of the last step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets every gradient to none (PyTorch's `zero_grad()`): the next backward writes the
    /// gradients instead of adding them to zeros.
    pub fn zero_grad(&mut self) -> Result<(), AccelError> {
        match &mut self.rule {
            Rule::Sgd { params, .. } => {
                accel::clear_grads(&params.iter().map(|(_, t)| t).collect::<Vec<_>>())
            }
            Rule::Adam(adam) => adam.zero_grad(),
        }
    }

    /// `zero_grad`, `loss.backward()`, `step(p)`.
    pub fn backward_step(&mut self, loss: &Tensor, p: f64) -> Result<(), AccelError> {
        self.zero_grad()?;
        loss.backward();
        self.step(p)
    }

    /// One update with the learning rate of progress `p`. Parameters without a gradient are
    /// left alone, as PyTorch does.
    pub fn step(&mut self, p: f64) -> Result<(), AccelError> {
        self.steps += 1;
        self.lr = self.settings.lr_at(p);
        match &mut self.rule {
            Rule::Sgd { params, buffers } => {
                let (s, lr) = (self.settings, self.lr);
                tch::no_grad(|| {
                    for ((_, param), buffer) in params.iter_mut().zip(buffers) {
                        let grad = param.grad();
                        if grad.defined() {
                            sgd_update(param, grad, buffer, lr, &s);
                        }
                    }
                });
                Ok(())
            }
            Rule::Adam(adam) => {
                adam.set_lr(self.lr);
                adam.step()
            }
        }
    }

    /// The optimizer's state under `prefix`: `prefix.step` and `prefix.<param>.exp_avg` etc.
    pub fn save_state(&self, prefix: &str, state: &mut TrainingState) {
        state.insert(format!("{prefix}.step"), Tensor::from(self.steps));
        match &self.rule {
            Rule::Sgd { params, buffers } => {
                for ((name, _), buffer) in params.iter().zip(buffers) {
                    if let Some(t) = buffer {
                        state.insert(
                            format!("{prefix}.{name}.momentum_buffer"),
                            t.shallow_clone(),
                        );
                    }
                }
            }
            Rule::Adam(adam) => {
                for (name, t) in adam.state() {
                    state.insert(format!("{prefix}.{name}"), t);
                }
            }
        }
    }

    /// Restores what [`Optimizer::save_state`] saved.
    pub fn load_state(
        &mut self,
        prefix: &str,
        state: &HashMap<String, Tensor>,
    ) -> Result<(), StateError> {
        let steps = state
            .get(&format!("{prefix}.step"))
            .ok_or_else(|| StateError::Missing(format!("{prefix}.step")))?;
        self.steps = steps.int64_value(&[]);
        match &mut self.rule {
            Rule::Sgd { params, buffers } => {
                for ((name, param), buffer) in params.iter().zip(buffers) {
                    *buffer = state
                        .get(&format!("{prefix}.{name}.momentum_buffer"))
                        .map(|t| t.to_device(param.device()));
                }
                Ok(())
            }
            Rule::Adam(adam) => {
                let own_prefix = format!("{prefix}.");
                let entries: Vec<(String, Tensor)> = state
                    .iter()
                    .filter_map(|(name, t)| {
                        let entry = name.strip_prefix(&own_prefix)?;
                        (entry != "step").then(|| (entry.to_owned(), t.shallow_clone()))
                    })
                    .collect();
                Ok(adam.load_state(&entries)?)
            }
        }
    }
}

/// `torch.optim.SGD`: `d = g + wd p`; with momentum `buf = m buf + d` (the first `buf = d`);
/// `p -= lr buf`.
fn sgd_update(
    param: &mut Tensor,
    grad: Tensor,
    buffer: &mut MomentumBuffer,
    lr: f64,
    s: &OptimizerSettings,
) {
    let direction = if s.weight_decay != 0.0 {
        grad + &*param * s.weight_decay
    } else {
        grad
    };
    let direction = if s.momentum != 0.0 {
        let next = match buffer.take() {
            Some(previous) => previous * s.momentum + direction,
            None => direction.copy(),
        };
        *buffer = Some(next.shallow_clone());
        next
    } else {
        direction
    };
    let _ = param.g_add_(&(direction * -lr));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn schedules_follow_their_formulas() {
        assert_eq!(LrSchedule::Constant.at(0.1, 0.9), 0.1);
        assert!(LrSchedule::Annealed.at(0.1, 0.9) < 0.1);
        assert!((LrSchedule::Linear.at(0.1, 0.25) - 0.075).abs() < 1e-15);
        assert!((LrSchedule::Cosine.at(0.1, 0.5) - 0.05).abs() < 1e-15);
    }

    /// Adam's first steps by hand: with a constant gradient g, every step moves by about lr.
    #[test]
    fn adam_matches_the_formula() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut opt = Optimizer::new(OptimizerSettings::adam(0.1, [0.9, 0.999]), &[&vs]);
        for _ in 0..2 {
            let loss = (&w * Tensor::from_slice(&[1.0f32, -2.0, 0.5])).sum(Kind::Float);
            opt.backward_step(&loss, 0.0).unwrap();
        }
        let expected = 1.0 - 2.0 * 0.1 / (1.0 + 1e-8);
        assert!(
            (w.double_value(&[0]) - expected).abs() < 1e-6,
            "{}",
            w.double_value(&[0])
        );
        assert!((w.double_value(&[1]) - (1.0 + 0.2)).abs() < 1e-6);
    }

    #[test]
    fn sgd_momentum_accumulates_and_state_round_trips() {
        let run = |split: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
            let settings = OptimizerSettings {
                weight_decay: 0.01,
                ..OptimizerSettings::sgd(0.1, 0.9)
            };
            let mut opt = Optimizer::new(settings, &[&vs]);
            let mut state = TrainingState::default();
            for i in 0..6 {
                if split && i == 3 {
                    opt.save_state("opt", &mut state);
                    let restored = state.clone().into_map();
                    opt = Optimizer::new(settings, &[&vs]);
                    opt.load_state("opt", &restored).unwrap();
                }
                let loss = (&w * &w).sum(Kind::Float);
                opt.backward_step(&loss, 0.0).unwrap();
            }
            Vec::<f32>::try_from(&w).unwrap()
        };
        assert_eq!(
            run(false),
            run(true),
            "a restored optimizer continues exactly"
        );
        assert!(run(false)[0] < 1.0);
    }

    #[test]
    fn out_of_range_settings_name_the_key() {
        assert_eq!(
            OptimizerSettings::adam(-1.0, ADAM_BETAS)
                .out_of_range()
                .map(|(k, _)| k),
            Some("lr")
        );
        assert_eq!(
            OptimizerSettings::adam(f64::NAN, ADAM_BETAS)
                .out_of_range()
                .map(|(k, _)| k),
            Some("lr")
        );
        assert_eq!(
            OptimizerSettings::adam(1e-3, [0.5, 1.0])
                .out_of_range()
                .map(|(k, _)| k),
            Some("betas")
        );
        assert_eq!(
            OptimizerSettings::adam(1e-3, ADAM_BETAS).out_of_range(),
            None
        );
        let table = OptimizerSettings::sgd(0.01, 0.9).to_table();
        assert_eq!(table["kind"].as_str(), Some("sgd"));
    }
}
