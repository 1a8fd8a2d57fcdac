//! The digit CNNs of the DANN paper (Ganin et al., "Domain-Adversarial Training of Neural
//! Networks", JMLR 2016, <https://arxiv.org/abs/1505.07818>, section 5.2.2), as two presets:
//!
//! - [`Arch::Mnist`] (the paper's MNIST -> MNIST-M network): conv 32 k5, max-pool 2, conv 48 k5,
//!   max-pool 2, then a label head 100-100-classes (and a domain head 100-2 in DANN).
//! - [`Arch::Svhn`] (the paper's SVHN network): conv 64 k5, max-pool 3/2, conv 64 k5, max-pool
//!   3/2, conv 128 k5 (all "same" padding), then a label head 3072-2048-classes (domain head
//!   1024-1024-2).
//! - [`Arch::DannBn`] (`dann_bn`, the network of the popular PyTorch port
//!   <https://github.com/fungtion/DANN>): conv 64 k5, BatchNorm2d, max-pool 2, ReLU, conv 50 k5,
//!   BatchNorm2d, Dropout2d, max-pool 2, ReLU (800 features at 28x28), then a label head
//!   fc 100, BatchNorm1d, ReLU, Dropout, fc 100, BatchNorm1d, ReLU, fc classes and a domain head
//!   fc 100, BatchNorm1d, ReLU, fc 2. Batch norm keeps the feature scale bounded, which is what
//!   lets the gradient reversal train stably with Adam; the model has train and eval modes.
//!
//! - [`Arch::Lenet`] (`lenet`, the course's digit evaluator for generated images): conv 6 k5,
//!   ReLU, max-pool 2, conv 16 k5, ReLU, max-pool 2 (256 features at 28x28), then fc 128, ReLU,
//!   fc 64, ReLU, fc classes. The course feeds it images normalised with a fixed mean and std of
//!   0.5 per channel; hwrun normalises with the training set's own per-channel mean and std (see
//!   `training::batches`), saved with the model and reused for images of the same domain. Both
//!   are a per-channel affine map of the input, which the first conv absorbs in training, so the
//!   network and the protocol are the same; only the learned first-layer weights differ.
//!
//! - [`Arch::AddaLenet`] (`adda_lenet`, the LeNet of the ADDA paper, Tzeng et al. 2017, and of
//!   its released code): conv 20 k5, ReLU, max-pool 2, conv 50 k5, ReLU, max-pool 2, fc 500, ReLU
//!   (the encoder ends in 500 features, which ADDA's discriminator aligns), then fc classes.
//!
//! The model has two parts, `feature` (the feature extractor / ADDA encoder) and `classifier`
//! (the label predictor); their parameter names are the PyTorch `state_dict` keys
//! (`feature.conv1.weight`, `classifier.fc3.bias`). Input: f32 `[b, channels, image_size,
//! image_size]`, already normalised.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::{Activation, LayerSpec, ModelError, Stack};
use super::summary::ModuleTree;

/// Which digit network to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The DANN paper's small MNIST network (about 80k parameters at 28x28).
    Mnist,
    /// The DANN paper's deeper SVHN network (about 26M parameters at 28x28).
    Svhn,
    /// The popular PyTorch port's network with batch norm and dropout (about 180k parameters).
    DannBn,
    /// The course's LeNet-style evaluator of generated digits (about 44k parameters).
    Lenet,
    /// The ADDA paper's LeNet with a 500-d encoder output (about 430k parameters at 28x28).
    AddaLenet,
}

