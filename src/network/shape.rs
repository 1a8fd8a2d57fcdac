//! Shape inference: runs a network's children in order on a per-sample input shape (no batch
//! dimension: `[3, 64, 64]` for an image) with arithmetic only, and says which layer does not
//! fit and why, at its line.
//!
//! Student code flattens and reshapes in `forward` (`x.view(N, -1)`), which no printout shows.
//! So between an image and a `Linear` whose `in_features` is `C * H * W`, a flatten is
//! inferred, and between a vector and a convolution whose `in_channels` divides it into a
//! square image, the unflatten to `[C, S, S]`. Each is reported ([`Reshape`]) so the forward
//! pass applies the same, and when the shapes leave no such choice the error says so.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::{ErrorKind, Location, NetworkError};
use super::spec::{join, Layer, Module, Network, Resize, Size};

/// A reshape the network's code does but its printout does not show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reshape {
    /// The layer whose input is reshaped.
    pub path: String,
    pub from: Vec<i64>,
    pub to: Vec<i64>,
}

/// The result of shape inference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shapes {
    /// The output shape, per sample.
    pub output: Vec<i64>,
    pub reshapes: Vec<Reshape>,
}

/// Infers the output shape of `network` for a per-sample `input` shape; `locations` places
/// errors (empty for a network without a printout).
pub fn infer(
    network: &Network,
    input: &[i64],
    locations: &BTreeMap<String, Location>,
) -> Result<Shapes, NetworkError> {
    let mut inference = Inference {
        locations,
        reshapes: Vec::new(),
    };
    let output = inference.module(&network.root, "", input.to_vec())?;
    Ok(Shapes {
        output,
        reshapes: inference.reshapes,
    })
}

struct Inference<'a> {
    locations: &'a BTreeMap<String, Location>,
    reshapes: Vec<Reshape>,
}

