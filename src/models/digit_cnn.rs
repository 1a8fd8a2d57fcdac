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
//! The model has two parts, `feature` (the feature extractor / ADDA encoder) and `classifier`
//! (the label predictor); their parameter names are the PyTorch `state_dict` keys
//! (`feature.conv1.weight`, `classifier.fc3.bias`). Input: f32 `[b, channels, image_size,
//! image_size]`, already normalised.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::{Activation, LayerSpec, ModelError, Sequential};
use super::summary::ModuleTree;

/// Which digit network to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The DANN paper's small MNIST network (about 80k parameters at 28x28).
    Mnist,
    /// The DANN paper's deeper SVHN network (about 26M parameters at 28x28).
    Svhn,
    /// The popular PyTorch port's network with batch norm and dropout (about 180k parameters).
    DannBn,
}

/// Drop probability of the `dann_bn` dropout layers (PyTorch's default).
const DROPOUT: f64 = 0.5;

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mnist => "mnist",
            Arch::Svhn => "svhn",
            Arch::DannBn => "dann_bn",
        }
    }

    /// The smallest `image_size` the feature extractor can take.
    fn min_image_size(self) -> i64 {
        match self {
            Arch::Mnist | Arch::DannBn => 16,
            Arch::Svhn => 4,
        }
    }

    fn feature_specs(self) -> Vec<(&'static str, LayerSpec)> {
        use LayerSpec::*;
        match self {
            Arch::Mnist => vec![
                ("conv1", Conv2d { out_channels: 32, kernel: 5, padding: 0 }),
                ("relu1", Relu),
                ("pool1", MaxPool2d { kernel: 2, stride: 2, padding: 0 }),
                ("conv2", Conv2d { out_channels: 48, kernel: 5, padding: 0 }),
                ("relu2", Relu),
                ("pool2", MaxPool2d { kernel: 2, stride: 2, padding: 0 }),
                ("flatten", Flatten),
            ],
            Arch::Svhn => vec![
                ("conv1", Conv2d { out_channels: 64, kernel: 5, padding: 2 }),
                ("relu1", Relu),
                ("pool1", MaxPool2d { kernel: 3, stride: 2, padding: 1 }),
                ("conv2", Conv2d { out_channels: 64, kernel: 5, padding: 2 }),
                ("relu2", Relu),
                ("pool2", MaxPool2d { kernel: 3, stride: 2, padding: 1 }),
                ("conv3", Conv2d { out_channels: 128, kernel: 5, padding: 2 }),
                ("relu3", Relu),
                ("flatten", Flatten),
            ],
            // The port's order: batch norm before pooling, ReLU after it.
            Arch::DannBn => vec![
                ("conv1", Conv2d { out_channels: 64, kernel: 5, padding: 0 }),
                ("bn1", BatchNorm2d),
                ("pool1", MaxPool2d { kernel: 2, stride: 2, padding: 0 }),
                ("relu1", Relu),
                ("conv2", Conv2d { out_channels: 50, kernel: 5, padding: 0 }),
                ("bn2", BatchNorm2d),
                ("drop1", Dropout2d { p: DROPOUT }),
                ("pool2", MaxPool2d { kernel: 2, stride: 2, padding: 0 }),
                ("relu2", Relu),
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
            Arch::DannBn => named(&[
                ("fc1", Linear { out_features: 100 }),
                ("bn1", BatchNorm1d),
                ("relu1", Relu),
                ("drop1", Dropout { p: DROPOUT }),
                ("fc2", Linear { out_features: 100 }),
                ("bn2", BatchNorm1d),
                ("relu2", Relu),
                ("fc3", Linear { out_features: classes }),
            ]),
        }
    }

    /// DANN's domain classifier's layers, ending in 2 logits.
    pub fn domain_specs(self) -> Vec<(String, LayerSpec)> {
        use LayerSpec::*;
        match self {
            Arch::Mnist => mlp_specs(&[100], 2),
            Arch::Svhn => mlp_specs(&[1024, 1024], 2),
            Arch::DannBn => named(&[
                ("fc1", Linear { out_features: 100 }),
                ("bn1", BatchNorm1d),
                ("relu1", Relu),
                ("fc2", Linear { out_features: 2 }),
            ]),
        }
    }
}

