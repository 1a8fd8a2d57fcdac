//! GAN generators and discriminators in the shape of the PyTorch DCGAN tutorial
//! (<https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html>), as presets:
//!
//! - [`GanPreset::Dcgan`]: the tutorial's networks. G: `ConvT(z, 8ngf, 4, 1, 0)`, then
//!   `ConvT(., ., 4, 2, 1)` halving the channels, BatchNorm + ReLU between, Tanh out. D mirrors
//!   it: `Conv(c, ndf, 4, 2, 1)` + LeakyReLU(0.2) (no norm on the first layer), then strided
//!   convs doubling the channels with norm + LeakyReLU, and a final `Conv(., 1, 4, 1, 0)`.
//! - [`GanPreset::Deep`]: the same, with a stride-1 3x3 conv block (conv, norm, activation)
//!   after each up- and down-sampling block, as several course reports used.
//!
//! Sizes: 64 (faces: 4 -> 8 -> 16 -> 32 -> 64, channels 8ngf..ngf), 32 (4 -> 8 -> 16 -> 32,
//! 4ngf..ngf) and 28 (digits: a 7x7 start, 7 -> 14 -> 28, 2ngf..ngf; D's last conv has a 7x7
//! kernel).
//!
//! The loss decides the discriminator's form: `dcgan` ends in a Sigmoid (the tutorial's
//! `nn.Sequential`), `wgan_gp` is a critic without sigmoid and with LayerNorm over `[C, H, W]`
//! instead of BatchNorm, and `acgan` splits the last layer into an adversarial head `adv` (a
//! logit) and an auxiliary class head `aux` (class logits) on the shared trunk `main`. The ACGAN
//! generator takes the class one-hot concatenated to z.
//!
//! Parameter names are the tutorial's `state_dict` keys (`main.0.weight`, `main.1.running_mean`,
//! ...), so a tutorial checkpoint loads into the `dcgan` preset; weights start as the tutorial's
//! `weights_init` (conv N(0, 0.02), BatchNorm weight N(1, 0.02), bias 0). Spectral norm applies
//! to every conv of the discriminator when asked.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::blocks::{Init, Nonlinearity};
use super::layers::{Activation, LayerSpec, ModelError, Stack, StackOptions};
use super::summary::ModuleTree;

/// Which architecture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum GanPreset {
    /// The PyTorch tutorial's DCGAN.
    #[default]
    Dcgan,
    /// DCGAN with a stride-1 3x3 conv block after every up/down sampling.
    Deep,
}

/// The adversarial objective, which also shapes the discriminator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum GanLoss {
    /// Binary cross-entropy, non-saturating generator loss (DCGAN).
    #[default]
    Dcgan,
    /// Wasserstein loss with gradient penalty (Gulrajani et al. 2017).
    WganGp,
    /// Auxiliary-classifier GAN (Odena et al. 2017): class-conditional.
    Acgan,
}

impl GanLoss {
    pub fn name(self) -> &'static str {
        match self {
            GanLoss::Dcgan => "dcgan",
            GanLoss::WganGp => "wgan_gp",
            GanLoss::Acgan => "acgan",
        }
    }
}

/// Everything that rebuilds a generator / discriminator pair (`model.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GanConfig {
    pub preset: GanPreset,
    pub loss: GanLoss,
    /// 64, 32 or 28.
    pub image_size: i64,
    /// Image channels (3 for faces and MNIST-M, 1 for MNIST).
    pub channels: i64,
    pub z_dim: i64,
    pub ngf: i64,
    pub ndf: i64,
    /// Spectral normalisation of every discriminator conv.
    pub spectral_norm: bool,
    /// Classes the generator is conditioned on (ACGAN); 0 for an unconditional GAN.
    pub classes: i64,
}

/// Image sizes the presets support.
pub const IMAGE_SIZES: [i64; 3] = [28, 32, 64];

/// The sampling path of one image size: the side after the first transposed conv (and its
/// kernel), and the channel multipliers of ngf/ndf from the coarsest to the finest resolution.
struct Ladder {
    first_kernel: i64,
    multipliers: &'static [i64],
}

