//! A network as data: a tree of named modules, the way PyTorch prints it. Containers
//! (`Sequential` or a named class) hold named children and run them in order; every other node
//! is one layer with its hyper-parameters.
//!
//! The tree is the canonical form of a network: it serialises with serde (for cache keys and
//! reports), prints itself exactly as PyTorch 2.13's `print(model)` does ([`Network::tree`]), and
//! lists its `state_dict` ([`Network::state_dict`]) without building anything, so the `hwrun`
//! process can describe a network without loading libtorch.

use serde::{Deserialize, Serialize};

use crate::models::blocks::repr::{py_bool, py_float, tuple};
use crate::models::blocks::{ConvSpec, Nonlinearity};
use crate::models::summary::ModuleTree;

/// A whole network: its root module (usually a container named after the user's class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub root: Module,
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    /// `Sequential`, `ModuleList` or a user's class: the children, run in order.
    Container {
        class: String,
        children: Vec<Child>,
    },
    Layer(Layer),
}

/// A named child of a container (`(conv1): Conv2d(...)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    pub name: String,
    pub module: Module,
}

/// A kernel, stride or padding of a pooling layer as written: PyTorch prints `2` and `(2, 2)`
/// differently, so the form is kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Square(i64),
    Pair([i64; 2]),
}

impl Size {
    pub fn pair(self) -> [i64; 2] {
        match self {
            Size::Square(side) => [side; 2],
            Size::Pair(pair) => pair,
        }
    }

    fn repr(self) -> String {
        match self {
            Size::Square(side) => side.to_string(),
            Size::Pair(pair) => tuple(&pair),
        }
    }
}

/// The options every batch- and instance-norm layer has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormOptions {
    pub features: i64,
    pub eps: f64,
    /// `None`: a cumulative average of the batch statistics.
    pub momentum: Option<f64>,
    /// Learnt `weight` (and `bias`, see below).
    pub affine: bool,
    /// PyTorch 2.13's `bias` flag: an affine layer without its shift.
    pub bias: bool,
    /// Keep `running_mean`, `running_var`, `num_batches_tracked`.
    pub track_running_stats: bool,
}

impl NormOptions {
    fn repr(&self, class: &str) -> String {
        let momentum = self.momentum.map_or("None".to_owned(), py_float);
        format!(
            "{class}({}, eps={}, momentum={momentum}, affine={}, bias={}, track_running_stats={})",
            self.features,
            py_float(self.eps),
            py_bool(self.affine),
            py_bool(self.affine && self.bias),
            py_bool(self.track_running_stats)
        )
    }
}

/// How `Upsample` sets its output size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    Size(Size),
    ScaleFactor(f64),
}

/// One layer and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Layer {
    Conv2d(ConvSpec),
    ConvTranspose2d(ConvSpec),
    Linear {
        in_features: i64,
        out_features: i64,
        bias: bool,
        spectral_norm: bool,
    },
    /// Merges dims `start_dim..=end_dim` (counted with the batch dimension, as PyTorch does).
    Flatten {
        start_dim: i64,
        end_dim: i64,
    },
    /// Splits dim `dim` into `sizes`.
    Unflatten {
        dim: i64,
        sizes: Vec<i64>,
    },
    /// `BatchNorm1d` (`dims` 1) or `BatchNorm2d` (`dims` 2).
    BatchNorm {
        dims: u8,
        norm: NormOptions,
    },
    InstanceNorm2d(NormOptions),
    LayerNorm {
        shape: Vec<i64>,
        eps: f64,
        elementwise_affine: bool,
        bias: bool,
    },
    GroupNorm {
        groups: i64,
        channels: i64,
        eps: f64,
        affine: bool,
        bias: bool,
    },
    /// `Dropout`, or `Dropout2d` (whole channels) when `channels`.
    Dropout {
        p: f64,
        channels: bool,
        inplace: bool,
    },
    MaxPool2d {
        kernel: Size,
        stride: Size,
        padding: Size,
        dilation: Size,
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: Size,
        stride: Size,
        padding: Size,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    /// `mode`: PyTorch's interpolation mode (`nearest`, `bilinear`, ...).
    Upsample {
        resize: Resize,
        mode: String,
    },
    Embedding {
        count: i64,
        dim: i64,
        padding_idx: Option<i64>,
    },
    Activation {
        function: Nonlinearity,
        inplace: bool,
    },
    /// `dim` `None`: PyTorch's legacy choice (dim 1 of a batch).
    LogSoftmax {
        dim: Option<i64>,
    },
    Identity,
}

