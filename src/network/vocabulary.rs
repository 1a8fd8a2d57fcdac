//! The layers a network may use: each PyTorch class with its constructor's signature, and how
//! a bound call becomes a [`Layer`]. Defaults are PyTorch's, so `Conv2d(3, 64, 4)` and
//! `Conv2d(3, 64, kernel_size=(4, 4), stride=(1, 1))` are the same layer.

use super::call::{bind, Bound, Call, Value};
use super::error::{ErrorKind, NetworkError};
use super::spec::{Layer, NormOptions, Resize, Size};
use crate::models::blocks::norm::{DEFAULT_EPS, DEFAULT_MOMENTUM};
use crate::models::blocks::{ConvSpec, Init, Nonlinearity};
use crate::recipe::error::suggest;

/// Every layer class, as PyTorch spells it.
pub const LAYER_CLASSES: &[&str] = &[
    "Conv2d",
    "ConvTranspose2d",
    "Linear",
    "Flatten",
    "Unflatten",
    "BatchNorm1d",
    "BatchNorm2d",
    "InstanceNorm2d",
    "LayerNorm",
    "GroupNorm",
    "Dropout",
    "Dropout2d",
    "MaxPool2d",
    "AvgPool2d",
    "Upsample",
    "Embedding",
    "ReLU",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "Tanh",
    "Sigmoid",
    "LogSoftmax",
    "Identity",
];

/// Classes printed as containers of children run in order.
pub const CONTAINER_CLASSES: &[&str] = &["Sequential", "ModuleList"];

/// The class `name` refers to, ignoring case (the TOML form writes `conv2d`, `relu`).
pub fn class_named(name: &str) -> Option<&'static str> {
    LAYER_CLASSES
        .iter()
        .copied()
        .find(|class| class.eq_ignore_ascii_case(name))
}

/// The error for a class hwrun does not know, with the closest known one.
pub fn unknown_layer(call: &Call) -> NetworkError {
    let lowered: Vec<String> = LAYER_CLASSES.iter().map(|c| c.to_lowercase()).collect();
    let suggestion = suggest(
        &call.class.to_lowercase(),
        lowered.iter().map(String::as_str),
    )
    .and_then(|lower| class_named(&lower))
    .map(str::to_owned);
    NetworkError::at(
        call.location,
        ErrorKind::UnknownLayer {
            name: call.class.clone(),
            suggestion,
        },
    )
}

const CONV_PARAMS: &[&str] = &[
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "padding_mode",
    "spectral_norm",
];
const CONV_TRANSPOSE_PARAMS: &[&str] = &[
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "groups",
    "bias",
    "dilation",
    "padding_mode",
    "spectral_norm",
];
const NORM_PARAMS: &[&str] = &[
    "num_features",
    "eps",
    "momentum",
    "affine",
    "track_running_stats",
    "bias",
];

