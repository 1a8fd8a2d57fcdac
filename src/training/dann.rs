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

use tch::{nn, Kind, Tensor};

use super::batches::{DomainData, IndexStream};
use super::classifier::constant_labels;
use super::epochs::{read_scalars, StepStats};
use super::optim::{LrSchedule, OptimizerSpec};
use super::schedule::dann_lambda;
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

/// The model, its optimizer and the two data streams.
pub struct DannTrainer {
    pub model: DannModel,
    opt: nn::Optimizer,
    spec: OptimizerSpec,
    schedule: LrSchedule,
    source: DomainData,
    target: DomainData,
    source_order: IndexStream,
    target_order: IndexStream,
    lambda_gamma: f64,
}

/// The data a [`DannTrainer`] draws from.
pub struct DannData {
    pub source: DomainData,
    pub target: DomainData,
    /// Over the source set; one pass is one epoch.
    pub source_order: IndexStream,
    /// Over the target set, with the same batch size.
    pub target_order: IndexStream,
}

impl DannTrainer {
    /// Trains every variable of `vs` (which holds `model`), with the GRL weight following
    /// [`dann_lambda`] of steepness `lambda_gamma`.
    pub fn new(
        vs: &nn::VarStore,
        model: DannModel,
        spec: OptimizerSpec,
        schedule: LrSchedule,
        lambda_gamma: f64,
        data: DannData,
    ) -> Result<Self, tch::TchError> {
        let opt = spec.build(vs)?;
        let DannData { source, target, source_order, target_order } = data;
        Ok(DannTrainer { model, opt, spec, schedule, source, target, source_order, target_order, lambda_gamma })
    }

    /// One pass over the source set.
    pub fn steps_per_epoch(&self) -> usize {
        self.source_order.batches_per_pass()
    }

    pub fn lr_at(&self, p: f64) -> f64 {
        self.schedule.at(self.spec.lr, p)
    }

    /// The GRL weight at progress `p`.
    pub fn lambda_at(&self, p: f64) -> f64 {
        dann_lambda(p, self.lambda_gamma)
    }

    /// One step on the next source and target batches at progress `p`.
    pub fn step(&mut self, p: f64) -> StepStats {
        self.opt.set_lr(self.lr_at(p));
        let source_index = self.source_order.next_batch();
        let target_index = self.target_order.next_batch();
        let batch = DannBatch {
            source: self.source.images(&source_index),
            labels: self.source.labels_at(&source_index),
            target: self.target.images(&target_index),
        };
        let lambda = self.lambda_at(p);
        dann_step(&self.model, &mut self.opt, &batch, lambda)
    }
}

/// Normalised source images with labels, and target images.
pub struct DannBatch {
    pub source: Tensor,
    pub labels: Tensor,
    pub target: Tensor,
}

/// Forward in training mode, the three losses, backward through the GRL with weight `lambda`,
/// optimizer step.
pub fn dann_step(model: &DannModel, opt: &mut nn::Optimizer, batch: &DannBatch, lambda: f64) -> StepStats {
    let (ns, nt) = (batch.source.size()[0], batch.target.size()[0]);
    let device = batch.source.device();
    // (ns + nt, c, h, w) -> (ns + nt, feature_dim): one pass for both domains.
    let features = model.cnn.features(&Tensor::cat(&[&batch.source, &batch.target], 0), true);
    // Only the labelled source images train the label predictor.
    let class_logits = model.cnn.classifier.forward_t(&features.narrow(0, 0, ns), true);
    let class_loss = class_logits.cross_entropy_for_logits(&batch.labels);
    let domain_logits = model.domain.forward_t(&reverse_gradient(&features, lambda), true);
    let domain_loss = domain_logits
        .narrow(0, 0, ns)
        .cross_entropy_for_logits(&constant_labels(SOURCE_DOMAIN, ns, device))
        + domain_logits.narrow(0, ns, nt).cross_entropy_for_logits(&constant_labels(TARGET_DOMAIN, nt, device));
    let loss = &class_loss + &domain_loss;
    opt.zero_grad();
    loss.backward();
    opt.step();
    let correct = class_logits.argmax(-1, false).eq_tensor(&batch.labels).sum(Kind::Int64);
    let values = read_scalars(&[&loss, &class_loss, &domain_loss, &correct]);
    StepStats {
        losses: vec![("train_loss", values[0]), ("class_loss", values[1]), ("domain_loss", values[2])],
        correct: values[3],
        seen: ns as f64,
    }
}
