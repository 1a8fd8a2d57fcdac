//! A sequential block described by value: the same list of [`LayerSpec`]s builds the tch
//! modules, infers every layer's input size, runs the forward pass and prints the PyTorch repr.
//!
//! Parameter names follow PyTorch: a block at path `feature` with a layer named `conv1` owns
//! `feature.conv1.weight` and `feature.conv1.bias`; a batch-norm layer `bn1` also owns the
//! buffers `bn1.running_mean`, `bn1.running_var` and `bn1.num_batches_tracked` (non-trainable
//! variables, so they are saved with the weights but never optimised).
//!
//! The forward pass takes PyTorch's train/eval mode: in training mode batch norm normalises with
//! the batch's statistics and updates its running ones, and dropout drops; in eval mode batch norm
//! uses the running statistics and dropout is the identity. Weights and biases of `Conv2d` and
//! `Linear` start as PyTorch's do.

use tch::{nn, Kind, Tensor};

use super::summary::ModuleTree;

/// One layer of a [`Sequential`], by its hyper-parameters only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerSpec {
    /// `Conv2d` with a square kernel, stride 1.
    Conv2d { out_channels: i64, kernel: i64, padding: i64 },
    /// `MaxPool2d` with a square window.
    MaxPool2d { kernel: i64, stride: i64, padding: i64 },
    Relu,
    /// Flattens `[b, c, h, w]` to `[b, c*h*w]`.
    Flatten,
    Linear { out_features: i64 },
    /// `BatchNorm2d` over the channels of an image (eps 1e-5, momentum 0.1, affine).
    BatchNorm2d,
    /// `BatchNorm1d` over the features of a vector (eps 1e-5, momentum 0.1, affine).
    BatchNorm1d,
    /// `Dropout2d`: zeroes whole channels with probability `p` in training mode.
    Dropout2d { p: f64 },
    /// `Dropout`: zeroes single values with probability `p` in training mode.
    Dropout { p: f64 },
}

/// PyTorch's batch-norm defaults, and how its reprs print them.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;
const BN_REPR_ARGS: &str = "eps=1e-05, momentum=0.1, affine=True, track_running_stats=True";

/// What flows between layers, without the batch dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Image { channels: i64, height: i64, width: i64 },
    Vector(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("layer `{layer}` needs {needs} input but gets {found:?}: the input is too small or the layer order is wrong (raise `image_size`)")]
    LayerInputMismatch { layer: String, needs: &'static str, found: Activation },
    #[error("architecture `{arch}` needs images of at least {min}x{min} pixels, `image_size` is {found}")]
    ImageTooSmall { arch: String, min: i64, found: i64 },
    #[error("{what} {found} is not supported: expected {expected}")]
    Unsupported { what: &'static str, found: i64, expected: &'static str },
}

enum Layer {
    Conv2d(nn::Conv2D),
    Linear(nn::Linear),
    MaxPool2d { kernel: i64, stride: i64, padding: i64 },
    Relu,
    Flatten,
    /// The tch layer and PyTorch's `num_batches_tracked` counter (an i64 scalar) beside it.
    BatchNorm(nn::BatchNorm, Tensor),
    /// `channels`: drop whole channels (`Dropout2d`) rather than single values.
    Dropout { p: f64, channels: bool },
}

/// Layers applied in order, like `torch.nn.Sequential`.
pub struct Sequential {
    layers: Vec<(String, Layer)>,
    reprs: Vec<(String, String)>,
    output: Activation,
}

impl Sequential {
    /// Creates the layers under `path`, starting from `input`.
    pub fn new<S: AsRef<str>>(path: &nn::Path, input: Activation, specs: &[(S, LayerSpec)]) -> Result<Self, ModelError> {
        let mut current = input;
        let mut layers = Vec::with_capacity(specs.len());
        let mut reprs = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let name = name.as_ref();
            let (layer, repr, next) = build_layer(&(path / name), name, *spec, current)?;
            layers.push((name.to_owned(), layer));
            reprs.push((name.to_owned(), repr));
            current = next;
        }
        Ok(Sequential { layers, reprs, output: current })
    }

    /// What the block produces for one sample.
    pub fn output(&self) -> Activation {
        self.output
    }

    /// The width of the output, flattened.
    pub fn output_dim(&self) -> i64 {
        match self.output {
            Activation::Image { channels, height, width } => channels * height * width,
            Activation::Vector(n) => n,
        }
    }

    /// Runs the layers in training (`train = true`) or eval mode.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |x, (_, layer)| apply(layer, &x, train))
    }

    /// The block as PyTorch prints it.
    pub fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "Sequential",
            self.reprs.iter().map(|(name, repr)| (name.clone(), ModuleTree::leaf(repr))).collect(),
        )
    }
}

