//! The conditional noise-prediction UNet of TeaPearce's Conditional_Diffusion_MNIST
//! (`ContextUnet`), the course reports' DDPM network, with its `state_dict` names.
//!
//! `init_conv` (a residual conv block, C -> n_feat), `down1` / `down2` (conv block + 2x2 max-pool:
//! 28 -> 14 -> 7, n_feat then 2 n_feat), `to_vec` (average pool over the whole 7x7 map, GELU),
//! then the up path: `up0` (7x7 transposed conv back to 7x7, GroupNorm(8), ReLU), `up1` / `up2`
//! (2x2 transposed conv of [x, skip], two conv blocks), `out` (conv, GroupNorm, ReLU, conv to C).
//! The class enters as a one-hot vector through `contextembed1/2`, the time `t / n_T` through
//! `timeembed1/2` (each Linear, GELU, Linear), as `cemb * h + temb` before `up1` and `up2`.
//!
//! Classifier-free guidance drops the class by zeroing its one-hot vector; like the reference,
//! the kept one-hot vectors are negated (`c * -(1 - mask)`), which the embedding absorbs.
//! A conv block is conv 3x3, BatchNorm, GELU twice; the residual ones (`init_conv`) add the
//! input (or the first conv's output when the width changes) and divide by 1.414.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::blocks::{
    BatchNorm, Conv2d, ConvSpec, ConvTranspose2d, GroupNorm, Init, Linear, Module, Nonlinearity,
    Sequential,
};
use super::layers::ModelError;
use super::summary::ModuleTree;

/// The reference's residual scale (sqrt 2, rounded as it writes it).
const RESIDUAL_SCALE: f64 = 1.414;
const GROUPS: i64 = 8;
const BN_EPS: f64 = 1e-5;

/// What a [`ContextUnet`] is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextUnetConfig {
    /// Image channels (3 for MNIST-M, 1 for MNIST).
    pub channels: i64,
    /// Width of the first level; the second is twice as wide.
    pub n_feat: i64,
    /// Square input side, divisible by 4 (28 in the reference).
    pub image_size: i64,
    pub classes: i64,
}

impl ContextUnetConfig {
    pub fn check(&self) -> Result<(), ModelError> {
        let unsupported = |what, found, expected| {
            Err(ModelError::Unsupported {
                what,
                found,
                expected,
            })
        };
        if self.image_size < 4 || self.image_size % 4 != 0 {
            return unsupported(
                "ContextUnet image_size",
                self.image_size,
                "a multiple of 4 (two 2x2 poolings)",
            );
        }
        if self.n_feat < GROUPS || self.n_feat % GROUPS != 0 {
            return unsupported(
                "ContextUnet n_feat",
                self.n_feat,
                "a multiple of 8 (the GroupNorm groups)",
            );
        }
        if self.channels < 1 {
            return unsupported("ContextUnet channels", self.channels, "at least 1");
        }
        if self.classes < 1 {
            return unsupported("ContextUnet classes", self.classes, "at least 1");
        }
        Ok(())
    }
}

/// conv 3x3 + BatchNorm + GELU, as `Sequential(Conv2d, BatchNorm2d, GELU)`.
fn conv_bn_gelu(path: &nn::Path, ci: i64, co: i64) -> Sequential {
    let mut s = Sequential::new();
    s.push(
        "0",
        Conv2d::new(&(path / "0"), ConvSpec::new(ci, co, 3).padding(1)),
    );
    s.push(
        "1",
        BatchNorm::new_2d(&(path / "1"), co, BN_EPS, Init::Pytorch),
    );
    s.push("2", Nonlinearity::Gelu);
    s
}

/// The reference's `ResidualConvBlock`.
struct ConvBlock {
    conv1: Sequential,
    conv2: Sequential,
    residual: bool,
    same_channels: bool,
}

impl ConvBlock {
    fn new(path: &nn::Path, ci: i64, co: i64, residual: bool) -> Self {
        ConvBlock {
            conv1: conv_bn_gelu(&(path / "conv1"), ci, co),
            conv2: conv_bn_gelu(&(path / "conv2"), co, co),
            residual,
            same_channels: ci == co,
        }
    }
}

impl Module for ConvBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x1 = self.conv1.forward_t(xs, train);
        let x2 = self.conv2.forward_t(&x1, train);
        match (self.residual, self.same_channels) {
            (false, _) => x2,
            (true, true) => (xs + x2) / RESIDUAL_SCALE,
            (true, false) => (x1 + x2) / RESIDUAL_SCALE,
        }
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "ResidualConvBlock",
            vec![
                ("conv1".into(), self.conv1.tree()),
                ("conv2".into(), self.conv2.tree()),
            ],
        )
    }
}

