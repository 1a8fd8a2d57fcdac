//! `train_adda`: Adversarial Discriminative Domain Adaptation (Tzeng et al., CVPR 2017,
//! <https://arxiv.org/abs/1702.05464>) in two phases:
//!
//! 1. pretraining: source encoder + classifier on the labelled source set (`pretrain_epochs`,
//!    `pretrain_lr`);
//! 2. adaptation: the target encoder starts as a copy of the source encoder; each step trains the
//!    500-500-2 MLP discriminator to tell source features (0) from target features (1), then the
//!    target encoder to fool it with inverted labels. The source encoder and the classifier stay
//!    fixed. An epoch is one pass over the target set.
//!
//! Both phases use Adam with beta1 0.5 and lr 2e-4 by default, as in the paper.
//!
//! Inputs: `source` (labelled), `target` (labels unused), optionally `val` (labelled target
//! images, scored through target encoder + classifier each epoch as `val_acc`). Per-dataset
//! normalisation and per-batch size/channel conversion as in `train_dann`.
//!
//! Outputs: `model.safetensors` with `feature.*` = the target encoder (so `evaluate` on target data
//! uses it), `source_feature.*`, `classifier.*`, `discriminator.*`; `model.json`; `history.json`
//! (pretraining epochs first, keys prefixed `pretrain_`, then the adaptation epochs numbered on:
//! disc_loss, encoder_loss, disc_acc, val_acc); `architecture.txt`. Metrics: the last adaptation epoch's values plus
//! `pretrain_train_acc`.
//!
//! ```toml
//! [stages.adda]
//! kind = "train_adda"
//! inputs = { source = "svhn.train", target = "mnistm.train", val = "mnistm.val" }
//! arch = "mnist"
//! image_size = 28
//! channels = 3
//! pretrain_epochs = 10
//! pretrain_lr = 2e-4
//! epochs = 10               # adversarial epochs
//! batch_size = 128
//! optimizer = "adam"        # or "sgd"
//! lr = 2e-4                 # adversarial phase, both networks
//! beta1 = 0.5
//! momentum = 0.9            # sgd only
//! weight_decay = 0.0
//! ```

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use tch::nn;

use super::train_classifier::defaults;
use super::{Stage, StageContext, StageOutcome, StageShape};
use crate::data::Dataset;
use crate::models::{Arch, DigitCnn, DigitCnnConfig};
use crate::training::adda::{AddaModel, AddaTrainer};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::ModelMeta;
use crate::training::classifier::ClassifierTrainer;
use crate::training::dann::DannData;
use crate::training::setup::{self, SOURCE_STREAM, TARGET_STREAM};
use crate::training::{run_epochs, DomainData, History, IndexStream, InputFormat, LoopPlan, LrSchedule, Normalisation, OptimizerKind, OptimizerSpec};

/// The `train_adda` stage kind.
pub struct TrainAddaStage;

/// Parameters of a `train_adda` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainAddaParams {
    /// Network preset: `mnist` (small CNN) or `svhn` (deeper CNN) of the DANN paper, or `dann_bn`
    /// (the PyTorch port's CNN with batch norm and dropout).
    #[serde(default = "defaults::arch")]
    pub arch: Arch,
    /// Height and width of the network input; other image sizes are resized bilinearly.
    #[serde(default = "defaults::image_size")]
    pub image_size: i64,
    /// Input channels of the network (3: greyscale is repeated; 1: colour is averaged).
    #[serde(default = "defaults::channels")]
    pub channels: i64,
    /// Passes over the source set while pretraining encoder + classifier.
    #[serde(default = "defaults::epochs")]
    pub pretrain_epochs: usize,
    /// Learning rate of the pretraining.
    #[serde(default = "default_lr")]
    pub pretrain_lr: f64,
    /// Adversarial passes over the target set.
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Images per domain per step (capped at the smaller set's size).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// `adam` (the paper) or `sgd`, for both phases.
    #[serde(default = "defaults::adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate of the adversarial phase (discriminator and target encoder).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam's beta1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_lr() -> f64 {
    2e-4
}