impl Layer {
    /// The layer as PyTorch 2.13 prints it.
    pub fn repr(&self) -> String {
        match self {
            Layer::Conv2d(conv) => conv.repr("Conv2d"),
            Layer::ConvTranspose2d(conv) => conv.repr("ConvTranspose2d"),
            Layer::Linear {
                in_features,
                out_features,
                bias,
                ..
            } => format!(
                "Linear(in_features={in_features}, out_features={out_features}, bias={})",
                py_bool(*bias)
            ),
            Layer::Flatten { start_dim, end_dim } => {
                format!("Flatten(start_dim={start_dim}, end_dim={end_dim})")
            }
            Layer::Unflatten { dim, sizes } => {
                format!("Unflatten(dim={dim}, unflattened_size={})", tuple(sizes))
            }
            Layer::BatchNorm { dims, norm } => norm.repr(&format!("BatchNorm{dims}d")),
            Layer::InstanceNorm2d(norm) => norm.repr("InstanceNorm2d"),
            Layer::LayerNorm {
                shape,
                eps,
                elementwise_affine,
                bias,
            } => format!(
                "LayerNorm({}, eps={}, elementwise_affine={}, bias={})",
                tuple(shape),
                py_float(*eps),
                py_bool(*elementwise_affine),
                py_bool(*elementwise_affine && *bias)
            ),
            Layer::GroupNorm {
                groups,
                channels,
                eps,
                affine,
                bias,
            } => format!(
                "GroupNorm({groups}, {channels}, eps={}, affine={}, bias={})",
                py_float(*eps),
                py_bool(*affine),
                py_bool(*affine && *bias)
            ),
            Layer::Dropout {
                p,
                channels,
                inplace,
            } => format!(
                "{}(p={}, inplace={})",
                if *channels { "Dropout2d" } else { "Dropout" },
                py_float(*p),
                py_bool(*inplace)
            ),
            Layer::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => format!(
                "MaxPool2d(kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={})",
                kernel.repr(),
                stride.repr(),
                padding.repr(),
                dilation.repr(),
                py_bool(*ceil_mode)
            ),
            Layer::AvgPool2d {
                kernel,
                stride,
                padding,
                ..
            } => format!(
                "AvgPool2d(kernel_size={}, stride={}, padding={})",
                kernel.repr(),
                stride.repr(),
                padding.repr()
            ),
            Layer::Upsample { resize, mode } => match resize {
                Resize::Size(size) => format!("Upsample(size={}, mode='{mode}')", size.repr()),
                Resize::ScaleFactor(factor) => {
                    format!(
                        "Upsample(scale_factor={}, mode='{mode}')",
                        py_float(*factor)
                    )
                }
            },
            Layer::Embedding {
                count,
                dim,
                padding_idx,
            } => match padding_idx {
                Some(index) => format!("Embedding({count}, {dim}, padding_idx={index})"),
                None => format!("Embedding({count}, {dim})"),
            },
            Layer::Activation { function, inplace } => function.repr(*inplace),
            Layer::LogSoftmax { dim } => match dim {
                Some(dim) => format!("LogSoftmax(dim={dim})"),
                None => "LogSoftmax(dim=None)".to_owned(),
            },
            Layer::Identity => "Identity()".to_owned(),
        }
    }

    /// The layer's `state_dict` entries, relative to the layer, in PyTorch's order (parameters,
    /// then buffers).
    pub fn entries(&self) -> Vec<Entry> {
        let param = |name: &str, shape: Vec<i64>| Entry::new(name, shape, true);
        let buffer = |name: &str, shape: Vec<i64>| Entry::new(name, shape, false);
        match self {
            Layer::Conv2d(conv) | Layer::ConvTranspose2d(conv) => {
                let transposed = matches!(self, Layer::ConvTranspose2d(_));
                let shape = conv.weight_shape(transposed).to_vec();
                // Spectral norm's power iteration runs over the output dim: 1 for a transposed
                // conv's `[in, out, kh, kw]` weight.
                let output_dim = usize::from(transposed);
                weighted(
                    shape,
                    conv.bias.then_some(conv.out_channels),
                    conv.spectral_norm,
                    output_dim,
                )
            }
            Layer::Linear {
                in_features,
                out_features,
                bias,
                spectral_norm,
            } => weighted(
                vec![*out_features, *in_features],
                bias.then_some(*out_features),
                *spectral_norm,
                0,
            ),
            Layer::BatchNorm { norm, .. } | Layer::InstanceNorm2d(norm) => {
                let features = vec![norm.features];
                let mut entries = Vec::new();
                if norm.affine {
                    entries.push(param("weight", features.clone()));
                    if norm.bias {
                        entries.push(param("bias", features.clone()));
                    }
                }
                if norm.track_running_stats {
                    entries.push(buffer("running_mean", features.clone()));
                    entries.push(buffer("running_var", features));
                    entries.push(buffer("num_batches_tracked", Vec::new()));
                }
                entries
            }
            Layer::LayerNorm {
                shape,
                elementwise_affine,
                bias,
                ..
            } => affine(shape.clone(), *elementwise_affine, *bias),
            Layer::GroupNorm {
                channels,
                affine: learnt,
                bias,
                ..
            } => affine(vec![*channels], *learnt, *bias),
            Layer::Embedding { count, dim, .. } => vec![param("weight", vec![*count, *dim])],
            Layer::Flatten { .. }
            | Layer::Unflatten { .. }
            | Layer::Dropout { .. }
            | Layer::MaxPool2d { .. }
            | Layer::AvgPool2d { .. }
            | Layer::Upsample { .. }
            | Layer::Activation { .. }
            | Layer::LogSoftmax { .. }
            | Layer::Identity => Vec::new(),
        }
    }
}