/// Drop probability of the `dann_bn` dropout layers (PyTorch's default).
const DROPOUT: f64 = 0.5;

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mnist => "mnist",
            Arch::Svhn => "svhn",
            Arch::DannBn => "dann_bn",
            Arch::Lenet => "lenet",
            Arch::AddaLenet => "adda_lenet",
        }
    }

    /// The smallest `image_size` the feature extractor can take.
    pub fn min_image_size(self) -> i64 {
        match self {
            Arch::Mnist | Arch::DannBn | Arch::Lenet | Arch::AddaLenet => 16,
            Arch::Svhn => 4,
        }
    }

    fn feature_specs(self) -> Vec<(&'static str, LayerSpec)> {
        use LayerSpec::*;
        match self {
            Arch::Mnist => lenet_style_features(32, 48),
            Arch::Svhn => vec![
                ("conv1", LayerSpec::conv(64, 5, 2)),
                ("relu1", LayerSpec::RELU),
                (
                    "pool1",
                    MaxPool2d {
                        kernel: 3,
                        stride: 2,
                        padding: 1,
                    },
                ),
                ("conv2", LayerSpec::conv(64, 5, 2)),
                ("relu2", LayerSpec::RELU),
                (
                    "pool2",
                    MaxPool2d {
                        kernel: 3,
                        stride: 2,
                        padding: 1,
                    },
                ),
                ("conv3", LayerSpec::conv(128, 5, 2)),
                ("relu3", LayerSpec::RELU),
                ("flatten", Flatten),
            ],
            Arch::Lenet => lenet_style_features(6, 16),
            Arch::AddaLenet => {
                let mut specs = lenet_style_features(20, 50);
                specs.extend([
                    ("fc1", Linear { out_features: 500 }),
                    ("relu3", LayerSpec::RELU),
                ]);
                specs
            }
            // The port's order: batch norm before pooling, ReLU after it.
            Arch::DannBn => vec![
                ("conv1", LayerSpec::conv(64, 5, 0)),
                ("bn1", LayerSpec::BATCH_NORM),
                ("pool1", HALVING_POOL),
                ("relu1", LayerSpec::RELU),
                ("conv2", LayerSpec::conv(50, 5, 0)),
                ("bn2", LayerSpec::BATCH_NORM),
                ("drop1", Dropout2d { p: DROPOUT }),
                ("pool2", HALVING_POOL),
                ("relu2", LayerSpec::RELU),
                ("flatten", Flatten),
            ],
        }
    }

    /// The label predictor's layers, ending in `classes` logits.
    fn classifier_specs(self, classes: i64) -> Vec<(String, LayerSpec)> {
        use LayerSpec::*;
        match self {
            Arch::Mnist => mlp_specs(&[100, 100], classes),
            Arch::Svhn => mlp_specs(&[3072, 2048], classes),
            Arch::Lenet => mlp_specs(&[128, 64], classes),
            Arch::AddaLenet => mlp_specs(&[], classes),
            Arch::DannBn => named(&[
                ("fc1", Linear { out_features: 100 }),
                ("bn1", LayerSpec::BATCH_NORM),
                ("relu1", LayerSpec::RELU),
                ("drop1", Dropout { p: DROPOUT }),
                ("fc2", Linear { out_features: 100 }),
                ("bn2", LayerSpec::BATCH_NORM),
                ("relu2", LayerSpec::RELU),
                (
                    "fc3",
                    Linear {
                        out_features: classes,
                    },
                ),
            ]),
        }
    }

    /// DANN's domain classifier's layers, ending in 2 logits.
    pub fn domain_specs(self) -> Vec<(String, LayerSpec)> {
        use LayerSpec::*;
        match self {
            Arch::Mnist | Arch::Lenet | Arch::AddaLenet => mlp_specs(&[100], 2),
            Arch::Svhn => mlp_specs(&[1024, 1024], 2),
            Arch::DannBn => named(&[
                ("fc1", Linear { out_features: 100 }),
                ("bn1", LayerSpec::BATCH_NORM),
                ("relu1", LayerSpec::RELU),
                ("fc2", Linear { out_features: 2 }),
            ]),
        }
    }
}

/// Max-pool 2 with stride 2: halves the image.
const HALVING_POOL: LayerSpec = LayerSpec::MaxPool2d {
    kernel: 2,
    stride: 2,
    padding: 0,
};

/// Conv k5, ReLU, max-pool 2, twice, then flatten: the extractor shared by the `mnist`, `lenet`
/// and `adda_lenet` presets, which differ in their channel counts.
fn lenet_style_features(first: i64, second: i64) -> Vec<(&'static str, LayerSpec)> {
    vec![
        ("conv1", LayerSpec::conv(first, 5, 0)),
        ("relu1", LayerSpec::RELU),
        ("pool1", HALVING_POOL),
        ("conv2", LayerSpec::conv(second, 5, 0)),
        ("relu2", LayerSpec::RELU),
        ("pool2", HALVING_POOL),
        ("flatten", LayerSpec::Flatten),
    ]
}

fn named(specs: &[(&str, LayerSpec)]) -> Vec<(String, LayerSpec)> {
    specs
        .iter()
        .map(|&(name, spec)| (name.to_owned(), spec))
        .collect()
}