fn apply(layer: &Layer, x: &Tensor, train: bool) -> Tensor {
    match layer {
        Layer::Conv2d(conv) => x.apply(conv),
        Layer::Linear(linear) => x.apply(linear),
        Layer::MaxPool2d { kernel, stride, padding } => {
            x.max_pool2d([*kernel, *kernel], [*stride, *stride], [*padding, *padding], [1, 1], false)
        }
        Layer::Relu => x.relu(),
        // (b, c, h, w) -> (b, c*h*w)
        Layer::Flatten => x.flatten(1, -1),
        Layer::BatchNorm(bn, batches_tracked) => {
            if train {
                // PyTorch counts the training batches; the running statistics are updated in
                // place by libtorch's batch_norm.
                let mut counter = batches_tracked.shallow_clone();
                counter += 1;
            }
            x.apply_t(bn, train)
        }
        Layer::Dropout { p, channels: true } => x.feature_dropout(*p, train),
        Layer::Dropout { p, channels: false } => x.dropout(*p, train),
    }
}

fn build_layer(
    path: &nn::Path,
    name: &str,
    spec: LayerSpec,
    input: Activation,
) -> Result<(Layer, String, Activation), ModelError> {
    let mismatch = |needs| ModelError::LayerInputMismatch { layer: name.to_owned(), needs, found: input };
    match (spec, input) {
        (LayerSpec::Conv2d { out_channels, kernel, padding }, Activation::Image { channels, height, width }) => {
            let side = |s: i64| s + 2 * padding - kernel + 1;
            let next = image(out_channels, side(height), side(width)).ok_or_else(|| mismatch("a larger image"))?;
            let init = pytorch_init(channels * kernel * kernel);
            let config = nn::ConvConfig { padding, ws_init: init, bs_init: init, ..Default::default() };
            let conv = nn::conv2d(path, channels, out_channels, kernel, config);
            let pad = if padding > 0 { format!(", padding=({padding}, {padding})") } else { String::new() };
            let repr = format!("Conv2d({channels}, {out_channels}, kernel_size=({kernel}, {kernel}), stride=(1, 1){pad})");
            Ok((Layer::Conv2d(conv), repr, next))
        }
        (LayerSpec::MaxPool2d { kernel, stride, padding }, Activation::Image { channels, height, width }) => {
            let side = |s: i64| (s + 2 * padding - kernel).div_euclid(stride) + 1;
            let next = image(channels, side(height), side(width)).ok_or_else(|| mismatch("a larger image"))?;
            let repr = format!("MaxPool2d(kernel_size={kernel}, stride={stride}, padding={padding}, dilation=1, ceil_mode=False)");
            Ok((Layer::MaxPool2d { kernel, stride, padding }, repr, next))
        }
        (LayerSpec::Relu, any) => Ok((Layer::Relu, "ReLU()".to_owned(), any)),
        (LayerSpec::Flatten, Activation::Image { channels, height, width }) => Ok((
            Layer::Flatten,
            "Flatten(start_dim=1, end_dim=-1)".to_owned(),
            Activation::Vector(channels * height * width),
        )),
        (LayerSpec::Linear { out_features }, Activation::Vector(in_features)) => {
            let init = pytorch_init(in_features);
            let config = nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true };
            let linear = nn::linear(path, in_features, out_features, config);
            let repr = format!("Linear(in_features={in_features}, out_features={out_features}, bias=True)");
            Ok((Layer::Linear(linear), repr, Activation::Vector(out_features)))
        }
        (LayerSpec::Linear { .. }, _) => Err(mismatch("a flat vector (add a Flatten layer)")),
        (LayerSpec::BatchNorm2d, Activation::Image { channels, .. }) => {
            Ok((batch_norm(path, 2, channels), format!("BatchNorm2d({})", bn_args(channels)), input))
        }
        (LayerSpec::BatchNorm1d, Activation::Vector(features)) => {
            Ok((batch_norm(path, 1, features), format!("BatchNorm1d({})", bn_args(features)), input))
        }
        (LayerSpec::BatchNorm1d, _) => Err(mismatch("a flat vector (add a Flatten layer)")),
        (LayerSpec::Dropout2d { p }, Activation::Image { .. }) => {
            Ok((Layer::Dropout { p, channels: true }, format!("Dropout2d(p={p}, inplace=False)"), input))
        }
        (LayerSpec::Dropout { p }, any) => {
            Ok((Layer::Dropout { p, channels: false }, format!("Dropout(p={p}, inplace=False)"), any))
        }
        (_, Activation::Vector(_)) => Err(mismatch("an image")),
    }
}

