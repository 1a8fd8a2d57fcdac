//! ADDA's adversarial phase (Tzeng et al. 2017): the pretrained source encoder is frozen, a
//! target encoder starts as its copy, and a 500-500-2 discriminator learns to tell source
//! features (domain 0) from target features (domain 1) while the target encoder learns to fool
//! it with inverted labels (its features labelled as source). The label classifier is the source
//! one, unchanged.

use std::collections::HashMap;

use tch::{nn, Device, Kind, Tensor};

use super::batches::AdaptationData;
use super::batches::DeviceDataset;
use super::classifier::constant_labels;
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::optimizer::{Optimizer, OptimizerSettings};
use super::setup::val_accuracy;
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::models::digit_cnn::feature_extractor;
use crate::models::domain_classifier::{SOURCE_DOMAIN, TARGET_DOMAIN};
use crate::models::summary::ModuleTree;
use crate::models::{DigitCnn, DomainClassifier, ModelError, Stack};

#[derive(Debug, thiserror::Error)]
pub enum AddaError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot set up ADDA training: {0}")]
    Torch(#[from] tch::TchError),
}

/// The three networks of ADDA, each in its own var store so each optimizer sees only its own.
pub struct AddaModel {
    pub source_vs: nn::VarStore,
    pub source: DigitCnn,
    pub target_vs: nn::VarStore,
    pub target_feature: Stack,
    pub discriminator_vs: nn::VarStore,
    pub discriminator: DomainClassifier,
}

impl AddaModel {
    /// Adds a target encoder initialised from `source`'s feature extractor and a fresh
    /// discriminator (`discriminator.*`) on `device`.
    pub fn from_source(
        source_vs: nn::VarStore,
        source: DigitCnn,
        device: Device,
    ) -> Result<Self, AddaError> {
        let mut target_vs = nn::VarStore::new(device);
        let target_feature = feature_extractor(&(target_vs.root() / "feature"), &source.config)?;
        target_vs.copy(&source_vs)?;
        let discriminator_vs = nn::VarStore::new(device);
        let discriminator = DomainClassifier::adda(
            &(discriminator_vs.root() / "discriminator"),
            source.feature_dim(),
        )?;
        Ok(AddaModel {
            source_vs,
            source,
            target_vs,
            target_feature,
            discriminator_vs,
            discriminator,
        })
    }

    /// Target-domain logits in eval mode: target encoder, then the source classifier.
    pub fn target_logits(&self, xs: &Tensor) -> Tensor {
        self.source
            .classifier
            .forward_t(&self.target_feature.forward_t(xs, false), false)
    }

    /// The weights to save: the target encoder as `feature` (so `evaluate` uses it), the source
    /// encoder as `source_feature`, the classifier and the discriminator.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let renamed_source = self.source_vs.variables().into_iter().map(|(name, t)| {
            match name.strip_prefix("feature.") {
                Some(rest) => (format!("{}.{rest}", super::checkpoint::SOURCE_FEATURE), t),
                None => (name, t),
            }
        });
        let mut all: Vec<(String, Tensor)> = renamed_source
            .chain(self.target_vs.variables())
            .chain(self.discriminator_vs.variables())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "ADDA",
            vec![
                (
                    super::checkpoint::SOURCE_FEATURE.into(),
                    self.source.feature.tree(),
                ),
                ("feature".into(), self.target_feature.tree()),
                ("classifier".into(), self.source.classifier.tree()),
                ("discriminator".into(), self.discriminator.tree()),
            ],
        )
    }
}

/// The adversarial phase: model, two optimizers, two data streams.
pub struct AddaTraining {
    pub model: AddaModel,
    target_optimizer: Optimizer,
    discriminator_optimizer: Optimizer,
    data: AdaptationData,
    val: Option<DeviceDataset>,
}

impl AddaTraining {
    /// The paper gives both optimizers the same settings. A separate `discriminator` setting
    /// can hold back a discriminator that wins outright and collapses the target encoder onto
    /// one class; with the `mnist` CNN's encoder a smaller lr did not prevent that, the 500-d
    /// encoder of `adda_lenet` did (fidelity/results.md, "ADDA").
    pub fn new(
        model: AddaModel,
        target: OptimizerSettings,
        discriminator: OptimizerSettings,
        data: AdaptationData,
        val: Option<DeviceDataset>,
    ) -> Self {
        let target_optimizer = Optimizer::new(target, &[&model.target_vs]);
        let discriminator_optimizer = Optimizer::new(discriminator, &[&model.discriminator_vs]);
        AddaTraining {
            model,
            target_optimizer,
            discriminator_optimizer,
            data,
            val,
        }
    }
}

