//! `Conv2d` and `ConvTranspose2d` with any stride and padding, optional bias, and an optional
//! spectral normalisation of the weight.

use tch::{nn, Tensor};

use super::init::Init;
use super::repr::{pair, py_bool};
use super::spectral_norm::{SpectralNorm, Weight};
use super::Module;
use crate::models::summary::ModuleTree;

/// The hyper-parameters of a square convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvSpec {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub bias: bool,
    pub init: Init,
    /// Normalise the weight by its largest singular value (Miyato et al. 2018).
    pub spectral_norm: bool,
}

impl ConvSpec {
    /// A stride-1, unpadded convolution with bias and PyTorch's initialisation.
    pub fn new(in_channels: i64, out_channels: i64, kernel: i64) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            bias: true,
            init: Init::Pytorch,
            spectral_norm: false,
        }
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvSpec { stride, ..self }
    }

    pub fn padding(self, padding: i64) -> Self {
        ConvSpec { padding, ..self }
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

    /// Output side of a convolution over `side` pixels.
    pub fn conv_output(&self, side: i64) -> i64 {
        (side + 2 * self.padding - self.kernel).div_euclid(self.stride) + 1
    }

    /// Output side of a transposed convolution over `side` pixels.
    pub fn transposed_output(&self, side: i64) -> i64 {
        (side - 1) * self.stride - 2 * self.padding + self.kernel
    }

    fn repr(&self, name: &str) -> String {
        let mut text = format!(
            "{name}({}, {}, kernel_size={}, stride={}",
            self.in_channels,
            self.out_channels,
            pair(self.kernel),
            pair(self.stride)
        );
        if self.padding != 0 {
            text.push_str(&format!(", padding={}", pair(self.padding)));
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

/// `torch.nn.Conv2d` with a square kernel.
pub struct Conv2d {
    pub spec: ConvSpec,
    weight: Weight,
    bias: Option<Tensor>,
}

impl Conv2d {
    pub fn new(path: &nn::Path, spec: ConvSpec) -> Self {
        let shape = [
            spec.out_channels,
            spec.in_channels,
            spec.kernel,
            spec.kernel,
        ];
        let (weight, bias) =
            spec.variables(path, shape, spec.in_channels * spec.kernel * spec.kernel, 0);
        Conv2d { spec, weight, bias }
    }
}

impl Module for Conv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = &self.spec;
        xs.conv2d(
            &self.weight.get(train),
            self.bias.as_ref(),
            [s.stride; 2],
            [s.padding; 2],
            [1, 1],
            1,
        )
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(self.spec.repr("Conv2d"))
    }
}

/// `torch.nn.ConvTranspose2d` with a square kernel (weight `[in, out, k, k]`).
pub struct ConvTranspose2d {
    pub spec: ConvSpec,
    weight: Weight,
    bias: Option<Tensor>,
}

impl ConvTranspose2d {
    pub fn new(path: &nn::Path, spec: ConvSpec) -> Self {
        let shape = [
            spec.in_channels,
            spec.out_channels,
            spec.kernel,
            spec.kernel,
        ];
        // PyTorch's fan-in of a transposed conv's weight is its dim 1 (the output channels).
        let (weight, bias) = spec.variables(
            path,
            shape,
            spec.out_channels * spec.kernel * spec.kernel,
            1,
        );
        ConvTranspose2d { spec, weight, bias }
    }
}

impl Module for ConvTranspose2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = &self.spec;
        xs.conv_transpose2d(
            &self.weight.get(train),
            self.bias.as_ref(),
            [s.stride; 2],
            [s.padding; 2],
            [0, 0],
            1,
            [1, 1],
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
        assert_eq!(y.size(), [2, 8, spec.conv_output(16), 8]);
        assert_eq!(
            down.tree().to_string(),
            "Conv2d(3, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)"
        );
        let up_spec = ConvSpec::new(8, 3, 4).stride(2).padding(1);
        let up = ConvTranspose2d::new(&(vs.root() / "up"), up_spec);
        assert_eq!(up.forward_t(&y, false).size(), [2, 3, 16, 16]);
        assert_eq!(up_spec.transposed_output(8), 16);
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["down.weight", "up.bias", "up.weight"]
        );
        assert_eq!(vs.variables()["up.weight"].size(), [8, 3, 4, 4]);
    }
}
