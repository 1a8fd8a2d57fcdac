//! Parameter-free blocks: activation functions and dropout.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::repr::py_float;
use super::Module;
use crate::models::summary::ModuleTree;

/// An element-wise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    Relu,
    /// `max(x, slope x)`; the DCGAN discriminator uses slope 0.2.
    LeakyRelu(f64),
    /// `x sigmoid(x)`, the diffusion UNets' activation.
    Silu,
    /// The exact (erf) GELU, PyTorch's default `approximate='none'`.
    Gelu,
    Tanh,
    Sigmoid,
}

impl Nonlinearity {
    pub fn apply(self, xs: &Tensor) -> Tensor {
        match self {
            Nonlinearity::Relu => xs.relu(),
            // tch binds only the default slope; the shim's `at::leaky_relu` is one kernel each
            // way, where `x > 0 ? x : slope x` took four (a sixth of a DCGAN step). It fails only
            // on a non-float tensor, a bug, so it panics as tch's infallible ops do.
            Nonlinearity::LeakyRelu(slope) => crate::accel::ops::leaky_relu(xs, slope)
                .unwrap_or_else(|e| panic!("leaky_relu on a {:?} tensor: {e}", xs.kind())),
            Nonlinearity::Silu => xs.silu(),
            Nonlinearity::Gelu => xs.gelu("none"),
            Nonlinearity::Tanh => xs.tanh(),
            Nonlinearity::Sigmoid => xs.sigmoid(),
        }
    }
}

impl Nonlinearity {
    /// Whether PyTorch's module takes an `inplace` flag (and prints it when set).
    pub fn has_inplace(self) -> bool {
        matches!(
            self,
            Nonlinearity::Relu | Nonlinearity::LeakyRelu(_) | Nonlinearity::Silu
        )
    }

    /// The module's PyTorch printout; `inplace` shows as `inplace=True` where PyTorch prints it.
    pub fn repr(self, inplace: bool) -> String {
        let flag = inplace && self.has_inplace();
        match self {
            Nonlinearity::Relu if flag => "ReLU(inplace=True)".to_owned(),
            Nonlinearity::Relu => "ReLU()".to_owned(),
            Nonlinearity::LeakyRelu(slope) => format!(
                "LeakyReLU(negative_slope={}{})",
                py_float(slope),
                if flag { ", inplace=True" } else { "" }
            ),
            Nonlinearity::Silu if flag => "SiLU(inplace=True)".to_owned(),
            Nonlinearity::Silu => "SiLU()".to_owned(),
            Nonlinearity::Gelu => "GELU(approximate='none')".to_owned(),
            Nonlinearity::Tanh => "Tanh()".to_owned(),
            Nonlinearity::Sigmoid => "Sigmoid()".to_owned(),
        }
    }
}

impl Module for Nonlinearity {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.apply(xs)
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(self.repr(false))
    }
}

/// `Dropout` (single values) or `Dropout2d` (whole channels) with probability `p` in training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub channels: bool,
}

impl Module for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if self.channels {
            xs.feature_dropout(self.p, train)
        } else {
            xs.dropout(self.p, train)
        }
    }

    fn tree(&self) -> ModuleTree {
        let name = if self.channels {
            "Dropout2d"
        } else {
            "Dropout"
        };
        ModuleTree::leaf(format!("{name}(p={}, inplace=False)", py_float(self.p)))
    }
}
