//! A straight stack of layers described by value: the same list of [`LayerSpec`]s builds the
//! blocks of the vocabulary ([`super::blocks`]), infers every layer's input size (so a spec
//! never repeats an input width) and reports a layer that cannot take what flows into it.
//!
//! Parameter names follow PyTorch: a stack at path `feature` with a layer named `conv1` owns
//! `feature.conv1.weight` and `feature.conv1.bias`.

use tch::{nn, Tensor};

use super::blocks::{
    BatchNorm, Conv2d, ConvSpec, ConvTranspose2d, Dropout, GroupNorm, Init, LayerNorm, Linear,
    Module, Nonlinearity, Sequential,
};
use super::summary::ModuleTree;

/// One layer of a [`Stack`], by its hyper-parameters only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerSpec {
    /// `Conv2d` with a square kernel.
    Conv2d {
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    },
    /// `ConvTranspose2d` with a square kernel.
    ConvTranspose2d {
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    },
    /// `MaxPool2d` with a square window.
    MaxPool2d {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    Act(Nonlinearity),
    /// Flattens `[b, c, h, w]` to `[b, c*h*w]`.
    Flatten,
    Linear {
        out_features: i64,
    },
    /// `BatchNorm2d` over the channels of an image, or `BatchNorm1d` over a vector's features.
    BatchNorm {
        eps: f64,
    },
    GroupNorm {
        groups: i64,
        eps: f64,
    },
    /// `LayerNorm` over everything but the batch dimension (`[C, H, W]` of an image).
    LayerNorm {
        eps: f64,
    },
    /// `Dropout2d`: zeroes whole channels with probability `p` in training mode.
    Dropout2d {
        p: f64,
    },
    /// `Dropout`: zeroes single values with probability `p` in training mode.
    Dropout {
        p: f64,
    },
}

impl LayerSpec {
    /// A stride-1 conv with bias, `padding` on each side.
    pub const fn conv(out_channels: i64, kernel: i64, padding: i64) -> Self {
        LayerSpec::Conv2d {
            out_channels,
            kernel,
            stride: 1,
            padding,
            bias: true,
        }
    }

    pub const RELU: LayerSpec = LayerSpec::Act(Nonlinearity::Relu);
    /// Batch norm with PyTorch's eps.
    pub const BATCH_NORM: LayerSpec = LayerSpec::BatchNorm {
        eps: super::blocks::norm::DEFAULT_EPS,
    };
}

/// How the weights of a stack start and whether its conv and linear weights are spectrally
/// normalised.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StackOptions {
    pub init: Init,
    pub spectral_norm: bool,
}

/// What flows between layers, without the batch dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Image {
        channels: i64,
        height: i64,
        width: i64,
    },
    Vector(i64),
}

impl Activation {
    /// The per-sample dimensions, as tensor sizes.
    pub fn dims(self) -> Vec<i64> {
        match self {
            Activation::Image {
                channels,
                height,
                width,
            } => vec![channels, height, width],
            Activation::Vector(n) => vec![n],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("layer `{layer}` needs {needs} input but gets {found:?}: the input is too small or the layer order is wrong (raise `image_size`)")]
    LayerInputMismatch {
        layer: String,
        needs: &'static str,
        found: Activation,
    },
    #[error("architecture `{arch}` needs images of at least {min}x{min} pixels, `image_size` is {found}")]
    ImageTooSmall { arch: String, min: i64, found: i64 },
    #[error("{what} {found} is not supported: expected {expected}")]
    Unsupported {
        what: &'static str,
        found: i64,
        expected: &'static str,
    },
}

/// `MaxPool2d`, the one parameter-free layer with hyper-parameters in its printout.
struct MaxPool {
    kernel: i64,
    stride: i64,
    padding: i64,
}

impl Module for MaxPool {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.max_pool2d(
            [self.kernel; 2],
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            false,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!(
            "MaxPool2d(kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False)",
            self.kernel, self.stride, self.padding
        ))
    }
}

struct Flatten;

impl Module for Flatten {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        // (b, c, h, w) -> (b, c*h*w)
        xs.flatten(1, -1)
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf("Flatten(start_dim=1, end_dim=-1)")
    }
}

/// Layers applied in order, with the shape of what they produce.
pub struct Stack {
    layers: Sequential,
    output: Activation,
}

impl Stack {
    /// Creates the layers under `path`, starting from `input`, with PyTorch's initialisation.
    pub fn new<S: AsRef<str>>(
        path: &nn::Path,
        input: Activation,
        specs: &[(S, LayerSpec)],
    ) -> Result<Self, ModelError> {
        Self::with_options(path, input, specs, StackOptions::default())
    }

    pub fn with_options<S: AsRef<str>>(
        path: &nn::Path,
        input: Activation,
        specs: &[(S, LayerSpec)],
        options: StackOptions,
    ) -> Result<Self, ModelError> {
        let mut current = input;
        let mut layers = Sequential::new();
        for (name, spec) in specs {
            let name = name.as_ref();
            current = push_layer(&mut layers, &(path / name), name, *spec, current, options)?;
        }
        Ok(Stack {
            layers,
            output: current,
        })
    }

