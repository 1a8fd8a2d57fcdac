//! Optimizer choice (SGD with momentum or Adam, libtorch's C++ implementations) and the
//! learning-rate schedule, as the training stages expose them.

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};

use super::schedule::annealed_lr;

/// Which optimizer a training stage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball) momentum, as in the DANN paper.
    Sgd,
    /// Adam, as in the popular PyTorch DANN port and in ADDA.
    Adam,
}

/// How the learning rate evolves over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr` throughout.
    Constant,
    /// DANN's `lr / (1 + 10 p)^0.75`, `p` the training progress.
    Annealed,
}

impl LrSchedule {
    /// The learning rate at progress `p` for base rate `lr`.
    pub fn at(self, lr: f64, p: f64) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Annealed => annealed_lr(lr, p),
        }
    }
}

/// Everything needed to build an optimizer over a var store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// Adam's beta1 (ignored by SGD); beta2 is 0.999.
    pub beta1: f64,
    /// L2 penalty added to the gradients.
    pub weight_decay: f64,
}

const ADAM_BETA2: f64 = 0.999;

impl OptimizerSpec {
    /// An optimizer over the trainable variables of `vs`.
    pub fn build(&self, vs: &nn::VarStore) -> Result<nn::Optimizer, tch::TchError> {
        match self.kind {
            OptimizerKind::Sgd => nn::Sgd { momentum: self.momentum, wd: self.weight_decay, ..Default::default() }
                .build(vs, self.lr),
            OptimizerKind::Adam => nn::adam(self.beta1, ADAM_BETA2, self.weight_decay).build(vs, self.lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_schedule_ignores_progress_and_annealed_decays() {
        assert_eq!(LrSchedule::Constant.at(0.1, 0.9), 0.1);
        assert!(LrSchedule::Annealed.at(0.1, 0.9) < 0.1);
    }
}
