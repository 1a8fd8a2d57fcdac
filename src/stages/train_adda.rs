//! `train_adda`: Adversarial Discriminative Domain Adaptation (Tzeng et al., CVPR 2017,
//! <https://arxiv.org/abs/1702.05464>) in two phases:
//!
//! 1. pretraining: source encoder + classifier on the labelled source set (`pretrain_epochs`,
//!    `pretrain_optimizer`);
//! 2. adaptation: the target encoder starts as a copy of the source encoder; each step trains the
//!    500-500-2 MLP discriminator to tell source features (0) from target features (1), then the
//!    target encoder to fool it with inverted labels (`epochs`, `optimizer`). The source encoder
//!    and the classifier stay fixed. An epoch is one pass over the target set.
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
//! disc_loss, encoder_loss, disc_acc, val_acc); `architecture.txt`. Metrics: the last adaptation
//! epoch's values plus `pretrain_train_acc`.

use serde::{Deserialize, Serialize};
use tch::nn;

use crate::accel::Precision;
use crate::data::Dataset;
use crate::models::{DigitCnn, DigitCnnParams, ModelFamily};
use crate::stage::{
    fill_missing, InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape,
};
use crate::training::adda::{AddaModel, AddaTraining};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::ModelMeta;
use crate::training::classifier::ClassifierTraining;
use crate::training::setup::{self, SOURCE_STREAM, TARGET_STREAM};
use crate::training::AdaptationData;
use crate::training::{
    train, DeviceDataset, History, IndexStream, InputFormat, LoopPlan, Normalisation,
    OptimizerSettings,
};

/// The `train_adda` stage kind.
pub struct TrainAddaStage;

/// Parameters of a `train_adda` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainAddaParams {
    /// The network: `arch`, `image_size`, `channels`.
    #[serde(default)]
    pub model: DigitCnnParams,
    /// Passes over the source set while pretraining encoder + classifier.
    #[serde(default = "setup::default_epochs")]
    pub pretrain_epochs: usize,
    /// The pretraining's optimizer (default: Adam 2e-4, betas (0.5, 0.999)).
    pub pretrain_optimizer: OptimizerSettings,
    /// Adversarial passes over the target set.
    #[serde(default = "setup::default_epochs")]
    pub epochs: usize,
    /// Images per domain per step (capped at the smaller set's size).
    #[serde(default = "setup::default_batch_size")]
    pub batch_size: usize,
    /// `fp32`, or `bf16`: both phases' steps under bf16 autocast on fp32 master weights (faster
    /// where the convolutions are large enough to gain from bf16; compare with `make bench`).
    #[serde(default)]
    pub precision: Precision,
    /// The target encoder's optimizer in the adversarial phase (default: Adam 2e-4, betas
    /// (0.5, 0.999)).
    pub optimizer: OptimizerSettings,
    /// The discriminator's optimizer in the adversarial phase (default: `optimizer`, as in the
    /// paper).
    pub discriminator_optimizer: OptimizerSettings,
}

/// The paper's optimizer for both phases.
fn paper_optimizer() -> OptimizerSettings {
    OptimizerSettings::adam(2e-4, [0.5, 0.999])
}

/// The datasets and how they are fed.
struct AddaInputs {
    source: Dataset,
    target: Dataset,
    source_norm: Normalisation,
    target_norm: Normalisation,
    format: InputFormat,
    batch: usize,
}

impl Stage for TrainAddaStage {
    type Params = TrainAddaParams;
    const KIND: &'static str = "train_adda";
    const VERSION: u32 = 4;
    const ABOUT: &'static str = "Adversarial discriminative domain adaptation (ADDA): pretrain on source, adapt a target encoder";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required("source", "the labelled source dataset"),
        InputSpec::required("target", "the target dataset (labels unused)"),
        InputSpec::optional("val", "labelled target images scored per epoch"),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.svhn]