/// The entries of a conv or linear layer: `weight` and `bias`, or under hook-style spectral
/// norm (`torch.nn.utils.spectral_norm`) `bias`, `weight_orig` and the `weight_u` / `weight_v`
/// buffers, in that order.
fn weighted(shape: Vec<i64>, bias: Option<i64>, spectral: bool, output_dim: usize) -> Vec<Entry> {
    let bias = bias.map(|features| Entry::new("bias", vec![features], true));
    if !spectral {
        return std::iter::once(Entry::new("weight", shape, true))
            .chain(bias)
            .collect();
    }
    let outputs = shape[output_dim];
    let inputs = shape.iter().product::<i64>() / outputs.max(1);
    bias.into_iter()
        .chain([
            Entry::new("weight_orig", shape, true),
            Entry::new("weight_u", vec![outputs], false),
            Entry::new("weight_v", vec![inputs], false),
        ])
        .collect()
}

/// `weight` and `bias` of a norm layer with an elementwise affine transform.
fn affine(shape: Vec<i64>, learnt: bool, bias: bool) -> Vec<Entry> {
    if !learnt {
        return Vec::new();
    }
    let mut entries = vec![Entry::new("weight", shape.clone(), true)];
    if bias {
        entries.push(Entry::new("bias", shape, true));
    }
    entries
}

/// One `state_dict` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The dotted name (`layer1.0.weight`).
    pub name: String,
    pub shape: Vec<i64>,
    /// A parameter (counted, optimised) rather than a buffer.
    pub parameter: bool,
}

impl Entry {
    fn new(name: &str, shape: Vec<i64>, parameter: bool) -> Self {
        Entry {
            name: name.to_owned(),
            shape,
            parameter,
        }
    }

    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

impl Module {
    /// The module as PyTorch prints it.
    pub fn tree(&self) -> ModuleTree {
        match self {
            Module::Layer(layer) => ModuleTree::leaf(layer.repr()),
            // PyTorch prints a container without children as `Sequential()`.
            Module::Container { class, children } if children.is_empty() => {
                ModuleTree::leaf(format!("{class}()"))
            }
            Module::Container { class, children } => ModuleTree::node(
                class.clone(),
                children
                    .iter()
                    .map(|child| (child.name.clone(), child.module.tree()))
                    .collect(),
            ),
        }
    }

    fn collect_entries(&self, prefix: &str, out: &mut Vec<Entry>) {
        match self {
            Module::Layer(layer) => out.extend(layer.entries().into_iter().map(|entry| Entry {
                name: join(prefix, &entry.name),
                ..entry
            })),
            Module::Container { children, .. } => {
                for child in children {
                    child
                        .module
                        .collect_entries(&join(prefix, &child.name), out);
                }
            }
        }
    }
}

/// `prefix.name`, or `name` at the root.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

impl Network {
    /// The network as PyTorch 2.13's `print(model)` prints it.
    pub fn tree(&self) -> ModuleTree {
        self.root.tree()
    }

    /// Every `state_dict` entry, in PyTorch's order.
    pub fn state_dict(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        self.root.collect_entries("", &mut entries);
        entries
    }

    /// `sum(p.numel() for p in model.parameters())`.
    pub fn parameter_count(&self) -> i64 {
        self.state_dict()
            .iter()
            .filter(|entry| entry.parameter)
            .map(Entry::numel)
            .sum()
    }
}
