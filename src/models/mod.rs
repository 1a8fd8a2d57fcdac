//! Neural network models built on tch, one file per family, all written in the block
//! vocabulary of [`blocks`] (straight stacks through [`layers::Stack`]). Parameter names match
//! PyTorch `state_dict` keys (`feature.conv1.weight`), so checkpoints load with
//! `safetensors.torch.load_file`, [`weights`] loads PyTorch files into them, and [`summary`]
//! prints them the way PyTorch's `print(model)` does.

pub mod blocks;
pub mod context_unet;
pub mod dcgan;
pub mod digit_cnn;
pub mod domain_classifier;
pub mod face_unet;
pub mod grl;
pub mod inception;
pub mod layers;
pub mod summary;
pub mod weights;

use serde::{Deserialize, Serialize};

pub use context_unet::{ContextUnet, ContextUnetConfig};
pub use dcgan::{Discriminator, GanConfig, GanLoss, GanPreset, Generator};
pub use digit_cnn::{Arch, DigitCnn, DigitCnnConfig, DigitCnnParams};
pub use domain_classifier::DomainClassifier;
pub use face_unet::{FaceUnet, FaceUnetConfig};
pub use grl::reverse_gradient;
pub use layers::{Activation, LayerSpec, ModelError, Stack, StackOptions};

/// Which model a checkpoint holds, with the hyper-parameters that rebuild it: the tagged
/// description `model.json` carries, so any stage can load any family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelFamily {
    /// A digit classifier (feature extractor + label predictor) of [`digit_cnn`].
    DigitCnn(DigitCnnConfig),
    /// A GAN's generator and discriminator of [`dcgan`] (DCGAN, WGAN-GP, ACGAN).
    Gan(GanConfig),
    /// A class-conditional noise-prediction UNet of [`context_unet`] (a DDPM).
    ContextUnet(ContextUnetConfig),
    /// The course's face UNet of [`face_unet`].
    FaceUnet(FaceUnetConfig),
}

impl ModelFamily {
    /// The family's name as `model.json` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ModelFamily::DigitCnn(_) => "digit_cnn",
            ModelFamily::Gan(_) => "gan",
            ModelFamily::ContextUnet(_) => "context_unet",
            ModelFamily::FaceUnet(_) => "face_unet",
        }
    }
}