fn default_beta1() -> f64 {
    0.5
}

impl TrainAddaParams {
    fn optimizer_spec(&self, lr: f64) -> OptimizerSpec {
        OptimizerSpec { kind: self.optimizer, lr, momentum: self.momentum, beta1: self.beta1, weight_decay: self.weight_decay }
    }
}

/// The datasets and how they are fed.
struct Inputs {
    source: Dataset,
    target: Dataset,
    val: Option<DomainData>,
    source_norm: Normalisation,
    target_norm: Normalisation,
    format: InputFormat,
    batch: usize,
}

impl Stage for TrainAddaStage {
    type Params = TrainAddaParams;
    const KIND: &'static str = "train_adda";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Adversarial discriminative domain adaptation (ADDA): pretrain on source, adapt a target encoder";

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape { required_inputs: vec!["source".into(), "target".into()], uses_device: true, ..Default::default() }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let inputs = load_inputs(&params, ctx)?;
        let config = DigitCnnConfig {
            arch: params.arch,
            channels: params.channels,
            image_size: params.image_size,
            classes: inputs.source.classes.len() as i64,
        };
        let source_vs = nn::VarStore::new(ctx.device());
        let source_model = DigitCnn::new(&source_vs.root(), config)?;
        let (source_model, pretrain) = pretrain(&params, ctx, &inputs, &source_vs, source_model)?;
        let model = AddaModel::from_source(source_vs, source_model, ctx.device())?;
        let (model, adapt) = adapt(&params, ctx, &inputs, model)?;

        let meta = ModelMeta {
            method: "adda".into(),
            model: config,
            class_names: inputs.source.classes.clone(),
            normalisation: vec![inputs.source_norm.clone(), inputs.target_norm.clone()],
            parts: ["feature", "source_feature", "classifier", "discriminator"].map(String::from).to_vec(),
        };
        let mut history = History::default();
        history.extend_prefixed(&pretrain, "pretrain_");
        history.extend_prefixed(&adapt, "");
        let stores = [&model.source_vs, &model.target_vs, &model.discriminator_vs];
        setup::write_model_dir(ctx.out_dir(), &model.named_variables(), &meta, &model.tree(), &stores, &history)?;
        let headline = format!("{} {} -> {}", Self::KIND, inputs.source.domain, inputs.target.domain);
        let mut outcome = setup::outcome(&adapt, &headline, &["disc_acc", "val_acc"]);
        if let Some(acc) = pretrain.last("train_acc") {
            outcome.metrics.insert("pretrain_train_acc".into(), acc);
        }
        Ok(outcome)
    }
}

fn load_inputs(params: &TrainAddaParams, ctx: &StageContext) -> anyhow::Result<Inputs> {
    let source = setup::load_input(ctx, "source")?;
    setup::require_labels(&source, "source")?;
    let target = setup::load_input(ctx, "target")?;
    let format = InputFormat { channels: params.channels, image_size: params.image_size };
    let (source_norm, target_norm) = (Normalisation::of(&source), Normalisation::of(&target));
    let val = setup::load_optional(ctx, "val")?;
    let val = setup::validation_data(val.as_ref(), &target_norm, format, ctx)?;
    let batch = effective_batch(params.batch_size, &[source.len(), target.len()]);
    ctx.log(format!("source {}; target {}; batch {batch} per domain", source.summary(), target.summary()));
    Ok(Inputs { source, target, val, source_norm, target_norm, format, batch })
}

