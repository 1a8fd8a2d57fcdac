//! How a block's weights start.

use serde::{Deserialize, Serialize};
use tch::nn;

/// A weight-initialisation policy, applied by every block that has weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's defaults: conv and linear weights and biases uniform in `±1/sqrt(fan_in)` (its
    /// `kaiming_uniform_(a=sqrt(5))`), norm weights 1 and biases 0. tch's own default (Kaiming
    /// with the ReLU gain, zero conv biases) is 2.45x wider and changes training.
    #[default]
    Pytorch,
    /// The DCGAN paper's, as the PyTorch tutorial's `weights_init` applies it: conv and
    /// transposed-conv weights N(0, 0.02), batch-norm weights N(1, 0.02) and biases 0; linear
    /// layers keep PyTorch's default.
    Dcgan,
}

/// Standard deviation of the DCGAN initialisation.
const DCGAN_STD: f64 = 0.02;

impl Init {
    /// A conv weight with `fan_in` inputs per output (PyTorch's fan-in of the weight tensor).
    pub fn conv_weight(self, fan_in: i64) -> nn::Init {
        match self {
            Init::Pytorch => uniform_fan_in(fan_in),
            Init::Dcgan => nn::Init::Randn {
                mean: 0.0,
                stdev: DCGAN_STD,
            },
        }
    }

    /// A conv or linear bias (the DCGAN init leaves biases at PyTorch's default).
    pub fn bias(self, fan_in: i64) -> nn::Init {
        uniform_fan_in(fan_in)
    }

    /// A linear weight.
    pub fn linear_weight(self, fan_in: i64) -> nn::Init {
        uniform_fan_in(fan_in)
    }

    /// A norm layer's scale.
    pub fn norm_weight(self) -> nn::Init {
        match self {
            Init::Pytorch => nn::Init::Const(1.0),
            Init::Dcgan => nn::Init::Randn {
                mean: 1.0,
                stdev: DCGAN_STD,
            },
        }
    }
}

fn uniform_fan_in(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}