/// The layer `call` describes; `spectral_norm` is hwrun's own keyword (the printout of
/// hook-style spectral norm does not show it).
pub fn layer(call: &Call) -> Result<Layer, NetworkError> {
    let Some(class) = class_named(&call.class) else {
        return Err(unknown_layer(call));
    };
    let activation =
        |function: Nonlinearity, inplace: bool| Layer::Activation { function, inplace };
    match class {
        "Conv2d" => conv(&bind(call, class, CONV_PARAMS)?, false).map(Layer::Conv2d),
        "ConvTranspose2d" => {
            conv(&bind(call, class, CONV_TRANSPOSE_PARAMS)?, true).map(Layer::ConvTranspose2d)
        }
        "Linear" => {
            let b = bind(
                call,
                class,
                &["in_features", "out_features", "bias", "spectral_norm"],
            )?;
            Ok(Layer::Linear {
                in_features: b.required("in_features", Bound::positive)?,
                out_features: b.required("out_features", Bound::positive)?,
                bias: b.flag("bias", true)?,
                spectral_norm: b.flag("spectral_norm", false)?,
            })
        }
        "Flatten" => {
            let b = bind(call, class, &["start_dim", "end_dim"])?;
            Ok(Layer::Flatten {
                start_dim: b.int("start_dim")?.unwrap_or(1),
                end_dim: b.int("end_dim")?.unwrap_or(-1),
            })
        }
        "Unflatten" => {
            let b = bind(call, class, &["dim", "unflattened_size"])?;
            Ok(Layer::Unflatten {
                dim: b.required("dim", Bound::int)?,
                sizes: b.required("unflattened_size", Bound::ints)?.to_vec(),
            })
        }
        "BatchNorm1d" | "BatchNorm2d" => {
            let b = bind(call, class, NORM_PARAMS)?;
            Ok(Layer::BatchNorm {
                dims: if class == "BatchNorm1d" { 1 } else { 2 },
                norm: norm(&b, true, true)?,
            })
        }
        "InstanceNorm2d" => {
            norm(&bind(call, class, NORM_PARAMS)?, false, false).map(Layer::InstanceNorm2d)
        }
        "LayerNorm" => {
            let b = bind(
                call,
                class,
                &["normalized_shape", "eps", "elementwise_affine", "bias"],
            )?;
            Ok(Layer::LayerNorm {
                shape: b.required("normalized_shape", Bound::ints)?.to_vec(),
                eps: b.float("eps")?.unwrap_or(DEFAULT_EPS),
                elementwise_affine: b.flag("elementwise_affine", true)?,
                bias: b.flag("bias", true)?,
            })
        }
        "GroupNorm" => {
            let b = bind(
                call,
                class,
                &["num_groups", "num_channels", "eps", "affine", "bias"],
            )?;
            let groups = b.required("num_groups", Bound::positive)?;
            let channels = b.required("num_channels", Bound::positive)?;
            if channels % groups != 0 {
                return Err(b.error(
                    "num_groups",
                    ErrorKind::Unsupported {
                        layer: class,
                        what: format!("{channels} channels in {groups} groups (not a multiple)"),
                    },
                ));
            }
            Ok(Layer::GroupNorm {
                groups,
                channels,
                eps: b.float("eps")?.unwrap_or(DEFAULT_EPS),
                affine: b.flag("affine", true)?,
                bias: b.flag("bias", true)?,
            })
        }
        "Dropout" | "Dropout2d" => {
            let b = bind(call, class, &["p", "inplace"])?;
            let p = b.float("p")?.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&p) {
                return Err(b.error(
                    "p",
                    ErrorKind::BadValue {
                        layer: class,
                        argument: "p",
                        expected: "a probability in [0, 1]",
                        found: p.to_string(),
                    },
                ));
            }
            Ok(Layer::Dropout {
                p,
                channels: class == "Dropout2d",
                inplace: b.flag("inplace", false)?,
            })
        }
        "MaxPool2d" => {
            let b = bind(
                call,
                class,
                &[
                    "kernel_size",
                    "stride",
                    "padding",
                    "dilation",
                    "return_indices",
                    "ceil_mode",
                ],
            )?;
            b.only_default("return_indices", &Value::Bool(false))?;
            let kernel = b.required("kernel_size", Bound::size2)?;
            let layer = Layer::MaxPool2d {
                kernel,
                // PyTorch's default stride is the kernel size.
                stride: b.size2("stride")?.unwrap_or(kernel),
                padding: b.size2("padding")?.unwrap_or(Size::Square(0)),
                dilation: b.size2("dilation")?.unwrap_or(Size::Square(1)),
                ceil_mode: b.flag("ceil_mode", false)?,
            };
            pool_sizes_valid(&b, &layer)?;
            Ok(layer)
        }
        "AvgPool2d" => {
            let b = bind(
                call,
                class,
                &[
                    "kernel_size",
                    "stride",
                    "padding",
                    "ceil_mode",
                    "count_include_pad",
                    "divisor_override",
                ],
            )?;
            b.only_default("divisor_override", &Value::None)?;
            let kernel = b.required("kernel_size", Bound::size2)?;
            let layer = Layer::AvgPool2d {
                kernel,
                stride: b.size2("stride")?.unwrap_or(kernel),
                padding: b.size2("padding")?.unwrap_or(Size::Square(0)),
                ceil_mode: b.flag("ceil_mode", false)?,
                count_include_pad: b.flag("count_include_pad", true)?,
            };
            pool_sizes_valid(&b, &layer)?;
            Ok(layer)
        }
        "Upsample" => {
            let b = bind(
                call,
                class,
                &[
                    "size",
                    "scale_factor",
                    "mode",
                    "align_corners",
                    "recompute_scale_factor",
                ],
            )?;
            let resize = match (b.size2("size")?, b.float("scale_factor")?) {
                (Some(size), None) if size.pair().iter().all(|&side| side > 0) => {
                    Resize::Size(size)
                }
                (None, Some(factor)) if factor > 0.0 => Resize::ScaleFactor(factor),
                _ => {
                    return Err(b.error(
                        "size",
                        ErrorKind::Unsupported {
                            layer: class,
                            what: "other than exactly one of `size` and a positive `scale_factor`"
                                .to_owned(),
                        },
                    ))
                }
            };
            Ok(Layer::Upsample {
                resize,
                mode: b.text("mode")?.unwrap_or_else(|| "nearest".to_owned()),
            })
        }
        "Embedding" => {
            let b = bind(
                call,
                class,
                &[
                    "num_embeddings",
                    "embedding_dim",
                    "padding_idx",
                    "max_norm",
                    "norm_type",
                    "scale_grad_by_freq",
                    "sparse",
                ],
            )?;
            b.only_default("max_norm", &Value::None)?;
            b.only_default("scale_grad_by_freq", &Value::Bool(false))?;
            b.only_default("sparse", &Value::Bool(false))?;
            Ok(Layer::Embedding {
                count: b.required("num_embeddings", Bound::positive)?,
                dim: b.required("embedding_dim", Bound::positive)?,
                padding_idx: b.int("padding_idx")?,
            })
        }
        "ReLU" | "SiLU" => {
            let b = bind(call, class, &["inplace"])?;
            let function = if class == "ReLU" {
                Nonlinearity::Relu
            } else {
                Nonlinearity::Silu
            };
            Ok(activation(function, b.flag("inplace", false)?))
        }
        "LeakyReLU" => {
            let b = bind(call, class, &["negative_slope", "inplace"])?;
            Ok(activation(
                Nonlinearity::LeakyRelu(b.float("negative_slope")?.unwrap_or(0.01)),
                b.flag("inplace", false)?,
            ))
        }
        "GELU" => {
            let b = bind(call, class, &["approximate"])?;
            // 2.x prints `approximate='none'`, 1.12 `approximate=none`: both read as text.
            b.only_default("approximate", &Value::Str("none".to_owned()))?;
            Ok(activation(Nonlinearity::Gelu, false))
        }
        "Tanh" | "Sigmoid" | "Identity" => {
            bind(call, class, &[])?;
            Ok(match class {
                "Tanh" => activation(Nonlinearity::Tanh, false),
                "Sigmoid" => activation(Nonlinearity::Sigmoid, false),
                _ => Layer::Identity,
            })
        }
        "LogSoftmax" => {
            let b = bind(call, class, &["dim"])?;
            Ok(Layer::LogSoftmax { dim: b.int("dim")? })
        }
        _ => Err(unknown_layer(call)),
    }
}