kind = "synthetic"
domain = "svhn"
n_train = 200
n_val = 100

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.adda]
kind = "train_adda"
inputs = { source = "svhn.train", target = "mnistm.train", val = "mnistm.val" }
model = { arch = "mnist", image_size = 28, channels = 3 }
pretrain_epochs = 10
epochs = 10               # adversarial epochs
batch_size = 128
pretrain_optimizer = { kind = "adam", lr = 2e-4, betas = [0.5, 0.999] }
optimizer = { kind = "adam", lr = 2e-4, betas = [0.5, 0.999] }
discriminator_optimizer = { kind = "adam", lr = 2e-4, betas = [0.5, 0.999] }
"#;

    fn defaults(written: &toml::Table) -> toml::Table {
        let mut table = setup::optimizer_defaults("optimizer", paper_optimizer());
        table.extend(setup::optimizer_defaults(
            "pretrain_optimizer",
            paper_optimizer(),
        ));
        // The discriminator follows the target encoder's optimizer as written, key by key.
        let mut discriminator = match written.get("optimizer") {
            Some(toml::Value::Table(optimizer)) => optimizer.clone(),
            _ => toml::Table::new(),
        };
        fill_missing(&mut discriminator, paper_optimizer().to_table());
        table.insert(
            "discriminator_optimizer".into(),
            toml::Value::Table(discriminator),
        );
        table
    }

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        setup::validate_loop(&params.model, params.epochs, params.batch_size)?;
        ParamError::check(params.pretrain_epochs >= 1, "pretrain_epochs", "at least 1")?;
        setup::validate_optimizer("pretrain_optimizer", &params.pretrain_optimizer)?;
        setup::validate_optimizer("optimizer", &params.optimizer)?;
        setup::validate_optimizer("discriminator_optimizer", &params.discriminator_optimizer)
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let inputs = load_inputs(&params, ctx)?;
        let val = setup::load_optional(ctx, "val")?;
        let val_data =
            || setup::validation_data(val.as_ref(), &inputs.target_norm, inputs.format, ctx);
        let config = params.model.config(inputs.source.classes.len() as i64);
        let device = ctx.device();

        // Phase 1: source encoder + classifier on the source set.
        let source_vs = nn::VarStore::new(device);
        let source_model = DigitCnn::new(&source_vs.root(), config)?;
        let data = DeviceDataset::new(&inputs.source, &inputs.source_norm, inputs.format, device)?;
        let order = IndexStream::new(
            inputs.source.len(),
            inputs.batch,
            stream_seed(ctx.seed(), SOURCE_STREAM),
            device,
        );
        let mut pretraining = ClassifierTraining::new(
            source_vs,
            source_model,
            params.pretrain_optimizer,
            data,
            order,
            val_data()?,
        );
        let pretrain_plan =
            LoopPlan::new("pretrain", params.pretrain_epochs, "pretrain_optimizer.lr")
                .precision(params.precision);
        let pretrain = train(ctx, &pretrain_plan, &mut pretraining)?;

        // Phase 2: discriminator against target encoder, with fresh streams distinct from the
        // pretraining's so the phases do not share an order.
        let model = AddaModel::from_source(pretraining.vs, pretraining.model, device)?;
        let data = AdaptationData {
            source: DeviceDataset::new(&inputs.source, &inputs.source_norm, inputs.format, device)?,
            target: DeviceDataset::new(&inputs.target, &inputs.target_norm, inputs.format, device)?,
            source_order: IndexStream::new(
                inputs.source.len(),
                inputs.batch,
                stream_seed(ctx.seed(), SOURCE_STREAM + 10),
                device,
            ),
            target_order: IndexStream::new(
                inputs.target.len(),
                inputs.batch,
                stream_seed(ctx.seed(), TARGET_STREAM),
                device,
            ),
        };
        let mut adaptation = AddaTraining::new(
            model,
            params.optimizer,
            params.discriminator_optimizer,
            data,
            val_data()?,
        );
        let adapt = train(
            ctx,
            &LoopPlan::new("adda", params.epochs, "optimizer.lr").precision(params.precision),
            &mut adaptation,
        )?;

        let meta = ModelMeta {
            method: "adda".into(),
            model: ModelFamily::DigitCnn(config),
            class_names: inputs.source.classes.clone(),
            normalisation: vec![inputs.source_norm.clone(), inputs.target_norm.clone()],
            parts: ["feature", "source_feature", "classifier", "discriminator"]
                .map(String::from)
                .to_vec(),
        };
        let mut history = History::default();
        history.extend_prefixed(&pretrain, "pretrain_");
        history.extend_prefixed(&adapt, "");
        let model = &adaptation.model;
        let stores = [&model.source_vs, &model.target_vs, &model.discriminator_vs];
        setup::write_model_dir(
            ctx.out_dir(),
            &model.named_variables(),
            &meta,
            &model.tree(),
            &stores,
            &history,
        )?;
        let headline = format!(
            "{} {} -> {}",
            Self::KIND,
            inputs.source.domain,
            inputs.target.domain
        );
        let mut outcome = setup::outcome(&adapt, &headline, &["disc_acc", "val_acc"]);
        if let Some(acc) = pretrain.last("train_acc") {
            outcome.metrics.insert("pretrain_train_acc".into(), acc);
        }
        Ok(outcome)
    }
}

