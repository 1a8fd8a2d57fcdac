//! One DANN training step (Ganin et al. 2016): a source batch and an equally sized target batch
//! go through the feature extractor together; the label head sees the source half, the domain
//! head sees both halves through the gradient reversal layer.
//!
//! One joint pass (rather than one pass per domain, as the popular PyTorch port does) matters
//! for batch norm (`dann_bn`): training then normalises both domains with the mixed batch's
//! statistics, which are what the running statistics average and what evaluation uses. With one
//! pass per domain, training normalises each domain with its own statistics but evaluation with
//! the mixture, and target accuracy drops sharply.
//!
//! loss = CE(class, source) + CE(domain, source = 0) + CE(domain, target = 1), with the GRL weight
//! `lambda_p` and the learning rate following the paper's schedules in the progress `p`.

use std::collections::HashMap;

use tch::{nn, Kind, Tensor};

use super::batches::{DomainData, IndexStream};
use super::classifier::constant_labels;
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::optimizer::{Optimizer, OptimizerSettings};
use super::schedule::dann_lambda;
use super::setup::val_accuracy;
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::models::discriminator::{SOURCE_DOMAIN, TARGET_DOMAIN};
use crate::models::summary::ModuleTree;
use crate::models::{reverse_gradient, DigitCnn, DigitCnnConfig, DomainClassifier, ModelError};

/// Feature extractor, label predictor and domain classifier (`feature`, `classifier`, `domain`).
pub struct DannModel {
    pub cnn: DigitCnn,
    pub domain: DomainClassifier,
}

impl DannModel {
    pub fn new(root: &nn::Path, config: DigitCnnConfig) -> Result<Self, ModelError> {
        let cnn = DigitCnn::new(root, config)?;
        let domain = DomainClassifier::dann(&(root / "domain"), config.arch, cnn.feature_dim())?;
        Ok(DannModel { cnn, domain })
    }

    /// The model as PyTorch would print it.
    pub fn tree(&self) -> ModuleTree {
        let mut parts = self.cnn.tree_parts();
        parts.push(("domain".into(), self.domain.tree()));
        ModuleTree::node("DANN", parts)
    }
}

/// The data a [`DannTraining`] draws from.
pub struct DannData {
    pub source: DomainData,
    pub target: DomainData,
    /// Over the source set; one pass is one epoch.
    pub source_order: IndexStream,
    /// Over the target set, with the same batch size.
    pub target_order: IndexStream,
}

/// The model, its optimizer, the two data streams and the GRL schedule.
pub struct DannTraining {
    pub vs: nn::VarStore,
    pub model: DannModel,
    optimizer: Optimizer,
    data: DannData,
    val: Option<DomainData>,
    /// Steepness of the GRL weight schedule [`dann_lambda`].
    lambda_gamma: f64,
}

impl DannTraining {
    /// Trains every variable of `vs` (which holds `model`).
    pub fn new(
        vs: nn::VarStore,
        model: DannModel,
        settings: OptimizerSettings,
        lambda_gamma: f64,
        data: DannData,
        val: Option<DomainData>,
    ) -> Self {
        let optimizer = Optimizer::new(settings, &[&vs]);
        DannTraining {
            vs,
            model,
            optimizer,
            data,
            val,
            lambda_gamma,
        }
    }
}

impl TrainingMethod for DannTraining {
    /// One pass over the source set.
    fn steps_per_epoch(&self) -> usize {
        self.data.source_order.batches_per_pass()
    }

    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        let source_index = self.data.source_order.next_batch();
        let target_index = self.data.target_order.next_batch();
        let batch = DannBatch {
            source: self.data.source.images(&source_index),
            labels: self.data.source.labels_at(&source_index),
            target: self.data.target.images(&target_index),
        };
        let lambda = dann_lambda(at.p, self.lambda_gamma);
        dann_step(&self.model, &mut self.optimizer, &batch, lambda, at.p)
    }

    fn end_epoch(&mut self, end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        let mut record = vec![
            ("lr", self.optimizer.lr()),
            ("lambda", dann_lambda(end.p, self.lambda_gamma)),
        ];
        record.extend(val_accuracy(self.val.as_ref(), |x| {
            self.model.cnn.logits(x, false)
        }));
        Ok(record)
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("model", &self.vs);
        self.optimizer.save_state("optimizer", state);
        self.data.source_order.save_state("source_order", state);
        self.data.target_order.save_state("target_order", state);
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.vs, "model", state)?;
        self.optimizer.load_state("optimizer", state)?;
        self.data.source_order.load_state("source_order", state)?;
        self.data.target_order.load_state("target_order", state)
    }
}

/// Normalised source images with labels, and target images.
pub struct DannBatch {
    pub source: Tensor,
    pub labels: Tensor,
    pub target: Tensor,
}

/// Forward in training mode, the three losses, backward through the GRL with weight `lambda`,
/// optimizer step at progress `p`.
pub fn dann_step(
    model: &DannModel,
    optimizer: &mut Optimizer,
    batch: &DannBatch,
    lambda: f64,
    p: f64,
) -> anyhow::Result<Scalars> {
    let (ns, nt) = (batch.source.size()[0], batch.target.size()[0]);
    let device = batch.source.device();
    // (ns + nt, c, h, w) -> (ns + nt, feature_dim): one pass for both domains.
    let features = model
        .cnn
        .features(&Tensor::cat(&[&batch.source, &batch.target], 0), true);
    // Only the labelled source images train the label predictor.
    let class_logits = model
        .cnn
        .classifier
        .forward_t(&features.narrow(0, 0, ns), true);
    let class_loss = class_logits.cross_entropy_for_logits(&batch.labels);
    let domain_logits = model
        .domain
        .forward_t(&reverse_gradient(&features, lambda), true);
    let domain_loss = domain_logits
        .narrow(0, 0, ns)
        .cross_entropy_for_logits(&constant_labels(SOURCE_DOMAIN, ns, device))
        + domain_logits
            .narrow(0, ns, nt)
            .cross_entropy_for_logits(&constant_labels(TARGET_DOMAIN, nt, device));
    let loss = &class_loss + &domain_loss;
    optimizer.backward_step(&loss, p)?;
    let accuracy = class_logits
        .argmax(-1, false)
        .eq_tensor(&batch.labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    Ok(named_scalars(
        &["train_loss", "class_loss", "domain_loss", "train_acc"],
        &[&loss, &class_loss, &domain_loss, &accuracy],
    ))
}
