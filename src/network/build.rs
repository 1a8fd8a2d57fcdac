//! Builds a network's libtorch module from its tree, for the worker side (the `hwrun` process
//! never calls this: it would load libtorch). Layers with a block in
//! [`crate::models::blocks`] use it; the parameter-free rest (pooling, reshapes, upsampling)
//! and `Embedding` are small modules here. Variables are created under the `state_dict` names
//! of [`Network::state_dict`], so a PyTorch file of the same printout loads strictly.
//!
//! The forward pass is the children in order, with the reshapes that shape inference found
//! ([`Shapes::reshapes`]) applied before the layers that need them.

use tch::{nn, Tensor};

use super::shape::{Reshape, Shapes};
use super::spec::{join, Layer, Module, Network, Resize};
use crate::models::blocks::{
    self, BatchNorm, Conv2d, ConvTranspose2d, Dropout, GroupNorm, Init, LayerNorm, Linear,
    Sequential,
};
use crate::models::summary::ModuleTree;

/// A layer option the libtorch builder does not implement yet (the tree, printout, state_dict
/// and shapes still work).
#[derive(Debug, thiserror::Error)]
#[error("layer `{path}`: {what} is not supported by the libtorch builder yet")]
pub struct BuildError {
    pub path: String,
    pub what: String,
}

/// A built network: its forward pass and its PyTorch printout.
pub struct Built {
    forward: Sequential,
    tree: ModuleTree,
}

impl Built {
    /// One forward pass on a batch (`train`: batch statistics, dropout).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        blocks::Module::forward_t(&self.forward, xs, train)
    }

    /// The printout, PyTorch 2.13's `print(model)`.
    pub fn tree(&self) -> &ModuleTree {
        &self.tree
    }
}

/// Creates `network`'s variables under `root` and returns its forward pass; `shapes` is the
/// shape inference for the input it will get (its reshapes become part of the forward).
pub fn build(network: &Network, shapes: &Shapes, root: &nn::Path) -> Result<Built, BuildError> {
    let mut forward = Sequential::new();
    add(&mut forward, &network.root, "", root, &shapes.reshapes)?;
    Ok(Built {
        forward,
        tree: network.tree(),
    })
}

/// Appends `module` (at `path`, with variables under `vars`) to `sequence`.
fn add(
    sequence: &mut Sequential,
    module: &Module,
    path: &str,
    vars: &nn::Path,
    reshapes: &[Reshape],
) -> Result<(), BuildError> {
    match module {
        Module::Container { children, .. } => {
            for child in children {
                let child_vars = vars / child.name.as_str();
                add(
                    sequence,
                    &child.module,
                    &join(path, &child.name),
                    &child_vars,
                    reshapes,
                )?;
            }
            Ok(())
        }
        Module::Layer(layer) => {
            if let Some(reshape) = reshapes.iter().find(|r| r.path == path) {
                sequence.push(format!("{path}:reshape"), View(reshape.to.clone()));
            }
            layer_block(sequence, layer, path, vars)
        }
    }
}