fn load_inputs(params: &TrainAddaParams, ctx: &StageContext) -> anyhow::Result<AddaInputs> {
    let source = setup::load_input(ctx, "source")?;
    setup::require_labels(&source, "source")?;
    let target = setup::load_input(ctx, "target")?;
    let (source_norm, target_norm) = (Normalisation::of(&source), Normalisation::of(&target));
    let batch = effective_batch(params.batch_size, &[source.len(), target.len()]);
    ctx.log(format!(
        "source {}; target {}; batch {batch} per domain",
        source.summary(),
        target.summary()
    ));
    Ok(AddaInputs {
        source,
        target,
        source_norm,
        target_norm,
        format: setup::input_format(&params.model),
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, params, tempdir};
    use crate::training::OptimizerKind;

    #[test]
    fn params_default_to_the_paper() {
        let p = params::<TrainAddaStage>("").unwrap();
        let o = p.optimizer;
        assert_eq!(
            (o.kind, o.lr, o.betas[0], p.batch_size),
            (OptimizerKind::Adam, 2e-4, 0.5, 128)
        );
        assert_eq!(p.pretrain_optimizer, o);
        assert_eq!(p.discriminator_optimizer, o);
    }

    #[test]
    fn discriminator_optimizer_follows_the_written_optimizer() {
        let p = params::<TrainAddaStage>("optimizer = { lr = 1e-3 }").unwrap();
        assert_eq!(p.discriminator_optimizer.lr, 1e-3);
        assert_eq!(p.discriminator_optimizer.betas, [0.5, 0.999]);
        let p = params::<TrainAddaStage>(
            "optimizer = { lr = 1e-3 }\ndiscriminator_optimizer = { lr = 1e-5 }",
        )
        .unwrap();
        assert_eq!((p.optimizer.lr, p.discriminator_optimizer.lr), (1e-3, 1e-5));
    }

    #[test]
    fn pretrains_then_adapts_end_to_end() {
        let (_guard, root) = tempdir();
        let source = banded(48, 3, 28, 1);
        let target = banded(48, 1, 16, 2);
        let inputs = vec![
            input(&root, "source", &source),
            input(&root, "target", &target),
            input(&root, "val", &target),
        ];
        let mut ctx = context(&root, inputs);
        let p =
            params::<TrainAddaStage>("epochs = 1\npretrain_epochs = 2\nbatch_size = 16").unwrap();
        let outcome = TrainAddaStage::run(p, &mut ctx).unwrap();
        for key in [
            "disc_loss",
            "encoder_loss",
            "disc_acc",
            "val_acc",
            "pretrain_train_acc",
        ] {
            assert!(
                outcome.metrics.contains_key(key),
                "{key} missing: {outcome:?}"
            );
        }
        let history = std::fs::read_to_string(root.join("out/history.json")).unwrap();
        assert!(history.contains("pretrain_train_loss"), "{history}");
    }
}
