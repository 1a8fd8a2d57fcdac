//! Normalisation layers with their eps and PyTorch's buffers: `BatchNorm1d/2d`, `GroupNorm`,
//! `LayerNorm`.

use tch::{nn, Kind, Tensor};

use super::init::Init;
use super::repr::{py_float, tuple};
use super::Module;
use crate::models::summary::ModuleTree;

/// PyTorch's default eps of every norm layer.
pub const DEFAULT_EPS: f64 = 1e-5;
/// PyTorch's default batch-norm momentum.
pub const DEFAULT_MOMENTUM: f64 = 0.1;

/// `BatchNorm1d` (`[b, f]`) or `BatchNorm2d` (`[b, c, h, w]`) with affine parameters and running
/// statistics (`running_mean`, `running_var`, `num_batches_tracked`, saved but never optimised).
pub struct BatchNorm {
    features: i64,
    eps: f64,
    momentum: f64,
    /// 1 or 2, for the printout.
    dims: usize,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    batches_tracked: Tensor,
}

impl BatchNorm {
    /// `BatchNorm2d(features, eps)` with momentum 0.1.
    pub fn new_2d(path: &nn::Path, features: i64, eps: f64, init: Init) -> Self {
        Self::new(path, features, eps, init, 2)
    }

    /// `BatchNorm1d(features, eps)` with momentum 0.1.
    pub fn new_1d(path: &nn::Path, features: i64, eps: f64, init: Init) -> Self {
        Self::new(path, features, eps, init, 1)
    }

    /// The same layer with another running-statistics momentum (PyTorch's default is 0.1).
    pub fn momentum(self, momentum: f64) -> Self {
        BatchNorm { momentum, ..self }
    }

    fn new(path: &nn::Path, features: i64, eps: f64, init: Init, dims: usize) -> Self {
        let device = path.device();
        BatchNorm {
            features,
            eps,
            momentum: DEFAULT_MOMENTUM,
            dims,
            weight: path.var("weight", &[features], init.norm_weight()),
            bias: path.var("bias", &[features], nn::Init::Const(0.0)),
            running_mean: path.zeros_no_train("running_mean", &[features]),
            running_var: path.ones_no_train("running_var", &[features]),
            batches_tracked: path.add(
                "num_batches_tracked",
                Tensor::zeros([], (Kind::Int64, device)),
                false,
            ),
        }
    }
}

impl Module for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            // PyTorch counts the training batches; libtorch updates the running statistics in
            // place.
            let mut counter = self.batches_tracked.shallow_clone();
            counter += 1;
        }
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            false,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!(
            "BatchNorm{}d({}, eps={}, momentum={}, affine=True, track_running_stats=True)",
            self.dims,
            self.features,
            py_float(self.eps),
            py_float(self.momentum)
        ))
    }
}

/// `GroupNorm(groups, channels, eps)` with affine parameters.
pub struct GroupNorm {
    groups: i64,
    channels: i64,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    pub fn new(path: &nn::Path, groups: i64, channels: i64, eps: f64) -> Self {
        GroupNorm {
            groups,
            channels,
            eps,
            weight: path.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: path.var("bias", &[channels], nn::Init::Const(0.0)),
        }
    }
}

impl Module for GroupNorm {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.group_norm(
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!(
            "GroupNorm({}, {}, eps={}, affine=True)",
            self.groups,
            self.channels,
            py_float(self.eps)
        ))
    }
}

/// `LayerNorm(normalized_shape, eps)` over the trailing dimensions (the WGAN-GP critic
/// normalises over `[C, H, W]`).
pub struct LayerNorm {
    shape: Vec<i64>,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub fn new(path: &nn::Path, shape: &[i64], eps: f64) -> Self {
        LayerNorm {
            shape: shape.to_vec(),
            eps,
            weight: path.var("weight", shape, nn::Init::Const(1.0)),
            bias: path.var("bias", shape, nn::Init::Const(0.0)),
        }
    }
}

impl Module for LayerNorm {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.layer_norm(
            &self.shape,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!(
            "LayerNorm({}, eps={}, elementwise_affine=True)",
            tuple(&self.shape),
            py_float(self.eps)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn norms_normalise_and_print_like_pytorch() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::randn([4, 8, 5, 5], (Kind::Float, Device::Cpu)) * 3.0 + 2.0;
        let gn = GroupNorm::new(&(vs.root() / "gn"), 4, 8, 1e-5);
        let y = gn.forward_t(&x, false);
        let group = y.narrow(1, 0, 2);
        assert!(group.mean(Kind::Float).double_value(&[]).abs() < 1e-4);
        let ln = LayerNorm::new(&(vs.root() / "ln"), &[8, 5, 5], 1e-5);
        assert_eq!(ln.forward_t(&x, true).size(), x.size());
        let bn = BatchNorm::new_2d(&(vs.root() / "bn"), 8, 1e-3, Init::Pytorch);
        let _ = bn.forward_t(&x, true);
        assert_eq!(vs.variables()["bn.num_batches_tracked"].int64_value(&[]), 1);
        assert_eq!(
            gn.tree().to_string(),
            "GroupNorm(4, 8, eps=1e-05, affine=True)"
        );
        assert_eq!(
            ln.tree().to_string(),
            "LayerNorm((8, 5, 5), eps=1e-05, elementwise_affine=True)"
        );
        assert_eq!(
            bn.tree().to_string(),
            "BatchNorm2d(8, eps=0.001, momentum=0.1, affine=True, track_running_stats=True)"
        );
        assert_eq!(vs.trainable_variables().len(), 6);
    }
}