    /// What the stack produces for one sample.
    pub fn output(&self) -> Activation {
        self.output
    }

    /// The width of the output, flattened.
    pub fn output_dim(&self) -> i64 {
        self.output.dims().iter().product()
    }

    /// Runs the layers in training (`train = true`) or eval mode.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.forward_t(xs, train)
    }

    /// The stack as PyTorch prints it.
    pub fn tree(&self) -> ModuleTree {
        self.layers.tree()
    }
}

fn push_layer(
    layers: &mut Sequential,
    path: &nn::Path,
    name: &str,
    spec: LayerSpec,
    input: Activation,
    options: StackOptions,
) -> Result<Activation, ModelError> {
    let mismatch = |needs| ModelError::LayerInputMismatch {
        layer: name.to_owned(),
        needs,
        found: input,
    };
    let conv_spec = |in_channels, out_channels, kernel, stride, padding, bias| {
        ConvSpec::new(in_channels, out_channels, kernel)
            .stride(stride)
            .padding(padding)
            .bias(bias)
            .init(options.init)
            .spectral_norm(options.spectral_norm)
    };
    match (spec, input) {
        (
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                bias,
            },
            Activation::Image {
                channels,
                height,
                width,
            },
        ) => {
            let conv = conv_spec(channels, out_channels, kernel, stride, padding, bias);
            let [height, width] = conv.conv_output([height, width]);
            let next =
                image(out_channels, height, width).ok_or_else(|| mismatch("a larger image"))?;
            layers.push(name, Conv2d::new(path, conv));
            Ok(next)
        }
        (
            LayerSpec::ConvTranspose2d {
                out_channels,
                kernel,
                stride,
                padding,
                bias,
            },
            Activation::Image {
                channels,
                height,
                width,
            },
        ) => {
            let conv = conv_spec(channels, out_channels, kernel, stride, padding, bias);
            let [height, width] = conv.transposed_output([height, width]);
            let next =
                image(out_channels, height, width).ok_or_else(|| mismatch("a larger image"))?;
            layers.push(name, ConvTranspose2d::new(path, conv));
            Ok(next)
        }
        (
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            },
            Activation::Image {
                channels,
                height,
                width,
            },
        ) => {
            let side = |s: i64| (s + 2 * padding - kernel).div_euclid(stride) + 1;
            let next = image(channels, side(height), side(width))
                .ok_or_else(|| mismatch("a larger image"))?;
            layers.push(
                name,
                MaxPool {
                    kernel,
                    stride,
                    padding,
                },
            );
            Ok(next)
        }
        (LayerSpec::Act(nonlinearity), any) => {
            layers.push(name, nonlinearity);
            Ok(any)
        }
        (
            LayerSpec::Flatten,
            Activation::Image {
                channels,
                height,
                width,
            },
        ) => {
            layers.push(name, Flatten);
            Ok(Activation::Vector(channels * height * width))
        }
        (LayerSpec::Linear { out_features }, Activation::Vector(in_features)) => {
            let linear = if options.spectral_norm {
                Linear::spectral(path, in_features, out_features, options.init)
            } else {
                Linear::new(path, in_features, out_features, options.init)
            };
            layers.push(name, linear);
            Ok(Activation::Vector(out_features))
        }
        (LayerSpec::Linear { .. }, _) => Err(mismatch("a flat vector (add a Flatten layer)")),
        (LayerSpec::BatchNorm { eps }, Activation::Image { channels, .. }) => {
            layers.push(name, BatchNorm::new_2d(path, channels, eps, options.init));
            Ok(input)
        }
        (LayerSpec::BatchNorm { eps }, Activation::Vector(features)) => {
            layers.push(name, BatchNorm::new_1d(path, features, eps, options.init));
            Ok(input)
        }
        (LayerSpec::GroupNorm { groups, eps }, Activation::Image { channels, .. }) => {
            if channels % groups != 0 {
                return Err(ModelError::Unsupported {
                    what: "group count",
                    found: groups,
                    expected: "a divisor of the channel count",
                });
            }
            layers.push(name, GroupNorm::new(path, groups, channels, eps));
            Ok(input)
        }
        (LayerSpec::LayerNorm { eps }, any) => {
            layers.push(name, LayerNorm::new(path, &any.dims(), eps));
            Ok(any)
        }
        (LayerSpec::Dropout2d { p }, Activation::Image { .. }) => {
            layers.push(name, Dropout { p, channels: true });
            Ok(input)
        }
        (LayerSpec::Dropout { p }, any) => {
            layers.push(name, Dropout { p, channels: false });
            Ok(any)
        }
        (_, Activation::Vector(_)) => Err(mismatch("an image")),
    }
}

