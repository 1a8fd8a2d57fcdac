//! Domain classifiers on top of the feature extractor: DANN's domain head (sized per
//! architecture, fed through the gradient reversal layer) and ADDA's 500-500-2 MLP discriminator
//! (Tzeng et al., "Adversarial Discriminative Domain Adaptation", CVPR 2017,
//! <https://arxiv.org/abs/1702.05464>). Both output 2 logits: domain 0 = source, 1 = target.

use tch::{nn, Tensor};

use super::digit_cnn::{mlp, Arch};
use super::layers::{Activation, ModelError, Stack};
use super::summary::ModuleTree;

/// Hidden widths of ADDA's discriminator.
const ADDA_HIDDEN: [i64; 2] = [500, 500];

/// Label of source-domain samples in the domain losses.
pub const SOURCE_DOMAIN: i64 = 0;
/// Label of target-domain samples in the domain losses.
pub const TARGET_DOMAIN: i64 = 1;

/// A 2-way MLP over feature vectors.
pub struct DomainClassifier {
    pub mlp: Stack,
}

impl DomainClassifier {
    /// DANN's domain classifier for `arch` (100-2, 1024-1024-2, or 100-BN-2 for `dann_bn`).
    pub fn dann(path: &nn::Path, arch: Arch, feature_dim: i64) -> Result<Self, ModelError> {
        Ok(DomainClassifier {
            mlp: Stack::new(path, Activation::Vector(feature_dim), &arch.domain_specs())?,
        })
    }

    /// ADDA's discriminator, 500-500-2.
    pub fn adda(path: &nn::Path, feature_dim: i64) -> Result<Self, ModelError> {
        Ok(DomainClassifier {
            mlp: mlp(path, feature_dim, &ADDA_HIDDEN, 2)?,
        })
    }

    /// `[b, feature_dim]` -> `[b, 2]` domain logits, in training or eval mode.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        self.mlp.forward_t(features, train)
    }

    pub fn tree(&self) -> ModuleTree {
        self.mlp.tree()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn adda_discriminator_is_500_500_2() {
        let vs = nn::VarStore::new(Device::Cpu);
        let disc = DomainClassifier::adda(&(vs.root() / "discriminator"), 768).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["discriminator.fc1.weight"].size(), [500, 768]);
        assert_eq!(vars["discriminator.fc2.weight"].size(), [500, 500]);
        assert_eq!(vars["discriminator.fc3.weight"].size(), [2, 500]);
        let out = disc.forward_t(&Tensor::zeros([3, 768], (Kind::Float, Device::Cpu)), true);
        assert_eq!(out.size(), [3, 2]);
    }
}