/// The `model` table of the training stages: which digit network, at which input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigitCnnParams {
    /// Network preset: `mnist` (small CNN) or `svhn` (deeper CNN) of the DANN paper, `dann_bn`
    /// (the PyTorch port's CNN with batch norm and dropout), `lenet` (the course's evaluator
    /// of generated digits), or `adda_lenet` (the ADDA paper's LeNet, 500-d encoder).
    #[serde(default = "DigitCnnParams::default_arch")]
    pub arch: Arch,
    /// Height and width of the network input; other image sizes are resized bilinearly.
    #[serde(default = "DigitCnnParams::default_image_size")]
    pub image_size: i64,
    /// Input channels of the network (3: greyscale is repeated; 1: colour is averaged).
    #[serde(default = "DigitCnnParams::default_channels")]
    pub channels: i64,
}

impl Default for DigitCnnParams {
    fn default() -> Self {
        DigitCnnParams {
            arch: Self::default_arch(),
            image_size: Self::default_image_size(),
            channels: Self::default_channels(),
        }
    }
}

impl DigitCnnParams {
    fn default_arch() -> Arch {
        Arch::Mnist
    }
    fn default_image_size() -> i64 {
        28
    }
    fn default_channels() -> i64 {
        3
    }

    /// The network for `classes` classes.
    pub fn config(&self, classes: i64) -> DigitCnnConfig {
        DigitCnnConfig {
            arch: self.arch,
            channels: self.channels,
            image_size: self.image_size,
            classes,
        }
    }
}

/// What a [`DigitCnn`] is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigitCnnConfig {
    pub arch: Arch,
    /// Input channels (1 or 3).
    pub channels: i64,
    /// Input height and width.
    pub image_size: i64,
    pub classes: i64,
}

impl DigitCnnConfig {
    /// Checks the input shape against the architecture.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !matches!(self.channels, 1 | 3) {
            return Err(ModelError::Unsupported {
                what: "input channel count",
                found: self.channels,
                expected: "1 or 3",
            });
        }
        if self.classes < 1 {
            return Err(ModelError::Unsupported {
                what: "class count",
                found: self.classes,
                expected: "at least 1",
            });
        }
        let min = self.arch.min_image_size();
        if self.image_size < min {
            return Err(ModelError::ImageTooSmall {
                arch: self.arch.name().into(),
                min,
                found: self.image_size,
            });
        }
        Ok(())
    }

    fn input(&self) -> Activation {
        Activation::Image {
            channels: self.channels,
            height: self.image_size,
            width: self.image_size,
        }
    }
}

/// A multi-layer perceptron head `hidden..., out` with ReLUs between, layers `fc1, relu1, fc2, ...`.
pub fn mlp_specs(hidden: &[i64], out: i64) -> Vec<(String, LayerSpec)> {
    let mut specs = Vec::new();
    for (i, &width) in hidden.iter().enumerate() {
        specs.push((
            format!("fc{}", i + 1),
            LayerSpec::Linear {
                out_features: width,
            },
        ));
        specs.push((format!("relu{}", i + 1), LayerSpec::RELU));
    }
    specs.push((
        format!("fc{}", hidden.len() + 1),
        LayerSpec::Linear { out_features: out },
    ));
    specs
}

/// Builds an MLP head under `path` from [`mlp_specs`].
pub fn mlp(path: &nn::Path, input_dim: i64, hidden: &[i64], out: i64) -> Result<Stack, ModelError> {
    Stack::new(path, Activation::Vector(input_dim), &mlp_specs(hidden, out))
}

/// Builds the feature extractor of `config` under `path` (the `feature` part).
pub fn feature_extractor(path: &nn::Path, config: &DigitCnnConfig) -> Result<Stack, ModelError> {
    config.validate()?;
    Stack::new(path, config.input(), &config.arch.feature_specs())
}

/// Feature extractor plus label predictor.
pub struct DigitCnn {
    pub config: DigitCnnConfig,
    pub feature: Stack,
    pub classifier: Stack,
}

impl DigitCnn {
    /// Creates the parts under `root / "feature"` and `root / "classifier"`.
    pub fn new(root: &nn::Path, config: DigitCnnConfig) -> Result<Self, ModelError> {
        let feature = feature_extractor(&(root / "feature"), &config)?;
        let head = config.arch.classifier_specs(config.classes);
        let classifier = Stack::new(
            &(root / "classifier"),
            Activation::Vector(feature.output_dim()),
            &head,
        )?;
        Ok(DigitCnn {
            config,
            feature,
            classifier,
        })
    }