/// 2x2 max-pooling, stride 2.
struct MaxPool2;

impl Module for MaxPool2 {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)",
        )
    }
}

/// `UnetDown`: conv block then pooling, as `model.0`, `model.1`.
fn unet_down(path: &nn::Path, ci: i64, co: i64) -> Sequential {
    let model = path / "model";
    let mut s = Sequential::new();
    s.push("0", ConvBlock::new(&(&model / "0"), ci, co, false));
    s.push("1", MaxPool2);
    s
}

/// `UnetUp`: 2x2 transposed conv of `[x, skip]`, two conv blocks.
fn unet_up(path: &nn::Path, ci: i64, co: i64) -> Sequential {
    let model = path / "model";
    let mut s = Sequential::new();
    s.push(
        "0",
        ConvTranspose2d::new(&(&model / "0"), ConvSpec::new(ci, co, 2).stride(2)),
    );
    s.push("1", ConvBlock::new(&(&model / "1"), co, co, false));
    s.push("2", ConvBlock::new(&(&model / "2"), co, co, false));
    s
}

/// `EmbedFC`: Linear, GELU, Linear under `model`.
fn embed_fc(path: &nn::Path, input: i64, width: i64) -> Sequential {
    let model = path / "model";
    let mut s = Sequential::new();
    s.push(
        "0",
        Linear::new(&(&model / "0"), input, width, Init::Pytorch),
    );
    s.push("1", Nonlinearity::Gelu);
    s.push(
        "2",
        Linear::new(&(&model / "2"), width, width, Init::Pytorch),
    );
    s
}

pub struct ContextUnet {
    pub config: ContextUnetConfig,
    init_conv: ConvBlock,
    down1: Sequential,
    down2: Sequential,
    timeembed1: Sequential,
    timeembed2: Sequential,
    contextembed1: Sequential,
    contextembed2: Sequential,
    up0: Sequential,
    up1: Sequential,
    up2: Sequential,
    out: Sequential,
}

impl ContextUnet {
    pub fn new(root: &nn::Path, config: ContextUnetConfig) -> Result<Self, ModelError> {
        config.check()?;
        let (c, nf, classes) = (config.channels, config.n_feat, config.classes);
        let pooled = config.image_size / 4;
        let mut up0 = Sequential::new();
        up0.push(
            "0",
            ConvTranspose2d::new(
                &(root / "up0" / "0"),
                ConvSpec::new(2 * nf, 2 * nf, pooled).stride(pooled),
            ),
        );
        up0.push(
            "1",
            GroupNorm::new(&(root / "up0" / "1"), GROUPS, 2 * nf, BN_EPS),
        );
        up0.push("2", Nonlinearity::Relu);
        let mut out = Sequential::new();
        out.push(
            "0",
            Conv2d::new(
                &(root / "out" / "0"),
                ConvSpec::new(2 * nf, nf, 3).padding(1),
            ),
        );
        out.push(
            "1",
            GroupNorm::new(&(root / "out" / "1"), GROUPS, nf, BN_EPS),
        );
        out.push("2", Nonlinearity::Relu);
        out.push(
            "3",
            Conv2d::new(&(root / "out" / "3"), ConvSpec::new(nf, c, 3).padding(1)),
        );
        Ok(ContextUnet {
            config,
            init_conv: ConvBlock::new(&(root / "init_conv"), c, nf, true),
            down1: unet_down(&(root / "down1"), nf, nf),
            down2: unet_down(&(root / "down2"), nf, 2 * nf),
            timeembed1: embed_fc(&(root / "timeembed1"), 1, 2 * nf),
            timeembed2: embed_fc(&(root / "timeembed2"), 1, nf),
            contextembed1: embed_fc(&(root / "contextembed1"), classes, 2 * nf),
            contextembed2: embed_fc(&(root / "contextembed2"), classes, nf),
            up0,
            up1: unet_up(&(root / "up1"), 4 * nf, nf),
            up2: unet_up(&(root / "up2"), 2 * nf, nf),
            out,
        })
    }