fn ladder(image_size: i64) -> Result<Ladder, ModelError> {
    match image_size {
        64 => Ok(Ladder {
            first_kernel: 4,
            multipliers: &[8, 4, 2, 1],
        }),
        32 => Ok(Ladder {
            first_kernel: 4,
            multipliers: &[4, 2, 1],
        }),
        28 => Ok(Ladder {
            first_kernel: 7,
            multipliers: &[2, 1],
        }),
        found => Err(ModelError::Unsupported {
            what: "GAN image size",
            found,
            expected: "28, 32 or 64",
        }),
    }
}

/// Layers named `0`, `1`, ... as an `nn.Sequential` names them.
struct Numbered(Vec<(String, LayerSpec)>);

impl Numbered {
    fn push(&mut self, spec: LayerSpec) {
        let index = self.0.len();
        self.0.push((index.to_string(), spec));
    }
}

fn conv_t(out_channels: i64, kernel: i64, stride: i64, padding: i64) -> LayerSpec {
    LayerSpec::ConvTranspose2d {
        out_channels,
        kernel,
        stride,
        padding,
        bias: false,
    }
}

fn conv(out_channels: i64, kernel: i64, stride: i64, padding: i64) -> LayerSpec {
    LayerSpec::Conv2d {
        out_channels,
        kernel,
        stride,
        padding,
        bias: false,
    }
}

const LEAKY: LayerSpec = LayerSpec::Act(Nonlinearity::LeakyRelu(0.2));

impl GanConfig {
    /// Inputs of the generator's first layer: z, plus the one-hot class when conditional.
    pub fn generator_input(&self) -> i64 {
        self.z_dim + self.classes
    }

    pub fn conditional(&self) -> bool {
        self.classes > 0
    }

    fn deep(&self) -> bool {
        self.preset == GanPreset::Deep
    }

    fn generator_specs(&self) -> Result<Vec<(String, LayerSpec)>, ModelError> {
        let ladder = ladder(self.image_size)?;
        let mut layers = Numbered(Vec::new());
        for (index, &m) in ladder.multipliers.iter().enumerate() {
            let out = m * self.ngf;
            layers.push(if index == 0 {
                conv_t(out, ladder.first_kernel, 1, 0)
            } else {
                conv_t(out, 4, 2, 1)
            });
            layers.push(LayerSpec::BATCH_NORM);
            layers.push(LayerSpec::RELU);
            if self.deep() {
                layers.push(conv(out, 3, 1, 1));
                layers.push(LayerSpec::BATCH_NORM);
                layers.push(LayerSpec::RELU);
            }
        }
        layers.push(conv_t(self.channels, 4, 2, 1));
        layers.push(LayerSpec::Act(Nonlinearity::Tanh));
        Ok(layers.0)
    }

    /// The discriminator trunk (everything but the last conv) and the last conv's kernel.
    fn discriminator_trunk(&self) -> Result<(Vec<(String, LayerSpec)>, i64), ModelError> {
        let ladder = ladder(self.image_size)?;
        let norm = match self.loss {
            GanLoss::WganGp => LayerSpec::LayerNorm {
                eps: super::blocks::norm::DEFAULT_EPS,
            },
            GanLoss::Dcgan | GanLoss::Acgan => LayerSpec::BATCH_NORM,
        };
        let mut layers = Numbered(Vec::new());
        for (index, &m) in ladder.multipliers.iter().rev().enumerate() {
            let out = m * self.ndf;
            layers.push(conv(out, 4, 2, 1));
            if index > 0 {
                layers.push(norm);
            }
            layers.push(LEAKY);
            if self.deep() {
                layers.push(conv(out, 3, 1, 1));
                layers.push(norm);
                layers.push(LEAKY);
            }
        }
        Ok((layers.0, ladder.first_kernel))
    }

    fn image(&self) -> Activation {
        Activation::Image {
            channels: self.channels,
            height: self.image_size,
            width: self.image_size,
        }
    }
}