fn conv(b: &Bound, transposed: bool) -> Result<ConvSpec, NetworkError> {
    let pair = |name: &'static str, default: i64| -> Result<[i64; 2], NetworkError> {
        Ok(b.size2(name)?.map_or([default; 2], Size::pair))
    };
    match b.text("padding_mode")?.as_deref() {
        None | Some("zeros") => {}
        Some(mode) => {
            return Err(b.error(
                "padding_mode",
                ErrorKind::Unsupported {
                    layer: b.layer,
                    what: format!("padding_mode={mode}"),
                },
            ))
        }
    }
    // `padding='valid'` is no padding; `'same'` depends on the input and is not modelled.
    let padding = match b.given("padding") {
        Some(Value::Str(mode)) if mode == "valid" => [0; 2],
        Some(Value::Str(mode)) => {
            return Err(b.error(
                "padding",
                ErrorKind::Unsupported {
                    layer: b.layer,
                    what: format!("padding='{mode}'"),
                },
            ))
        }
        _ => pair("padding", 0)?,
    };
    let spec = ConvSpec {
        in_channels: b.required("in_channels", Bound::positive)?,
        out_channels: b.required("out_channels", Bound::positive)?,
        kernel: b.required("kernel_size", Bound::size2)?.pair(),
        stride: pair("stride", 1)?,
        padding,
        output_padding: if transposed {
            pair("output_padding", 0)?
        } else {
            [0; 2]
        },
        dilation: pair("dilation", 1)?,
        groups: b.positive("groups")?.unwrap_or(1),
        bias: b.flag("bias", true)?,
        init: Init::Pytorch,
        spectral_norm: b.flag("spectral_norm", false)?,
    };
    if spec.in_channels % spec.groups != 0 || spec.out_channels % spec.groups != 0 {
        return Err(b.error(
            "groups",
            ErrorKind::Unsupported {
                layer: b.layer,
                what: format!(
                    "{} groups of {} -> {} channels (not a divisor of both)",
                    spec.groups, spec.in_channels, spec.out_channels
                ),
            },
        ));
    }
    let positive = [spec.kernel, spec.stride, spec.dilation];
    if positive.iter().flatten().any(|&v| v < 1) || spec.padding.iter().any(|&v| v < 0) {
        return Err(b.error(
            "kernel_size",
            ErrorKind::Unsupported {
                layer: b.layer,
                what: "a kernel, stride or dilation below 1, or a negative padding".to_owned(),
            },
        ));
    }
    // PyTorch: "output padding must be smaller than either stride or dilation".
    let too_much = (0..2).any(|axis| {
        spec.output_padding[axis] < 0
            || (spec.output_padding[axis] >= spec.stride[axis]
                && spec.output_padding[axis] >= spec.dilation[axis])
    });
    if too_much {
        return Err(b.error(
            "output_padding",
            ErrorKind::Unsupported {
                layer: b.layer,
                what: "an output_padding not smaller than the stride or the dilation".to_owned(),
            },
        ));
    }
    Ok(spec)
}