fn unsupported(path: &str, what: &str) -> BuildError {
    BuildError {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

fn layer_block(
    sequence: &mut Sequential,
    layer: &Layer,
    path: &str,
    vars: &nn::Path,
) -> Result<(), BuildError> {
    let name = path.to_owned();
    match layer {
        Layer::Conv2d(conv) => sequence.push(name, Conv2d::new(vars, *conv)),
        Layer::ConvTranspose2d(conv) => sequence.push(name, ConvTranspose2d::new(vars, *conv)),
        Layer::Linear {
            in_features,
            out_features,
            bias,
            spectral_norm,
        } => sequence.push(
            name,
            Linear::build(
                vars,
                [*in_features, *out_features],
                *bias,
                Init::Pytorch,
                *spectral_norm,
            ),
        ),
        Layer::BatchNorm { dims, norm } => {
            let (Some(momentum), true, true, true) = (
                norm.momentum,
                norm.affine,
                norm.bias,
                norm.track_running_stats,
            ) else {
                return Err(unsupported(
                    path,
                    "batch norm without affine, bias, running statistics or momentum",
                ));
            };
            let batch_norm = if *dims == 1 {
                BatchNorm::new_1d(vars, norm.features, norm.eps, Init::Pytorch)
            } else {
                BatchNorm::new_2d(vars, norm.features, norm.eps, Init::Pytorch)
            };
            sequence.push(name, batch_norm.momentum(momentum));
        }
        Layer::LayerNorm {
            shape,
            eps,
            elementwise_affine: true,
            bias: true,
        } => sequence.push(name, LayerNorm::new(vars, shape, *eps)),
        Layer::GroupNorm {
            groups,
            channels,
            eps,
            affine: true,
            bias: true,
        } => sequence.push(name, GroupNorm::new(vars, *groups, *channels, *eps)),
        Layer::LayerNorm { .. } | Layer::GroupNorm { .. } => {
            return Err(unsupported(path, "a norm without affine weight and bias"))
        }
        Layer::InstanceNorm2d(_) => return Err(unsupported(path, "InstanceNorm2d")),
        Layer::Dropout { p, channels, .. } => sequence.push(
            name,
            Dropout {
                p: *p,
                channels: *channels,
            },
        ),
        Layer::Activation { function, .. } => sequence.push(name, *function),
        Layer::Embedding { count, dim, .. } => sequence.push(
            name,
            Embedding {
                weight: vars.var(
                    "weight",
                    &[*count, *dim],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                ),
            },
        ),
        Layer::Upsample { mode, .. } if mode != "nearest" => {
            return Err(unsupported(path, &format!("Upsample mode '{mode}'")))
        }
        Layer::Flatten { .. }
        | Layer::Unflatten { .. }
        | Layer::MaxPool2d { .. }
        | Layer::AvgPool2d { .. }
        | Layer::Upsample { .. }
        | Layer::LogSoftmax { .. }
        | Layer::Identity => sequence.push(name, Functional(layer.clone())),
    }
    Ok(())
}

/// `x.view(N, *shape)`: a reshape of the forward code.
struct View(Vec<i64>);

impl blocks::Module for View {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let mut shape = vec![xs.size()[0]];
        shape.extend_from_slice(&self.0);
        xs.reshape(shape)
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!("View({:?})", self.0))
    }
}

/// `torch.nn.Embedding` (without `max_norm`).
struct Embedding {
    weight: Tensor,
}

impl blocks::Module for Embedding {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        Tensor::embedding(&self.weight, xs, -1, false, false)
    }

    fn tree(&self) -> ModuleTree {
        let size = self.weight.size();
        ModuleTree::leaf(format!("Embedding({}, {})", size[0], size[1]))
    }
}

/// A parameter-free layer, run with its hyper-parameters from the tree.
struct Functional(Layer);

impl blocks::Module for Functional {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        match &self.0 {
            Layer::Flatten { start_dim, end_dim } => xs.flatten(*start_dim, *end_dim),
            Layer::Unflatten { dim, sizes } => xs.unflatten(*dim, sizes.as_slice()),
            Layer::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => xs.max_pool2d(
                kernel.pair(),
                stride.pair(),
                padding.pair(),
                dilation.pair(),
                *ceil_mode,
            ),
            Layer::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => xs.avg_pool2d(
                kernel.pair(),
                stride.pair(),
                padding.pair(),
                *ceil_mode,
                *count_include_pad,
                None::<i64>,
            ),
            Layer::Upsample { resize, .. } => {
                let size = xs.size();
                let output = match resize {
                    Resize::Size(size) => size.pair(),
                    Resize::ScaleFactor(factor) => [
                        (size[2] as f64 * factor).floor() as i64,
                        (size[3] as f64 * factor).floor() as i64,
                    ],
                };
                xs.upsample_nearest2d(output, None, None)
            }
            // PyTorch's legacy choice without `dim`: 0 for 0-, 1- and 3-d inputs, else 1.
            Layer::LogSoftmax { dim } => {
                let dim = dim.unwrap_or(if matches!(xs.dim(), 0 | 1 | 3) { 0 } else { 1 });
                xs.log_softmax(dim, None)
            }
            // `Identity`, the only other layer built as a `Functional`.
            _ => xs.shallow_clone(),
        }
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(self.0.repr())
    }
}