/// The generator: `[b, z]` noise (plus class labels when conditional) -> `[b, C, S, S]` in
/// `[-1, 1]`.
pub struct Generator {
    pub config: GanConfig,
    main: Stack,
}

impl Generator {
    /// Creates `main.*` under `path`.
    pub fn new(path: &nn::Path, config: GanConfig) -> Result<Self, ModelError> {
        let input = Activation::Image {
            channels: config.generator_input(),
            height: 1,
            width: 1,
        };
        let options = StackOptions {
            init: Init::Dcgan,
            spectral_norm: false,
        };
        let main =
            Stack::with_options(&(path / "main"), input, &config.generator_specs()?, options)?;
        Ok(Generator { config, main })
    }

    /// Images from noise `z` (`[b, z_dim]` or `[b, z_dim, 1, 1]`) and, for a conditional
    /// generator, `labels` (`[b]` i64).
    pub fn forward_t(&self, z: &Tensor, labels: Option<&Tensor>, train: bool) -> Tensor {
        let b = z.size()[0];
        let z = z.reshape([b, self.config.z_dim, 1, 1]);
        let input = match labels {
            Some(labels) if self.config.conditional() => {
                // (b,) -> (b, classes, 1, 1)
                let one_hot = labels
                    .one_hot(self.config.classes)
                    .to_kind(z.kind())
                    .reshape([b, self.config.classes, 1, 1]);
                Tensor::cat(&[z, one_hot], 1)
            }
            _ => z,
        };
        self.main.forward_t(&input, train)
    }

    pub fn tree(&self) -> ModuleTree {
        ModuleTree::node("Generator", vec![("main".into(), self.main.tree())])
    }
}

/// What the discriminator says about a batch.
pub struct Judgement {
    /// `[b]`: a probability (`dcgan`), a critic score (`wgan_gp`) or a logit (`acgan`).
    pub adversarial: Tensor,
    /// `[b, classes]` class logits (ACGAN only).
    pub class_logits: Option<Tensor>,
}

/// The discriminator / critic.
pub struct Discriminator {
    main: Stack,
    aux: Option<Stack>,
    adv: Option<Stack>,
}