fn named(specs: &[(&str, LayerSpec)]) -> Vec<(String, LayerSpec)> {
    specs.iter().map(|&(name, spec)| (name.to_owned(), spec)).collect()
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
            return Err(ModelError::Unsupported { what: "input channel count", found: self.channels, expected: "1 or 3" });
        }
        if self.classes < 1 {
            return Err(ModelError::Unsupported { what: "class count", found: self.classes, expected: "at least 1" });
        }
        let min = self.arch.min_image_size();
        if self.image_size < min {
            return Err(ModelError::ImageTooSmall { arch: self.arch.name().into(), min, found: self.image_size });
        }
        Ok(())
    }

    fn input(&self) -> Activation {
        Activation::Image { channels: self.channels, height: self.image_size, width: self.image_size }
    }
}

/// A multi-layer perceptron head `hidden..., out` with ReLUs between, layers `fc1, relu1, fc2, ...`.
pub fn mlp_specs(hidden: &[i64], out: i64) -> Vec<(String, LayerSpec)> {
    let mut specs = Vec::new();
    for (i, &width) in hidden.iter().enumerate() {
        specs.push((format!("fc{}", i + 1), LayerSpec::Linear { out_features: width }));
        specs.push((format!("relu{}", i + 1), LayerSpec::Relu));
    }
    specs.push((format!("fc{}", hidden.len() + 1), LayerSpec::Linear { out_features: out }));
    specs
}

/// Builds an MLP head under `path` from [`mlp_specs`].
pub fn mlp(path: &nn::Path, input_dim: i64, hidden: &[i64], out: i64) -> Result<Sequential, ModelError> {
    Sequential::new(path, Activation::Vector(input_dim), &mlp_specs(hidden, out))
}

/// Builds the feature extractor of `config` under `path` (the `feature` part).
pub fn feature_extractor(path: &nn::Path, config: &DigitCnnConfig) -> Result<Sequential, ModelError> {
    config.validate()?;
    Sequential::new(path, config.input(), &config.arch.feature_specs())
}

/// Feature extractor plus label predictor.
pub struct DigitCnn {
    pub config: DigitCnnConfig,
    pub feature: Sequential,
    pub classifier: Sequential,
}

impl DigitCnn {
    /// Creates the parts under `root / "feature"` and `root / "classifier"`.
    pub fn new(root: &nn::Path, config: DigitCnnConfig) -> Result<Self, ModelError> {
        let feature = feature_extractor(&(root / "feature"), &config)?;
        let head = config.arch.classifier_specs(config.classes);
        let classifier = Sequential::new(&(root / "classifier"), Activation::Vector(feature.output_dim()), &head)?;
        Ok(DigitCnn { config, feature, classifier })
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
        vec![("feature".into(), self.feature.tree()), ("classifier".into(), self.classifier.tree())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn config(arch: Arch) -> DigitCnnConfig {
        DigitCnnConfig { arch, channels: 3, image_size: 28, classes: 10 }
    }

    #[test]
    fn mnist_preset_has_the_papers_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), config(Arch::Mnist)).unwrap();
        assert_eq!(model.feature_dim(), 48 * 4 * 4);
        let logits = model.logits(&Tensor::zeros([2, 3, 28, 28], (Kind::Float, Device::Cpu)), false);
        assert_eq!(logits.size(), [2, 10]);
        assert_eq!(vs.variables()["feature.conv2.weight"].size(), [48, 32, 5, 5]);
        assert_eq!(vs.variables()["classifier.fc3.weight"].size(), [10, 100]);
    }

    #[test]
    fn svhn_preset_keeps_resolution_through_same_padding() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = DigitCnn::new(&vs.root(), DigitCnnConfig { image_size: 32, ..config(Arch::Svhn) }).unwrap();
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
        assert_eq!(vars["classifier.bn2.num_batches_tracked"].size(), Vec::<i64>::new());
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
    fn rejects_images_too_small_for_the_arch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = DigitCnn::new(&vs.root(), DigitCnnConfig { image_size: 8, ..config(Arch::Mnist) }).err().unwrap();
        assert!(err.to_string().contains("at least 16x16"), "{err}");
    }
}