    /// Width of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        self.feature.output_dim()
    }

    /// `[b, c, h, w]` images -> `[b, feature_dim]` features, in training or eval mode.
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.feature.forward_t(xs, train)
    }

    /// `[b, c, h, w]` images -> `[b, classes]` logits, in training or eval mode.
    pub fn logits(&self, xs: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&self.features(xs, train), train)
    }

    /// The named parts for the architecture printout.
    pub fn tree_parts(&self) -> Vec<(String, ModuleTree)> {
        vec![
            ("feature".into(), self.feature.tree()),
            ("classifier".into(), self.classifier.tree()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn config(arch: Arch) -> DigitCnnConfig {
        DigitCnnConfig {
            arch,
            channels: 3,
            image_size: 28,
            classes: 10,
        }
    }

    #[test]
    fn mnist_preset_has_the_papers_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), config(Arch::Mnist)).unwrap();
        assert_eq!(model.feature_dim(), 48 * 4 * 4);
        let logits = model.logits(
            &Tensor::zeros([2, 3, 28, 28], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(logits.size(), [2, 10]);
        assert_eq!(
            vs.variables()["feature.conv2.weight"].size(),
            [48, 32, 5, 5]
        );
        assert_eq!(vs.variables()["classifier.fc3.weight"].size(), [10, 100]);
    }

    #[test]
    fn svhn_preset_keeps_resolution_through_same_padding() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(
            &vs.root(),
            DigitCnnConfig {
                image_size: 32,
                ..config(Arch::Svhn)
            },
        )
        .unwrap();
        assert_eq!(model.feature_dim(), 128 * 8 * 8);
    }

    #[test]
    fn dann_bn_preset_is_the_pytorch_ports_network() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), config(Arch::DannBn)).unwrap();
        assert_eq!(model.feature_dim(), 800);
        let vars = vs.variables();
        assert_eq!(vars["feature.conv2.weight"].size(), [50, 64, 5, 5]);
        assert_eq!(vars["feature.bn2.running_var"].size(), [50]);
        assert_eq!(
            vars["classifier.bn2.num_batches_tracked"].size(),
            Vec::<i64>::new()
        );
        assert_eq!(vars["classifier.fc3.weight"].size(), [10, 100]);
        let x = Tensor::randn([4, 3, 28, 28], (Kind::Float, Device::Cpu));
        assert_eq!(model.logits(&x, true).size(), [4, 10]);
        // Eval mode is deterministic (no dropout), training mode is not.
        assert!(model.logits(&x, false).equal(&model.logits(&x, false)));
        assert!(!model.logits(&x, true).equal(&model.logits(&x, true)));
        let arch: Arch = serde_json::from_str("\"dann_bn\"").unwrap();
        assert_eq!(arch, Arch::DannBn);
    }

    #[test]
    fn lenet_preset_is_the_course_evaluator() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), config(Arch::Lenet)).unwrap();
        assert_eq!(model.feature_dim(), 256);
        let vars = vs.variables();
        assert_eq!(vars["feature.conv1.weight"].size(), [6, 3, 5, 5]);
        assert_eq!(vars["classifier.fc1.weight"].size(), [128, 256]);
        assert_eq!(vars["classifier.fc2.weight"].size(), [64, 128]);
        assert_eq!(vars["classifier.fc3.weight"].size(), [10, 64]);
    }

    #[test]
    fn adda_lenet_preset_ends_its_encoder_in_500_features() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), config(Arch::AddaLenet)).unwrap();
        assert_eq!(model.feature_dim(), 500);
        let vars = vs.variables();
        assert_eq!(vars["feature.conv2.weight"].size(), [50, 20, 5, 5]);
        assert_eq!(vars["feature.fc1.weight"].size(), [500, 50 * 4 * 4]);
        assert_eq!(vars["classifier.fc1.weight"].size(), [10, 500]);
        let x = Tensor::randn([2, 3, 28, 28], (Kind::Float, Device::Cpu));
        // The encoder's output has been through the ReLU.
        assert!(model.features(&x, false).min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn rejects_images_too_small_for_the_arch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = DigitCnn::new(
            &vs.root(),
            DigitCnnConfig {
                image_size: 8,
                ..config(Arch::Mnist)
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("at least 16x16"), "{err}");
    }
}