    /// Predicted noise of `x` `[b, C, S, S]` for classes `labels` `[b]` (int64) at times
    /// `t` `[b]` (t / n_T, float); where `drop` `[b]` is 1 the class is dropped.
    pub fn forward(
        &self,
        x: &Tensor,
        labels: &Tensor,
        t: &Tensor,
        drop: &Tensor,
        train: bool,
    ) -> Tensor {
        let nf = self.config.n_feat;
        let pooled = self.config.image_size / 4;
        let x = self.init_conv.forward_t(x, train);
        let down1 = self.down1.forward_t(&x, train);
        let down2 = self.down2.forward_t(&down1, train);
        let hidden = down2
            .avg_pool2d(
                [pooled, pooled],
                [pooled, pooled],
                [0, 0],
                false,
                true,
                None::<i64>,
            )
            .gelu("none");
        // (b,) -> (b, classes), zeroed where dropped and negated where kept, as the reference does
        let keep = (drop.to_kind(Kind::Float) - 1.0).unsqueeze(1);
        let one_hot = labels.one_hot(self.config.classes).to_kind(Kind::Float) * keep;
        let t = t.to_kind(Kind::Float).reshape([-1, 1]);
        let as_map = |v: Tensor, width: i64| v.reshape([-1, width, 1, 1]);
        let cemb1 = as_map(self.contextembed1.forward_t(&one_hot, train), 2 * nf);
        let temb1 = as_map(self.timeembed1.forward_t(&t, train), 2 * nf);
        let cemb2 = as_map(self.contextembed2.forward_t(&one_hot, train), nf);
        let temb2 = as_map(self.timeembed2.forward_t(&t, train), nf);
        let up1 = self.up0.forward_t(&hidden, train);
        let up2 = self
            .up1
            .forward_t(&Tensor::cat(&[cemb1 * up1 + temb1, down2], 1), train);
        let up3 = self
            .up2
            .forward_t(&Tensor::cat(&[cemb2 * up2 + temb2, down1], 1), train);
        self.out.forward_t(&Tensor::cat(&[up3, x], 1), train)
    }

    /// The model as PyTorch prints it.
    pub fn tree(&self) -> ModuleTree {
        let to_vec = ModuleTree::node(
            "Sequential",
            vec![
                (
                    "0".into(),
                    ModuleTree::leaf(format!(
                        "AvgPool2d(kernel_size={0}, stride={0}, padding=0)",
                        self.config.image_size / 4
                    )),
                ),
                ("1".into(), Nonlinearity::Gelu.tree()),
            ],
        );
        let named = |name: &str, s: &Sequential, class: &str| {
            let inner = ModuleTree::node(class, vec![("model".into(), s.tree())]);
            (name.to_owned(), inner)
        };
        ModuleTree::node(
            "ContextUnet",
            vec![
                ("init_conv".into(), self.init_conv.tree()),
                named("down1", &self.down1, "UnetDown"),
                named("down2", &self.down2, "UnetDown"),
                ("to_vec".into(), to_vec),
                named("timeembed1", &self.timeembed1, "EmbedFC"),
                named("timeembed2", &self.timeembed2, "EmbedFC"),
                named("contextembed1", &self.contextembed1, "EmbedFC"),
                named("contextembed2", &self.contextembed2, "EmbedFC"),
                ("up0".into(), self.up0.tree()),
                named("up1", &self.up1, "UnetUp"),
                named("up2", &self.up2, "UnetUp"),
                ("out".into(), self.out.tree()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn predicts_noise_of_the_input_shape_with_the_reference_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = ContextUnetConfig {
            channels: 3,
            n_feat: 16,
            image_size: 28,
            classes: 10,
        };
        let net = ContextUnet::new(&vs.root(), config).unwrap();
        let x = Tensor::randn([4, 3, 28, 28], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 2, 9]);
        let t = Tensor::from_slice(&[0.1f32, 0.5, 0.7, 1.0]);
        let drop = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0]);
        assert_eq!(
            net.forward(&x, &labels, &t, &drop, true).size(),
            [4, 3, 28, 28]
        );
        let names = vs.variables();
        for name in [
            "init_conv.conv1.0.weight",
            "init_conv.conv1.1.running_mean",
            "down2.model.0.conv2.0.bias",
            "timeembed1.model.2.weight",
            "contextembed2.model.0.weight",
            "up0.0.weight",
            "up1.model.0.weight",
            "up2.model.2.conv1.1.weight",
            "out.3.bias",
        ] {
            assert!(names.contains_key(name), "{name} missing");
        }
        assert_eq!(names["contextembed1.model.0.weight"].size(), [32, 10]);
        assert_eq!(names["up0.0.weight"].size(), [32, 32, 7, 7]);
        assert!(ContextUnet::new(
            &vs.root(),
            ContextUnetConfig {
                image_size: 30,
                ..config
            }
        )
        .is_err());
        assert!(net.tree().to_string().contains("(contextembed1): EmbedFC("));
    }
}