/// Phase 1: source encoder + classifier on the source set.
fn pretrain(
    params: &TrainAddaParams,
    ctx: &StageContext,
    inputs: &Inputs,
    vs: &nn::VarStore,
    model: DigitCnn,
) -> anyhow::Result<(DigitCnn, History)> {
    let device = ctx.device();
    let data = DomainData::new(&inputs.source, &inputs.source_norm, inputs.format, device)?;
    let order = IndexStream::new(inputs.source.len(), inputs.batch, stream_seed(ctx.seed(), SOURCE_STREAM), device);
    let spec = params.optimizer_spec(params.pretrain_lr);
    let trainer = ClassifierTrainer::new(vs, model, spec, LrSchedule::Constant, data, order)?;
    let plan = LoopPlan {
        phase: "pretrain".into(),
        epochs: params.pretrain_epochs,
        steps_per_epoch: trainer.steps_per_epoch(),
        lr_param: "pretrain_lr",
    };
    let trainer = RefCell::new(trainer);
    let history = run_epochs(
        ctx,
        &plan,
        |at| Ok(trainer.borrow_mut().step(at.p)),
        |_| Ok(setup::val_accuracy(inputs.val.as_ref(), |x| trainer.borrow().model.logits(x, false))),
    )?;
    Ok((trainer.into_inner().into_model(), history))
}

/// Phase 2: discriminator against target encoder.
fn adapt(
    params: &TrainAddaParams,
    ctx: &StageContext,
    inputs: &Inputs,
    model: AddaModel,
) -> anyhow::Result<(AddaModel, History)> {
    let device = ctx.device();
    // Fresh streams, distinct from the pretraining's, so the phases do not share an order.
    let data = DannData {
        source: DomainData::new(&inputs.source, &inputs.source_norm, inputs.format, device)?,
        target: DomainData::new(&inputs.target, &inputs.target_norm, inputs.format, device)?,
        source_order: IndexStream::new(inputs.source.len(), inputs.batch, stream_seed(ctx.seed(), SOURCE_STREAM + 10), device),
        target_order: IndexStream::new(inputs.target.len(), inputs.batch, stream_seed(ctx.seed(), TARGET_STREAM), device),
    };
    let trainer = AddaTrainer::new(model, params.optimizer_spec(params.lr), data)?;
    let plan = LoopPlan { phase: "adda".into(), epochs: params.epochs, steps_per_epoch: trainer.steps_per_epoch(), lr_param: "lr" };
    let trainer = RefCell::new(trainer);
    let history = run_epochs(
        ctx,
        &plan,
        |_| Ok(trainer.borrow_mut().step()),
        |_| Ok(setup::val_accuracy(inputs.val.as_ref(), |x| trainer.borrow().model.target_logits(x))),
    )?;
    Ok((trainer.into_inner().model, history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::train_classifier::tests::{context, input, tempdir};
    use crate::training::classifier::tests::banded;

    #[test]
    fn params_default_to_the_paper() {
        let p: TrainAddaParams = toml::from_str("").unwrap();
        assert_eq!((p.optimizer, p.lr, p.beta1, p.batch_size), (OptimizerKind::Adam, 2e-4, 0.5, 128));
    }

    #[test]
    fn pretrains_then_adapts_end_to_end() {
        let (_guard, root) = tempdir();
        let source = banded(48, 3, 28, 1);
        let target = banded(48, 1, 16, 2);
        let inputs = vec![input(&root, "source", &source), input(&root, "target", &target), input(&root, "val", &target)];
        let mut ctx = context(&root, inputs);
        let p: TrainAddaParams = toml::from_str("epochs = 1\npretrain_epochs = 2\nbatch_size = 16").unwrap();
        let outcome = TrainAddaStage::run(p, &mut ctx).unwrap();
        for key in ["disc_loss", "encoder_loss", "disc_acc", "val_acc", "pretrain_train_acc"] {
            assert!(outcome.metrics.contains_key(key), "{key} missing: {outcome:?}");
        }
        let history = std::fs::read_to_string(root.join("out/history.json")).unwrap();
        assert!(history.contains("pretrain_train_loss"), "{history}");
    }
}