/// A batch-norm layer over `features` channels under `path`, with PyTorch's buffers and
/// initialisation (weight 1, bias 0; tch's default draws the weight uniformly in `[0, 1]`).
fn batch_norm(path: &nn::Path, dims: usize, features: i64) -> Layer {
    let config = nn::BatchNormConfig {
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    let bn = if dims == 1 { nn::batch_norm1d(path, features, config) } else { nn::batch_norm2d(path, features, config) };
    let counter = path.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, path.device())), false);
    Layer::BatchNorm(bn, counter)
}

fn bn_args(features: i64) -> String {
    format!("{features}, {BN_REPR_ARGS}")
}

/// PyTorch's default initialisation of `Conv2d` and `Linear` weights and biases (its
/// `kaiming_uniform_(a=sqrt(5))`): uniform in `±1/sqrt(fan_in)`. tch's default (Kaiming with the
/// ReLU gain, zero conv biases) is 2.45x wider per layer, which starts the heads with logits
/// large enough to give an initial cross-entropy near 5 instead of ln 10 and destabilises DANN.
fn pytorch_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

fn image(channels: i64, height: i64, width: i64) -> Option<Activation> {
    (height > 0 && width > 0).then_some(Activation::Image { channels, height, width })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_sizes_and_names_parameters_like_pytorch() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [
            ("conv1", LayerSpec::Conv2d { out_channels: 4, kernel: 3, padding: 1 }),
            ("pool1", LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 }),
            ("flatten", LayerSpec::Flatten),
            ("fc1", LayerSpec::Linear { out_features: 5 }),
        ];
        let input = Activation::Image { channels: 3, height: 8, width: 8 };
        let seq = Sequential::new(&(vs.root() / "block"), input, &specs).unwrap();
        assert_eq!(seq.output_dim(), 5);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["block.conv1.bias", "block.conv1.weight", "block.fc1.bias", "block.fc1.weight"]);
        assert_eq!(vs.variables()["block.fc1.weight"].size(), [5, 4 * 4 * 4]);
        let out = seq.forward_t(&Tensor::zeros([2, 3, 8, 8], (tch::Kind::Float, tch::Device::Cpu)), false);
        assert_eq!(out.size(), [2, 5]);
    }

    #[test]
    fn rejects_an_image_that_shrinks_to_nothing() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [("conv1", LayerSpec::Conv2d { out_channels: 4, kernel: 5, padding: 0 })];
        let input = Activation::Image { channels: 1, height: 4, width: 4 };
        let err = Sequential::new(&vs.root(), input, &specs).err().unwrap();
        assert!(err.to_string().contains("layer `conv1`"), "{err}");
    }

    #[test]
    fn batch_norm_tracks_statistics_in_training_and_uses_them_in_eval() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [("bn1", LayerSpec::BatchNorm1d), ("drop1", LayerSpec::Dropout { p: 0.5 })];
        let seq = Sequential::new(&(vs.root() / "head"), Activation::Vector(3), &specs).unwrap();
        let x = Tensor::randn([8, 3], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 + 5.0;
        let vars = vs.variables();
        assert_eq!(vs.trainable_variables().len(), 2, "only weight and bias are trained");
        let _train = seq.forward_t(&x, true);
        assert_eq!(vars["head.bn1.num_batches_tracked"].int64_value(&[]), 1);
        let expected_mean = x.mean_dim(0, false, tch::Kind::Float) * BN_MOMENTUM;
        assert!(vars["head.bn1.running_mean"].allclose(&expected_mean, 1e-5, 1e-6, false));
        // Eval: (x - running_mean) / sqrt(running_var + eps), no dropout, counter untouched.
        let eval = seq.forward_t(&x, false);
        let manual = (&x - &vars["head.bn1.running_mean"]) / (&vars["head.bn1.running_var"] + BN_EPS).sqrt();
        assert!(eval.allclose(&manual, 1e-5, 1e-5, false));
        assert_eq!(vars["head.bn1.num_batches_tracked"].int64_value(&[]), 1);
        let tree = seq.tree().to_string();
        assert!(tree.contains("(bn1): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"), "{tree}");
        assert!(tree.contains("(drop1): Dropout(p=0.5, inplace=False)"), "{tree}");
    }
}