/// `[3, 64, 64]`.
fn show(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

impl Inference<'_> {
    fn fail(&self, path: &str, problem: String) -> NetworkError {
        NetworkError::at(
            self.locations.get(path).copied(),
            ErrorKind::Shape {
                path: path.to_owned(),
                problem,
            },
        )
    }

    fn module(
        &mut self,
        module: &Module,
        path: &str,
        input: Vec<i64>,
    ) -> Result<Vec<i64>, NetworkError> {
        match module {
            Module::Layer(layer) => self.layer(layer, path, input),
            Module::Container { children, .. } => {
                children.iter().try_fold(input, |shape, child| {
                    self.module(&child.module, &join(path, &child.name), shape)
                })
            }
        }
    }

    /// `input` as an image of `channels` channels: as is, or a vector unflattened to a square.
    fn image(
        &mut self,
        path: &str,
        input: Vec<i64>,
        channels: i64,
    ) -> Result<[i64; 3], NetworkError> {
        match *input.as_slice() {
            [c, h, w] if c == channels => Ok([c, h, w]),
            [c, _, _] => {
                Err(self.fail(path, format!("expects {channels} input channels, gets {c}")))
            }
            [features] => {
                let side = (features % channels == 0)
                    .then(|| square_side(features / channels))
                    .flatten();
                let Some(side) = side else {
                    return Err(self.fail(
                        path,
                        format!(
                            "expects a [C, H, W] input with {channels} channels, gets {features} features, which do not view as {channels} channels of a square image (add an Unflatten)"
                        ),
                    ));
                };
                let to = vec![channels, side, side];
                self.reshapes.push(Reshape {
                    path: path.to_owned(),
                    from: input,
                    to,
                });
                Ok([channels, side, side])
            }
            _ => Err(self.fail(
                path,
                format!("expects a [C, H, W] input, gets {}", show(&input)),
            )),
        }
    }

    fn layer(
        &mut self,
        layer: &Layer,
        path: &str,
        input: Vec<i64>,
    ) -> Result<Vec<i64>, NetworkError> {
        match layer {
            Layer::Conv2d(conv) | Layer::ConvTranspose2d(conv) => {
                let [_, height, width] = self.image(path, input, conv.in_channels)?;
                let [out_height, out_width] = if matches!(layer, Layer::Conv2d(_)) {
                    conv.conv_output([height, width])
                } else {
                    conv.transposed_output([height, width])
                };
                if out_height < 1 || out_width < 1 {
                    return Err(self.fail(
                        path,
                        format!(
                            "gets a {height}x{width} image, too small for its kernel (the output would be {out_height}x{out_width})"
                        ),
                    ));
                }
                Ok(vec![conv.out_channels, out_height, out_width])
            }
            Layer::Linear {
                in_features,
                out_features,
                ..
            } => {
                let Some(&last) = input.last() else {
                    return Err(self.fail(path, "expects features, gets a scalar".to_owned()));
                };
                let flat: i64 = input.iter().product();
                if input.len() > 1 && flat == *in_features {
                    self.reshapes.push(Reshape {
                        path: path.to_owned(),
                        from: input,
                        to: vec![flat],
                    });
                    return Ok(vec![*out_features]);
                }
                if last == *in_features {
                    let mut output = input;
                    output.pop();
                    output.push(*out_features);
                    return Ok(output);
                }
                let problem = if input.len() > 1 {
                    format!(
                        "expects {in_features} input features, gets {} (neither its last dimension, {last}, nor all {flat} of them flattened)",
                        show(&input)
                    )
                } else {
                    format!("expects {in_features} input features, gets {last}")
                };
                Err(self.fail(path, problem))
            }
            Layer::Flatten { start_dim, end_dim } => {
                let start = self.sample_dim(path, *start_dim, input.len())?;
                let end = self.sample_dim(path, *end_dim, input.len())?;
                if start > end {
                    return Err(self.fail(
                        path,
                        format!("flattens from dim {start_dim} to the earlier dim {end_dim}"),
                    ));
                }
                let mut output = input[..start].to_vec();
                output.push(input[start..=end].iter().product());
                output.extend_from_slice(&input[end + 1..]);
                Ok(output)
            }
            Layer::Unflatten { dim, sizes } => {
                let at = self.sample_dim(path, *dim, input.len())?;
                if sizes.iter().product::<i64>() != input[at] {
                    return Err(self.fail(
                        path,
                        format!(
                            "cannot view the {} values of dim {dim} as {}",
                            input[at],
                            show(sizes)
                        ),
                    ));
                }
                let mut output = input[..at].to_vec();
                output.extend_from_slice(sizes);
                output.extend_from_slice(&input[at + 1..]);
                Ok(output)
            }
            Layer::BatchNorm { dims: 1, norm } => match input.as_slice() {
                [c] | [c, _] if *c == norm.features => Ok(input),
                [c] | [c, _] => Err(self.fail(
                    path,
                    format!("expects {} input features, gets {c}", norm.features),
                )),
                _ => Err(self.fail(
                    path,
                    format!("expects a [C] or [C, L] input, gets {}", show(&input)),
                )),
            },
            Layer::BatchNorm { norm, .. } | Layer::InstanceNorm2d(norm) => {
                let [c, h, w] = self.image(path, input, norm.features)?;
                Ok(vec![c, h, w])
            }
            Layer::GroupNorm { channels, .. } => match input.first() {
                Some(c) if c == channels => Ok(input),
                Some(c) => {
                    Err(self.fail(path, format!("expects {channels} input channels, gets {c}")))
                }
                None => Err(self.fail(path, "expects channels, gets a scalar".to_owned())),
            },
            Layer::LayerNorm { shape, .. } => {
                if input.ends_with(shape) {
                    Ok(input)
                } else {
                    Err(self.fail(
                        path,
                        format!("normalises over {}, gets {}", show(shape), show(&input)),
                    ))
                }
            }
            Layer::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => self.pool(
                path,
                input,
                [*kernel, *stride, *padding, *dilation],
                *ceil_mode,
            ),
            Layer::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                ..
            } => self.pool(
                path,
                input,
                [*kernel, *stride, *padding, Size::Square(1)],
                *ceil_mode,
            ),
            Layer::Upsample { resize, .. } => match *input.as_slice() {
                [c, h, w] => {
                    let [out_height, out_width] = match resize {
                        Resize::Size(size) => size.pair(),
                        Resize::ScaleFactor(factor) => [
                            (h as f64 * factor).floor() as i64,
                            (w as f64 * factor).floor() as i64,
                        ],
                    };
                    Ok(vec![c, out_height, out_width])
                }
                _ => Err(self.fail(
                    path,
                    format!("expects a [C, H, W] input, gets {}", show(&input)),
                )),
            },
            Layer::Embedding { dim, .. } => {
                let mut output = input;
                output.push(*dim);
                Ok(output)
            }
            Layer::Dropout { .. }
            | Layer::Activation { .. }
            | Layer::LogSoftmax { .. }
            | Layer::Identity => Ok(input),
        }
    }

    /// A dim of PyTorch's batched tensor (`dim`, negative from the end) as an index into the
    /// per-sample shape of `rank` dims; the batch dim itself is refused.
    fn sample_dim(&self, path: &str, dim: i64, rank: usize) -> Result<usize, NetworkError> {
        let batched_rank = rank as i64 + 1;
        let index = if dim < 0 { dim + batched_rank } else { dim };
        if index < 1 || index >= batched_rank {
            return Err(self.fail(
                path,
                format!("reshapes dim {dim}, which is the batch dimension or beyond the input's {batched_rank} dims"),
            ));
        }
        Ok(index as usize - 1)
    }

    fn pool(
        &self,
        path: &str,
        input: Vec<i64>,
        sizes: [Size; 4],
        ceil_mode: bool,
    ) -> Result<Vec<i64>, NetworkError> {
        let [kernel, stride, padding, dilation] = sizes.map(Size::pair);
        let [c, h, w] = *input.as_slice() else {
            return Err(self.fail(
                path,
                format!("expects a [C, H, W] input, gets {}", show(&input)),
            ));
        };
        if (0..2).any(|axis| 2 * padding[axis] > kernel[axis]) {
            return Err(self.fail(path, "has a padding over half its kernel size".to_owned()));
        }
        let side = |axis: usize, input: i64| {
            let reach = dilation[axis] * (kernel[axis] - 1) + 1;
            let span = input + 2 * padding[axis] - reach;
            let steps = if ceil_mode {
                span.div_euclid(stride[axis]) + i64::from(span.rem_euclid(stride[axis]) != 0)
            } else {
                span.div_euclid(stride[axis])
            };
            let mut output = steps + 1;
            // PyTorch: the last window must start inside the input or its left padding.
            if ceil_mode && (output - 1) * stride[axis] >= input + padding[axis] {
                output -= 1;
            }
            output
        };
        let (out_height, out_width) = (side(0, h), side(1, w));
        if out_height < 1 || out_width < 1 {
            return Err(self.fail(
                path,
                format!("gets a {h}x{w} image, too small for its kernel (the output would be {out_height}x{out_width})"),
            ));
        }
        Ok(vec![c, out_height, out_width])
    }
}