fn image(channels: i64, height: i64, width: i64) -> Option<Activation> {
    (height > 0 && width > 0).then_some(Activation::Image {
        channels,
        height,
        width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::blocks::norm::DEFAULT_MOMENTUM;

    #[test]
    fn infers_sizes_and_names_parameters_like_pytorch() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [
            ("conv1", LayerSpec::conv(4, 3, 1)),
            (
                "pool1",
                LayerSpec::MaxPool2d {
                    kernel: 2,
                    stride: 2,
                    padding: 0,
                },
            ),
            ("flatten", LayerSpec::Flatten),
            ("fc1", LayerSpec::Linear { out_features: 5 }),
        ];
        let input = Activation::Image {
            channels: 3,
            height: 8,
            width: 8,
        };
        let stack = Stack::new(&(vs.root() / "block"), input, &specs).unwrap();
        assert_eq!(stack.output_dim(), 5);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "block.conv1.bias",
                "block.conv1.weight",
                "block.fc1.bias",
                "block.fc1.weight"
            ]
        );
        assert_eq!(vs.variables()["block.fc1.weight"].size(), [5, 4 * 4 * 4]);
        let out = stack.forward_t(
            &Tensor::zeros([2, 3, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
            false,
        );
        assert_eq!(out.size(), [2, 5]);
    }

    #[test]
    fn rejects_an_image_that_shrinks_to_nothing() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [("conv1", LayerSpec::conv(4, 5, 0))];
        let input = Activation::Image {
            channels: 1,
            height: 4,
            width: 4,
        };
        let err = Stack::new(&vs.root(), input, &specs).err().unwrap();
        assert!(err.to_string().contains("layer `conv1`"), "{err}");
    }

    #[test]
    fn batch_norm_tracks_statistics_in_training_and_uses_them_in_eval() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [
            ("bn1", LayerSpec::BATCH_NORM),
            ("drop1", LayerSpec::Dropout { p: 0.5 }),
        ];
        let stack = Stack::new(&(vs.root() / "head"), Activation::Vector(3), &specs).unwrap();
        let x = Tensor::randn([8, 3], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 + 5.0;
        let vars = vs.variables();
        assert_eq!(
            vs.trainable_variables().len(),
            2,
            "only weight and bias are trained"
        );
        let _train = stack.forward_t(&x, true);
        assert_eq!(vars["head.bn1.num_batches_tracked"].int64_value(&[]), 1);
        let expected_mean = x.mean_dim(0, false, tch::Kind::Float) * DEFAULT_MOMENTUM;
        assert!(vars["head.bn1.running_mean"].allclose(&expected_mean, 1e-5, 1e-6, false));
        // Eval: (x - running_mean) / sqrt(running_var + eps), no dropout, counter untouched.
        let eval = stack.forward_t(&x, false);
        let manual =
            (&x - &vars["head.bn1.running_mean"]) / (&vars["head.bn1.running_var"] + 1e-5).sqrt();
        assert!(eval.allclose(&manual, 1e-5, 1e-5, false));
        assert_eq!(vars["head.bn1.num_batches_tracked"].int64_value(&[]), 1);
        let tree = stack.tree().to_string();
        assert!(tree.contains("(bn1): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"), "{tree}");
        assert!(
            tree.contains("(drop1): Dropout(p=0.5, inplace=False)"),
            "{tree}"
        );
    }

    #[test]
    fn a_dcgan_discriminator_stack_prints_like_pytorch() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let specs = [
            (
                "0",
                LayerSpec::Conv2d {
                    out_channels: 8,
                    kernel: 4,
                    stride: 2,
                    padding: 1,
                    bias: false,
                },
            ),
            ("1", LayerSpec::Act(Nonlinearity::LeakyRelu(0.2))),
            (
                "2",
                LayerSpec::Conv2d {
                    out_channels: 1,
                    kernel: 4,
                    stride: 1,
                    padding: 0,
                    bias: false,
                },
            ),
            ("3", LayerSpec::Act(Nonlinearity::Sigmoid)),
        ];
        let options = StackOptions {
            init: Init::Dcgan,
            spectral_norm: false,
        };
        let stack = Stack::with_options(
            &(vs.root() / "main"),
            Activation::Image {
                channels: 3,
                height: 8,
                width: 8,
            },
            &specs,
            options,
        )
        .unwrap();
        let expected = "Sequential(\n  (0): Conv2d(3, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)\n  (1): LeakyReLU(negative_slope=0.2)\n  (2): Conv2d(8, 1, kernel_size=(4, 4), stride=(1, 1), bias=False)\n  (3): Sigmoid()\n)";
        assert_eq!(stack.tree().to_string(), expected);
        assert_eq!(stack.output().dims(), [1, 1, 1]);
        let std = vs.variables()["main.0.weight"].std(true).double_value(&[]);
        assert!(
            (std - 0.02).abs() < 0.005,
            "DCGAN init draws N(0, 0.02): std {std}"
        );
    }
}
