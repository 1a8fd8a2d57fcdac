//! `train_classifier`: trains a digit CNN (feature extractor + label predictor) on one labelled
//! domain. Trained on the source domain it gives the source-only lower bound of domain
//! adaptation; trained on the target domain, the target-only upper bound.
//!
//! Inputs: `train` (a dataset), optionally `val` (a labelled dataset; its accuracy is logged per
//! epoch and becomes the metric `val_acc`; the target's val set gives the source-only accuracy on
//! the target). Images are normalised with the per-channel mean/std of `train` (saved in
//! `model.json`; a `val` of another domain uses its own) and, when their size or channel count
//! differs from the network's, converted per batch: greyscale repeated to RGB, then bilinear
//! resize to `model.image_size`.
//!
//! Outputs: `model.safetensors` (`feature.*`, `classifier.*`, PyTorch `state_dict` names),
//! `model.json`, `history.json` (one record per epoch), `architecture.txt`. Metrics: `train_loss`,
//! `train_acc` of the last epoch, `val_acc` with a `val` input. A loss that becomes NaN/inf stops
//! the stage with an error naming the epoch and step. The optimizer defaults to Adam 1e-3.

use serde::{Deserialize, Serialize};
use tch::nn;

use crate::accel::Precision;
use crate::models::summary::ModuleTree;
use crate::models::{DigitCnn, DigitCnnParams};
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::{named_variables, ModelMeta};
use crate::training::classifier::ClassifierTraining;
use crate::training::setup::{self, SOURCE_STREAM};
use crate::training::{
    train, DeviceDataset, IndexStream, LoopPlan, Normalisation, OptimizerSettings,
};

/// The `train_classifier` stage kind.
pub struct TrainClassifierStage;

/// Parameters of a `train_classifier` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainClassifierParams {
    /// The network: `arch`, `image_size`, `channels`.
    #[serde(default)]
    pub model: DigitCnnParams,
    /// Passes over the training set.
    #[serde(default = "setup::default_epochs")]
    pub epochs: usize,
    /// `fp32`, or `bf16`: steps under bf16 autocast on fp32 master weights (faster where the
    /// convolutions are large enough to gain from bf16; compare with `make bench`).
    #[serde(default)]
    pub precision: Precision,
    /// Images per step (capped at the training set's size).
    #[serde(default = "setup::default_batch_size")]
    pub batch_size: usize,
    /// The optimizer (default: Adam, lr 1e-3, constant).
    pub optimizer: OptimizerSettings,
}

impl Stage for TrainClassifierStage {
    type Params = TrainClassifierParams;
    const KIND: &'static str = "train_classifier";
    const VERSION: u32 = 4;
    const ABOUT: &'static str =
        "Train a digit CNN on one labelled domain (source-only / target-only baselines)";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required("train", "a labelled dataset (a dataset stage's `train`)"),
        InputSpec::optional(
            "val",
            "a labelled dataset whose accuracy is logged per epoch",
        ),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.source_only]
kind = "train_classifier"
inputs = { train = "mnistm.train", val = "mnistm.val" }
model = { arch = "mnist", image_size = 28, channels = 3 }   # or arch "svhn", "dann_bn"
epochs = 10
batch_size = 128