impl TrainingMethod for AddaTraining {
    /// One pass over the target set.
    fn steps_per_epoch(&self) -> usize {
        self.data.target_order.batches_per_pass()
    }

    /// A discriminator step, then a target-encoder step, on the next batches.
    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        let source_index = self.data.source_order.next_batch();
        let target_index = self.data.target_order.next_batch();
        let xs = self.data.source.images(&source_index);
        let xt = self.data.target.images(&target_index);
        let (ns, nt) = (xs.size()[0], xt.size()[0]);
        let device = xs.device();
        let m = &self.model;
        // The frozen source encoder runs in eval mode (its batch-norm statistics stay as
        // pretrained); the target encoder and the discriminator train.
        let source_features = tch::no_grad(|| m.source.features(&xs, false));
        let target_features = m.target_feature.forward_t(&xt, true);

        let source_labels = constant_labels(SOURCE_DOMAIN, ns, device);
        let d_source = m.discriminator.forward_t(&source_features, true);
        let d_target = m.discriminator.forward_t(&target_features.detach(), true);
        let disc_loss = d_source.cross_entropy_for_logits(&source_labels)
            + d_target.cross_entropy_for_logits(&constant_labels(TARGET_DOMAIN, nt, device));
        self.discriminator_optimizer
            .backward_step(&disc_loss, at.p)?;

        // Inverted labels: the target encoder is rewarded when its features pass as source.
        let fooled = m.discriminator.forward_t(&target_features, true);
        let encoder_loss =
            fooled.cross_entropy_for_logits(&constant_labels(SOURCE_DOMAIN, nt, device));
        self.target_optimizer.backward_step(&encoder_loss, at.p)?;

        let disc_correct = d_source
            .argmax(-1, false)
            .eq(SOURCE_DOMAIN)
            .sum(Kind::Float)
            + d_target
                .argmax(-1, false)
                .eq(TARGET_DOMAIN)
                .sum(Kind::Float);
        let disc_acc = disc_correct / (ns + nt) as f64;
        Ok(named_scalars(
            &["disc_loss", "encoder_loss", "disc_acc"],
            &[&disc_loss, &encoder_loss, &disc_acc],
        )?)
    }

    fn end_epoch(&mut self, _end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        Ok(val_accuracy(self.val.as_ref(), |x| {
            self.model.target_logits(x)
        }))
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("target", &self.model.target_vs);
        state.add_store("discriminator", &self.model.discriminator_vs);
        self.target_optimizer.save_state("target_optimizer", state);
        self.discriminator_optimizer
            .save_state("discriminator_optimizer", state);
        self.data.source_order.save_state("source_order", state);
        self.data.target_order.save_state("target_order", state);
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.model.target_vs, "target", state)?;
        restore_store(&self.model.discriminator_vs, "discriminator", state)?;
        self.target_optimizer
            .load_state("target_optimizer", state)?;
        self.discriminator_optimizer
            .load_state("discriminator_optimizer", state)?;
        self.data.source_order.load_state("source_order", state)?;
        self.data.target_order.load_state("target_order", state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, DigitCnnConfig};

    #[test]
    fn target_encoder_starts_equal_to_the_source_encoder() {
        tch::manual_seed(3);
        let source_vs = nn::VarStore::new(Device::Cpu);
        let config = DigitCnnConfig {
            arch: Arch::Mnist,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let source = DigitCnn::new(&source_vs.root(), config).unwrap();
        let model = AddaModel::from_source(source_vs, source, Device::Cpu).unwrap();
        let source_vars = model.source_vs.variables();
        let target_vars = model.target_vs.variables();
        assert_eq!(target_vars.len(), 4);
        for (name, value) in &target_vars {
            assert!(value.equal(&source_vars[name]), "{name} differs");
        }
        let x = Tensor::randn([2, 3, 28, 28], (Kind::Float, Device::Cpu));
        assert!(model
            .target_feature
            .forward_t(&x, false)
            .equal(&model.source.features(&x, false)));
        let names: Vec<String> = model
            .named_variables()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"source_feature.conv1.weight".to_owned()));
        assert!(names.contains(&"discriminator.fc3.bias".to_owned()));
    }
}
