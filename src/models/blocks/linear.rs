//! `torch.nn.Linear`, optionally spectrally normalised.

use tch::{nn, Tensor};

use super::init::Init;
use super::repr::py_bool;
use super::spectral_norm::{SpectralNorm, Weight};
use super::Module;
use crate::models::summary::ModuleTree;

/// `y = x W^T + b`, weight `[out, in]`.
pub struct Linear {
    pub in_features: i64,
    pub out_features: i64,
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(path: &nn::Path, in_features: i64, out_features: i64, init: Init) -> Self {
        Self::build(path, [in_features, out_features], true, init, false)
    }

    /// A linear layer whose weight is divided by its spectral norm.
    pub fn spectral(path: &nn::Path, in_features: i64, out_features: i64, init: Init) -> Self {
        Self::build(path, [in_features, out_features], true, init, true)
    }

    /// `[in_features, out_features]`, with or without a bias, optionally spectrally normalised.
    pub fn build(
        path: &nn::Path,
        [in_features, out_features]: [i64; 2],
        bias: bool,
        init: Init,
        spectral: bool,
    ) -> Self {
        let shape = [out_features, in_features];
        let weight_init = init.linear_weight(in_features);
        let weight = if spectral {
            Weight::Spectral(SpectralNorm::new(path, &shape, weight_init, 0))
        } else {
            Weight::Plain(path.var("weight", &shape, weight_init))
        };
        let bias = bias.then(|| path.var("bias", &[out_features], init.bias(in_features)));
        Linear {
            in_features,
            out_features,
            weight,
            bias,
        }
    }
}

impl Module for Linear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.linear(&self.weight.get(train), self.bias.as_ref())
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!(
            "Linear(in_features={}, out_features={}, bias={})",
            self.in_features,
            self.out_features,
            py_bool(self.bias.is_some())
        ))
    }
}
