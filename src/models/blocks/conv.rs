//! `Conv2d` and `ConvTranspose2d` with any kernel (square or not), stride, padding,
//! `output_padding`, dilation and groups, optional bias, and an optional spectral normalisation
//! of the weight.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::init::Init;
use super::repr::{py_bool, tuple};
use super::spectral_norm::{SpectralNorm, Weight};
use super::Module;
use crate::models::summary::ModuleTree;

/// The hyper-parameters of a convolution; every size is `[height, width]`, as PyTorch's
/// `_pair` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConvSpec {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    /// Extra rows and columns on one side of a transposed convolution's output (PyTorch's
    /// `output_padding`); always zero for `Conv2d`.
    pub output_padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
    pub bias: bool,
    pub init: Init,
    /// Normalise the weight by its largest singular value (Miyato et al. 2018).
    pub spectral_norm: bool,
}

impl ConvSpec {
    /// A stride-1, unpadded, square convolution with bias and PyTorch's initialisation.
    pub fn new(in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel: [kernel; 2],
            stride: [1; 2],
            padding: [0; 2],
            output_padding: [0; 2],
            dilation: [1; 2],
            groups: 1,
            bias: true,
            init: Init::Pytorch,
            spectral_norm: false,
        }
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvSpec {
            stride: [stride; 2],
            ..self
        }
    }

    pub fn padding(self, padding: i64) -> Self {
        ConvSpec {
            padding: [padding; 2],
            ..self
        }
    }

    pub fn bias(self, bias: bool) -> Self {
        ConvSpec { bias, ..self }
    }

    pub fn init(self, init: Init) -> Self {
        ConvSpec { init, ..self }
    }

    pub fn spectral_norm(self, spectral_norm: bool) -> Self {
        ConvSpec {
            spectral_norm,
            ..self
        }
    }

    /// Output `[height, width]` of a convolution over `[height, width]` pixels (PyTorch's
    /// formula; zero or less when the input is too small).
    pub fn conv_output(&self, input: [i64; 2]) -> [i64; 2] {
        std::array::from_fn(|axis| {
            let reach = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            (input[axis] + 2 * self.padding[axis] - reach).div_euclid(self.stride[axis]) + 1
        })
    }

    /// Output `[height, width]` of a transposed convolution over `[height, width]` pixels.
    pub fn transposed_output(&self, input: [i64; 2]) -> [i64; 2] {
        std::array::from_fn(|axis| {
            (input[axis] - 1) * self.stride[axis] - 2 * self.padding[axis]
                + self.dilation[axis] * (self.kernel[axis] - 1)
                + self.output_padding[axis]
                + 1
        })
    }

    /// The weight's shape: `[out, in / groups, kh, kw]`, or `[in, out / groups, kh, kw]` for a
    /// transposed convolution.
    pub fn weight_shape(&self, transposed: bool) -> [i64; 4] {
        let [kh, kw] = self.kernel;
        if transposed {
            [self.in_channels, self.out_channels / self.groups, kh, kw]
        } else {
            [self.out_channels, self.in_channels / self.groups, kh, kw]
        }
    }

    /// PyTorch's `extra_repr` of `_ConvNd`, behind the class name: the sizes that differ from
    /// their defaults, in its order.
    pub fn repr(&self, name: &str) -> String {
        let mut text = format!(
            "{name}({}, {}, kernel_size={}, stride={}",
            self.in_channels,
            self.out_channels,
            tuple(&self.kernel),
            tuple(&self.stride)
        );
        if self.padding != [0; 2] {
            text.push_str(&format!(", padding={}", tuple(&self.padding)));
        }
        if self.dilation != [1; 2] {
            text.push_str(&format!(", dilation={}", tuple(&self.dilation)));
        }
        if self.output_padding != [0; 2] {
            text.push_str(&format!(", output_padding={}", tuple(&self.output_padding)));
        }
        if self.groups != 1 {
            text.push_str(&format!(", groups={}", self.groups));
        }
        if !self.bias {
            text.push_str(&format!(", bias={}", py_bool(false)));
        }
        text.push(')');
        text
    }

    /// The weight (plain or spectrally normalised) of shape `shape`, whose PyTorch fan-in is
    /// `fan_in` and whose outputs run along `output_dim`, and the bias.
    fn variables(
        &self,
        path: &nn::Path,
        shape: [i64; 4],
        fan_in: i64,
        output_dim: usize,
    ) -> (Weight, Option<Tensor>) {
        let init = self.init.conv_weight(fan_in);
        let weight = if self.spectral_norm {
            Weight::Spectral(SpectralNorm::new(path, &shape, init, output_dim))
        } else {
            Weight::Plain(path.var("weight", &shape, init))
        };
        let bias = self
            .bias
            .then(|| path.var("bias", &[self.out_channels], self.init.bias(fan_in)));
        (weight, bias)
    }
}

/// `torch.nn.Conv2d`.
pub struct Conv2d {
    pub spec: ConvSpec,
    weight: Weight,
    bias: Option<Tensor>,
}

impl Conv2d {
    pub fn new(path: &nn::Path, spec: ConvSpec) -> Self {
        let shape = spec.weight_shape(false);
        // PyTorch's fan-in of a weight is the product of its dims after the first.
        let (weight, bias) = spec.variables(path, shape, shape[1] * shape[2] * shape[3], 0);
        Conv2d { spec, weight, bias }
    }
}

impl Module for Conv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = &self.spec;
        xs.conv2d(
            &self.weight.get(train),
            self.bias.as_ref(),
            s.stride,
            s.padding,
            s.dilation,
            s.groups,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(self.spec.repr("Conv2d"))
    }
}

/// `torch.nn.ConvTranspose2d` (weight `[in, out / groups, kh, kw]`).
pub struct ConvTranspose2d {
    pub spec: ConvSpec,
    weight: Weight,
    bias: Option<Tensor>,
}

impl ConvTranspose2d {
    pub fn new(path: &nn::Path, spec: ConvSpec) -> Self {
        let shape = spec.weight_shape(true);
        // PyTorch's fan-in of a transposed conv's weight is still the product of its dims after
        // the first, whose dim 1 holds the output channels.
        let (weight, bias) = spec.variables(path, shape, shape[1] * shape[2] * shape[3], 1);
        ConvTranspose2d { spec, weight, bias }
    }
}

impl Module for ConvTranspose2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = &self.spec;
        xs.conv_transpose2d(
            &self.weight.get(train),
            self.bias.as_ref(),
            s.stride,
            s.padding,
            s.output_padding,
            s.groups,
            s.dilation,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(self.spec.repr("ConvTranspose2d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn strided_convs_change_size_and_print_like_pytorch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = ConvSpec::new(3, 8, 4).stride(2).padding(1).bias(false);
        let down = Conv2d::new(&(vs.root() / "down"), spec);
        let x = Tensor::zeros([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let y = down.forward_t(&x, false);
        let [height, width] = spec.conv_output([16, 16]);
        assert_eq!(y.size(), [2, 8, height, width]);
        assert_eq!(
            down.tree().to_string(),
            "Conv2d(3, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)"
        );
        let up_spec = ConvSpec::new(8, 3, 4).stride(2).padding(1);
        let up = ConvTranspose2d::new(&(vs.root() / "up"), up_spec);
        assert_eq!(up.forward_t(&y, false).size(), [2, 3, 16, 16]);
        assert_eq!(up_spec.transposed_output([8, 8]), [16, 16]);
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["down.weight", "up.bias", "up.weight"]
        );
        assert_eq!(vs.variables()["up.weight"].size(), [8, 3, 4, 4]);
    }
}