impl Discriminator {
    /// Creates `main.*` (and `adv.*`, `aux.*` for ACGAN) under `path`.
    pub fn new(path: &nn::Path, config: GanConfig) -> Result<Self, ModelError> {
        let options = StackOptions {
            init: Init::Dcgan,
            spectral_norm: config.spectral_norm,
        };
        let (mut specs, last_kernel) = config.discriminator_trunk()?;
        let last = |out| conv(out, last_kernel, 1, 0);
        match config.loss {
            GanLoss::Dcgan | GanLoss::WganGp => {
                let mut layers = Numbered(specs);
                layers.push(last(1));
                if config.loss == GanLoss::Dcgan {
                    layers.push(LayerSpec::Act(Nonlinearity::Sigmoid));
                }
                specs = layers.0;
                let main = Stack::with_options(&(path / "main"), config.image(), &specs, options)?;
                Ok(Discriminator {
                    main,
                    aux: None,
                    adv: None,
                })
            }
            GanLoss::Acgan => {
                let main = Stack::with_options(&(path / "main"), config.image(), &specs, options)?;
                let head = |name: &str, out| {
                    Stack::with_options(&(path / name), main.output(), &[("0", last(out))], options)
                };
                let adv = head("adv", 1)?;
                let aux = head("aux", config.classes.max(1))?;
                Ok(Discriminator {
                    main,
                    aux: Some(aux),
                    adv: Some(adv),
                })
            }
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Judgement {
        let b = xs.size()[0];
        let trunk = self.main.forward_t(xs, train);
        match (&self.adv, &self.aux) {
            (Some(adv), Some(aux)) => Judgement {
                adversarial: adv.forward_t(&trunk, train).reshape([b]),
                class_logits: Some(aux.forward_t(&trunk, train).reshape([b, -1])),
            },
            _ => Judgement {
                adversarial: trunk.reshape([b]),
                class_logits: None,
            },
        }
    }

    pub fn tree(&self) -> ModuleTree {
        let mut children = vec![("main".to_owned(), self.main.tree())];
        for (name, head) in [("adv", &self.adv), ("aux", &self.aux)] {
            if let Some(head) = head {
                children.push((name.to_owned(), head.tree()));
            }
        }
        ModuleTree::node("Discriminator", children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn config(image_size: i64, loss: GanLoss, preset: GanPreset) -> GanConfig {
        let classes = if loss == GanLoss::Acgan { 10 } else { 0 };
        GanConfig {
            preset,
            loss,
            image_size,
            channels: 3,
            z_dim: 16,
            ngf: 4,
            ndf: 4,
            spectral_norm: false,
            classes,
        }
    }

    #[test]
    fn every_size_and_preset_round_trips_through_both_networks() {
        for size in IMAGE_SIZES {
            for loss in [GanLoss::Dcgan, GanLoss::WganGp, GanLoss::Acgan] {
                for preset in [GanPreset::Dcgan, GanPreset::Deep] {
                    let c = config(size, loss, preset);
                    let vs = nn::VarStore::new(Device::Cpu);
                    let g = Generator::new(&(vs.root() / "generator"), c).unwrap();
                    let d = Discriminator::new(&(vs.root() / "discriminator"), c).unwrap();
                    let z = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
                    let labels = Tensor::from_slice(&[3i64, 7]);
                    let x = g.forward_t(&z, Some(&labels), true);
                    assert_eq!(x.size(), [2, 3, size, size], "{c:?}");
                    let j = d.forward_t(&x, true);
                    assert_eq!(j.adversarial.size(), [2]);
                    assert_eq!(
                        j.class_logits.map(|t| t.size()),
                        (loss == GanLoss::Acgan).then(|| vec![2, 10])
                    );
                }
            }
        }
    }

    #[test]
    fn the_dcgan_preset_names_and_prints_like_the_tutorial() {
        let c = GanConfig {
            ngf: 64,
            ndf: 64,
            z_dim: 100,
            ..config(64, GanLoss::Dcgan, GanPreset::Dcgan)
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let g = Generator::new(&vs.root(), c).unwrap();
        let d = Discriminator::new(&(vs.root() / "d"), c).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["main.0.weight"].size(), [100, 512, 4, 4]);
        assert_eq!(vars["main.12.weight"].size(), [64, 3, 4, 4]);
        assert_eq!(vars["d.main.11.weight"].size(), [1, 512, 4, 4]);
        let tree = g.tree().to_string();
        assert!(
            tree.contains(
                "(0): ConvTranspose2d(100, 512, kernel_size=(4, 4), stride=(1, 1), bias=False)"
            ),
            "{tree}"
        );
        assert!(tree.contains("(13): Tanh()"), "{tree}");
        let tree = d.tree().to_string();
        assert!(tree.contains("(12): Sigmoid()"), "{tree}");
        // The tutorial's generator has 3,576,704 parameters and its discriminator 2,765,568.
        let count = |in_d: bool| -> i64 {
            vars.iter()
                .filter(|(n, t)| n.starts_with("d.") == in_d && t.requires_grad())
                .map(|(_, t)| t.numel() as i64)
                .sum()
        };
        assert_eq!(count(false), 3_576_704);
        assert_eq!(count(true), 2_765_568);
    }

    #[test]
    fn the_critic_uses_layer_norm_and_no_sigmoid() {
        let c = GanConfig {
            spectral_norm: true,
            ..config(32, GanLoss::WganGp, GanPreset::Dcgan)
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let d = Discriminator::new(&vs.root(), c).unwrap();
        let tree = d.tree().to_string();
        assert!(tree.contains("LayerNorm((8, 8, 8)"), "{tree}");
        assert!(
            !tree.contains("Sigmoid") && !tree.contains("BatchNorm"),
            "{tree}"
        );
        assert!(vs.variables().contains_key("main.0.weight_orig"));
        assert!(ladder(48).is_err());
    }
}