[stages.source_only.optimizer]
kind = "adam"          # sgd | adam | adamw
lr = 1e-3
schedule = "constant"  # constant | annealed | linear | cosine
"#;

    fn defaults(_written: &toml::Table) -> toml::Table {
        setup::optimizer_defaults("optimizer", OptimizerSettings::adam(1e-3, [0.9, 0.999]))
    }

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        setup::validate_loop(&params.model, params.epochs, params.batch_size)?;
        setup::validate_optimizer("optimizer", &params.optimizer)
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let train_set = setup::load_input(ctx, "train")?;
        setup::require_labels(&train_set, "train")?;
        let val = setup::load_optional(ctx, "val")?;
        let format = setup::input_format(&params.model);
        let norm = Normalisation::of(&train_set);
        let config = params.model.config(train_set.classes.len() as i64);
        let vs = nn::VarStore::new(ctx.device());
        let model = DigitCnn::new(&vs.root(), config)?;
        let batch = effective_batch(params.batch_size, &[train_set.len()]);
        let order = IndexStream::new(
            train_set.len(),
            batch,
            stream_seed(ctx.seed(), SOURCE_STREAM),
            ctx.device(),
        );
        let data = DeviceDataset::new(&train_set, &norm, format, ctx.device())?;
        let val_data = setup::validation_data(val.as_ref(), &norm, format, ctx)?;
        ctx.log(format!(
            "training on {} (batch {batch})",
            train_set.summary()
        ));

        let mut training =
            ClassifierTraining::new(vs, model, params.optimizer, data, order, val_data);
        let history = train(
            ctx,
            &LoopPlan::new("train", params.epochs, "optimizer.lr").precision(params.precision),
            &mut training,
        )?;

        let meta = ModelMeta {
            method: "classifier".into(),
            model: crate::models::ModelFamily::DigitCnn(config),
            class_names: train_set.classes.clone(),
            normalisation: vec![norm],
            parts: vec!["feature".into(), "classifier".into()],
        };
        let tree = ModuleTree::node("DigitCNN", training.model.tree_parts());
        let vs = &training.vs;
        setup::write_model_dir(
            ctx.out_dir(),
            &named_variables(&[vs]),
            &meta,
            &tree,
            &[vs],
            &history,
        )?;
        Ok(setup::outcome(
            &history,
            &format!("{} on {}", Self::KIND, train_set.domain),
            &["train_acc", "val_acc"],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;
    use crate::testing::{banded, context, input, params, tempdir};
    use crate::training::OptimizerKind;

    #[test]
    fn params_have_defaults_and_reject_unknown_keys() {
        let p = params::<TrainClassifierStage>("").unwrap();
        assert_eq!(
            (
                p.model.arch,
                p.batch_size,
                p.optimizer.kind,
                p.model.image_size
            ),
            (Arch::Mnist, 128, OptimizerKind::Adam, 28)
        );
        assert!(params::<TrainClassifierStage>("epochz = 3").is_err());
        let p = params::<TrainClassifierStage>("[optimizer]\nlr = 0.5").unwrap();
        assert_eq!(
            (p.optimizer.lr, p.optimizer.kind),
            (0.5, OptimizerKind::Adam),
            "a partial table keeps the kind's defaults"
        );
        let err = params::<TrainClassifierStage>("[optimizer]\nlr = -1.0").unwrap_err();
        assert_eq!(err.path, ["optimizer", "lr"]);
        assert_eq!(
            params::<TrainClassifierStage>("epochs = 0")
                .unwrap_err()
                .path,
            ["epochs"]
        );
        assert_eq!(
            params::<TrainClassifierStage>("model = { image_size = 4 }")
                .unwrap_err()
                .path,
            ["model", "image_size"]
        );
    }

    #[test]
    fn trains_end_to_end_and_writes_the_model_directory() {
        let (_guard, root) = tempdir();
        let train = banded(80, 1, 16, 1);
        let inputs = vec![input(&root, "train", &train), input(&root, "val", &train)];
        let mut ctx = context(&root, inputs);
        let p = params::<TrainClassifierStage>(
            "epochs = 2\nbatch_size = 16\nmodel = { image_size = 20 }",
        )
        .unwrap();
        let outcome = TrainClassifierStage::run(p, &mut ctx).unwrap();
        assert!(outcome.metrics.contains_key("val_acc"), "{outcome:?}");
        for file in [
            "model.safetensors",
            "model.json",
            "history.json",
            "architecture.txt",
        ] {
            assert!(root.join("out").join(file).exists(), "{file} missing");
        }
        let arch = std::fs::read_to_string(root.join("out/architecture.txt")).unwrap();
        assert!(
            arch.starts_with("DigitCNN(\n  (feature): Sequential(\n    (conv1): Conv2d(3, 32"),
            "{arch}"
        );
    }

    #[test]
    fn a_huge_learning_rate_fails_with_a_clear_message() {
        let (_guard, root) = tempdir();
        let train = banded(64, 1, 16, 2);
        let mut ctx = context(&root, vec![input(&root, "train", &train)]);
        let text = "epochs = 3\nbatch_size = 16\nmodel = { image_size = 16 }\noptimizer = { kind = \"sgd\", lr = 1e6 }";
        let err =
            TrainClassifierStage::run(params::<TrainClassifierStage>(text).unwrap(), &mut ctx)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("became") && err.contains("lower `optimizer.lr`"),
            "{err}"
        );
    }
}
