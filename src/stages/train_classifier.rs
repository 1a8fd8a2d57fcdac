//! `train_classifier`: trains a digit CNN (feature extractor + label predictor) on one labelled
//! domain. Trained on the source domain it gives the source-only lower bound of domain
//! adaptation; trained on the target domain, the target-only upper bound.
//!
//! Inputs: `train` (a dataset directory), optionally `val` (a labelled dataset; its accuracy is
//! logged per epoch and becomes the metric `val_acc`; the target's val set gives the source-only
//! accuracy on the target). Images are normalised with the per-channel mean/std of `train` (saved
//! in `model.json`; a `val` of another domain uses its own) and, when their size or channel count
//! differs from the network's, converted per batch: greyscale repeated to RGB, then bilinear
//! resize to `image_size`.
//!
//! Outputs: `model.safetensors` (`feature.*`, `classifier.*`, PyTorch `state_dict` names),
//! `model.json`, `history.json` (one record per epoch), `architecture.txt`. Metrics: `train_loss`,
//! `train_acc` of the last epoch, `val_acc` with a `val` input. A loss that becomes NaN/inf stops
//! the stage with an error naming the epoch and step.
//!
//! ```toml
//! [stages.source_only]
//! kind = "train_classifier"
//! inputs = { train = "mnistm.train", val = "svhn.val" }   # val optional
//! arch = "mnist"            # or "svhn" (the DANN paper's deeper CNN), "dann_bn" (with batch norm)
//! image_size = 28           # network input; other sizes are resized (bilinear)
//! channels = 3              # 1-channel images are repeated to RGB
//! epochs = 10
//! batch_size = 128
//! optimizer = "adam"        # or "sgd"
//! lr = 1e-3
//! lr_schedule = "constant"  # or "annealed": lr / (1 + 10 p)^0.75
//! momentum = 0.9            # sgd only
//! beta1 = 0.9               # adam only
//! weight_decay = 0.0
//! ```

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use tch::nn;

use super::{Stage, StageContext, StageOutcome, StageShape};
use crate::models::summary::ModuleTree;
use crate::models::{Arch, DigitCnn, DigitCnnConfig};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::{named_variables, ModelMeta};
use crate::training::classifier::ClassifierTrainer;
use crate::training::setup::{self, SOURCE_STREAM};
use crate::training::{run_epochs, DomainData, IndexStream, InputFormat, LoopPlan, LrSchedule, Normalisation, OptimizerKind, OptimizerSpec};

/// The `train_classifier` stage kind.
pub struct TrainClassifierStage;

/// Parameters of a `train_classifier` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainClassifierParams {
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
    /// Passes over the training set.
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Images per step (capped at the training set's size).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// `adam` or `sgd`.
    #[serde(default = "defaults::adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate (the base rate of an annealed schedule).
    #[serde(default = "defaults::adam_lr")]
    pub lr: f64,
    /// `constant` or `annealed` (DANN's lr / (1 + 10 p)^0.75).
    #[serde(default = "defaults::constant")]
    pub lr_schedule: LrSchedule,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// Adam's beta1.
    #[serde(default = "defaults::beta1")]
    pub beta1: f64,
    /// L2 weight decay.
    #[serde(default)]
    pub weight_decay: f64,
}

/// Defaults shared by the training stages.
pub(crate) mod defaults {
    use super::*;
    pub fn arch() -> Arch {
        Arch::Mnist
    }
    pub fn image_size() -> i64 {
        28
    }
    pub fn channels() -> i64 {
        3
    }
    pub fn epochs() -> usize {
        10
    }
    pub fn batch_size() -> usize {
        128
    }
    pub fn adam() -> OptimizerKind {
        OptimizerKind::Adam
    }
    pub fn sgd() -> OptimizerKind {
        OptimizerKind::Sgd
    }
    pub fn adam_lr() -> f64 {
        1e-3
    }
    pub fn constant() -> LrSchedule {
        LrSchedule::Constant
    }
    pub fn annealed() -> LrSchedule {
        LrSchedule::Annealed
    }
    pub fn momentum() -> f64 {
        0.9
    }
    pub fn beta1() -> f64 {
        0.9
    }
}

impl TrainClassifierParams {
    fn optimizer_spec(&self) -> OptimizerSpec {
        OptimizerSpec {
            kind: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            beta1: self.beta1,
            weight_decay: self.weight_decay,
        }
    }
}