/// Refuses what PyTorch refuses: a pooling kernel, stride or dilation below 1, a negative
/// padding (shape inference divides by the stride).
fn pool_sizes_valid(b: &Bound, layer: &Layer) -> Result<(), NetworkError> {
    let (positive, padding) = match layer {
        Layer::MaxPool2d {
            kernel,
            stride,
            padding,
            dilation,
            ..
        } => (vec![*kernel, *stride, *dilation], *padding),
        Layer::AvgPool2d {
            kernel,
            stride,
            padding,
            ..
        } => (vec![*kernel, *stride], *padding),
        _ => return Ok(()),
    };
    let below_one = positive.iter().flat_map(|size| size.pair()).any(|v| v < 1);
    if below_one || padding.pair().iter().any(|&v| v < 0) {
        return Err(b.error(
            "kernel_size",
            ErrorKind::Unsupported {
                layer: b.layer,
                what: "a kernel, stride or dilation below 1, or a negative padding".to_owned(),
            },
        ));
    }
    Ok(())
}

fn norm(b: &Bound, affine: bool, track: bool) -> Result<NormOptions, NetworkError> {
    // `momentum=None` (a cumulative average) is a value here, not an absent argument.
    let momentum = if b.written_as_none("momentum") {
        None
    } else {
        Some(b.float("momentum")?.unwrap_or(DEFAULT_MOMENTUM))
    };
    Ok(NormOptions {
        features: b.required("num_features", Bound::positive)?,
        eps: b.float("eps")?.unwrap_or(DEFAULT_EPS),
        momentum,
        affine: b.flag("affine", affine)?,
        bias: b.flag("bias", true)?,
        track_running_stats: b.flag("track_running_stats", track)?,
    })
}