/// `s` with `s * s == area`.
fn square_side(area: i64) -> Option<i64> {
    let side = (area as f64).sqrt().round() as i64;
    (side > 0 && side * side == area).then_some(side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::printout::parse;

    fn shapes(text: &str, input: &[i64]) -> Result<Shapes, NetworkError> {
        let described = parse(text).unwrap();
        infer(&described.network, input, &described.locations)
    }

    #[test]
    fn infers_the_flatten_before_a_linear_and_the_unflatten_before_a_conv() {
        let classifier = "Net(
  (conv): Conv2d(3, 8, kernel_size=(5, 5), stride=(1, 1))
  (pool): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (fc): Linear(in_features=1152, out_features=10, bias=True)
)";
        let result = shapes(classifier, &[3, 28, 28]).unwrap();
        assert_eq!(result.output, [10]);
        assert_eq!(
            result.reshapes,
            [Reshape {
                path: "fc".into(),
                from: vec![8, 12, 12],
                to: vec![1152]
            }]
        );
        let generator = "Net(
  (fc): Linear(in_features=110, out_features=25088, bias=False)
  (up): ConvTranspose2d(512, 256, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)
)";
        let result = shapes(generator, &[110]).unwrap();
        assert_eq!(result.output, [256, 14, 14]);
        assert_eq!(result.reshapes[0].to, [512, 7, 7]);
    }

    #[test]
    fn a_mismatch_names_the_layer_and_its_line() {
        let text = "G(
  (l2_5): Sequential(
    (0): Sequential(
      (0): ConvTranspose2d(512, 256, kernel_size=(4, 4), stride=(1, 1), bias=False)
    )
  )
)";
        let error = shapes(text, &[128, 4, 4]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "layer `l2_5.0.0` expects 512 input channels, gets 128"
        );
        assert_eq!(
            error.location,
            Some(Location {
                line: 4,
                column: 12
            })
        );
        let error = shapes(
            "N(\n  (fc): Linear(in_features=100, out_features=2, bias=True)\n)",
            &[48, 4, 4],
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("768 of them flattened"),
            "{error}"
        );
        let error = shapes(
            "N(\n  (c): Conv2d(10, 2, kernel_size=(3, 3), stride=(1, 1))\n)",
            &[120],
        )
        .unwrap_err();
        assert!(error.to_string().contains("add an Unflatten"), "{error}");
    }

    #[test]
    fn pools_follow_pytorchs_ceil_mode() {
        let text = "N(\n  (p): MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=True)\n)";
        assert_eq!(shapes(text, &[1, 6, 6]).unwrap().output, [1, 3, 3]);
        let floor = text.replace("ceil_mode=True", "ceil_mode=False");
        assert_eq!(shapes(&floor, &[1, 6, 6]).unwrap().output, [1, 2, 2]);
        let zero_stride = text.replace("stride=2", "stride=0");
        assert!(parse(&zero_stride).is_err());
    }
}