impl Stage for TrainClassifierStage {
    type Params = TrainClassifierParams;
    const KIND: &'static str = "train_classifier";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Train a digit CNN on one labelled domain (source-only / target-only baselines)";

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape { required_inputs: vec!["train".into()], uses_device: true, ..Default::default() }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let train = setup::load_input(ctx, "train")?;
        setup::require_labels(&train, "train")?;
        let val = setup::load_optional(ctx, "val")?;
        let format = InputFormat { channels: params.channels, image_size: params.image_size };
        let norm = Normalisation::of(&train);
        let config = DigitCnnConfig {
            arch: params.arch,
            channels: params.channels,
            image_size: params.image_size,
            classes: train.classes.len() as i64,
        };
        let vs = nn::VarStore::new(ctx.device());
        let model = DigitCnn::new(&vs.root(), config)?;
        let batch = effective_batch(params.batch_size, &[train.len()]);
        let order = IndexStream::new(train.len(), batch, stream_seed(ctx.seed(), SOURCE_STREAM), ctx.device());
        let data = DomainData::new(&train, &norm, format, ctx.device())?;
        let val_data = setup::validation_data(val.as_ref(), &norm, format, ctx)?;
        ctx.log(format!("training on {} (batch {batch})", train.summary()));

        let trainer = ClassifierTrainer::new(&vs, model, params.optimizer_spec(), params.lr_schedule, data, order)?;
        let plan = LoopPlan {
            phase: "train".into(),
            epochs: params.epochs,
            steps_per_epoch: trainer.steps_per_epoch(),
            lr_param: "lr",
        };
        let trainer = RefCell::new(trainer);
        let history = run_epochs(
            ctx,
            &plan,
            |at| Ok(trainer.borrow_mut().step(at.p)),
            |_| Ok(setup::val_accuracy(val_data.as_ref(), |x| trainer.borrow().model.logits(x, false))),
        )?;
        let model = trainer.into_inner().into_model();

        let meta = ModelMeta {
            method: "classifier".into(),
            model: config,
            class_names: train.classes.clone(),
            normalisation: vec![norm],
            parts: vec!["feature".into(), "classifier".into()],
        };
        let tree = ModuleTree::node("DigitCNN", model.tree_parts());
        setup::write_model_dir(ctx.out_dir(), &named_variables(&[&vs]), &meta, &tree, &[&vs], &history)?;
        Ok(setup::outcome(&history, &format!("{} on {}", Self::KIND, train.domain), &["train_acc", "val_acc"]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use camino::Utf8PathBuf;

    use super::*;
    use crate::data::Dataset;
    use crate::stages::InputArtifact;

    /// Saves `dataset` under `root/name` and returns it as a stage input.
    pub fn input(root: &camino::Utf8Path, name: &str, dataset: &Dataset) -> (String, InputArtifact) {
        let dir = root.join(name);
        dataset.save(&dir).unwrap();
        let artifact = InputArtifact {
            dir,
            stage: name.into(),
            kind: "test".into(),
            params: serde_json::Value::Null,
            outcome: Default::default(),
        };
        (name.to_owned(), artifact)
    }

    /// A detached context over `inputs` writing to `root/out`.
    pub fn context(root: &camino::Utf8Path, inputs: Vec<(String, InputArtifact)>) -> StageContext {
        let inputs: BTreeMap<_, _> = inputs.into_iter().collect();
        StageContext::detached("test", root.join("out"), inputs, 7)
    }

    pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, path)
    }

    fn params(toml_text: &str) -> TrainClassifierParams {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn params_have_defaults_and_reject_unknown_keys() {
        let p = params("");
        assert_eq!((p.arch, p.batch_size, p.optimizer, p.image_size), (Arch::Mnist, 128, OptimizerKind::Adam, 28));
        assert!(toml::from_str::<TrainClassifierParams>("epochz = 3").is_err());
    }

    #[test]
    fn trains_end_to_end_and_writes_the_model_directory() {
        let (_guard, root) = tempdir();
        let train = crate::training::classifier::tests::banded(80, 1, 16, 1);
        let inputs = vec![input(&root, "train", &train), input(&root, "val", &train)];
        let mut ctx = context(&root, inputs);
        let p = params("epochs = 2\nbatch_size = 16\nimage_size = 20");
        let outcome = TrainClassifierStage::run(p, &mut ctx).unwrap();
        assert!(outcome.metrics.contains_key("val_acc"), "{outcome:?}");
        for file in ["model.safetensors", "model.json", "history.json", "architecture.txt"] {
            assert!(root.join("out").join(file).exists(), "{file} missing");
        }
        let arch = std::fs::read_to_string(root.join("out/architecture.txt")).unwrap();
        assert!(arch.starts_with("DigitCNN(\n  (feature): Sequential(\n    (conv1): Conv2d(3, 32"), "{arch}");
    }

    #[test]
    fn a_huge_learning_rate_fails_with_a_clear_message() {
        let (_guard, root) = tempdir();
        let train = crate::training::classifier::tests::banded(64, 1, 16, 2);
        let mut ctx = context(&root, vec![input(&root, "train", &train)]);
        let p = params("epochs = 3\nbatch_size = 16\nimage_size = 16\noptimizer = \"sgd\"\nlr = 1e6");
        let err = TrainClassifierStage::run(p, &mut ctx).unwrap_err().to_string();
        assert!(err.contains("loss became") && err.contains("lower `lr`"), "{err}");
    }
}
