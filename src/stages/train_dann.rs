//! `train_dann`: domain-adversarial training (Ganin & Lempitsky, "Unsupervised Domain Adaptation
//! by Backpropagation", ICML 2015; JMLR 2016): a feature extractor shared by a label predictor
//! trained on the labelled source domain and a domain classifier fed through a gradient reversal
//! layer, which pushes the features to be indistinguishable between source and target.
//!
//! Each step draws one source batch and one target batch of the same size (`batch_size` each);
//! an epoch is one pass over the source set. loss = CE(class, source) + CE(domain, source = 0) +
//! CE(domain, target = 1); the GRL weight follows lambda_p = 2 / (1 + exp(-gamma p)) - 1 (gamma =
//! `lambda_gamma`, the paper's 10 by default) and, with
//! `lr_schedule = "annealed"`, the learning rate lr_p = lr / (1 + 10 p)^0.75, `p` the training
//! progress from 0 to 1. The defaults are the paper's (SGD, momentum 0.9, lr 0.01, annealed); the
//! popular PyTorch port uses `optimizer = "adam"`, `lr = 1e-3`.
//!
//! Inputs: `source` (labelled), `target` (labels unused), optionally `val` (labelled target
//! images; its accuracy through the label path is logged per epoch as `val_acc`). Each training
//! set is normalised with its own per-channel mean/std (both saved in `model.json`; `val` uses the
//! target's). Images whose size or channel count differs from the network's are converted per
//! batch (greyscale repeated to RGB, bilinear resize to `image_size`), so USPS 1x16x16 can be the
//! target of an MNIST-M 3x28x28 source.
//!
//! Outputs: `model.safetensors` (`feature.*`, `classifier.*`, `domain.*`), `model.json`,
//! `history.json` (per epoch: train_loss, class_loss, domain_loss, train_acc, lr, lambda,
//! val_acc), `architecture.txt`. Metrics: the last epoch's values. Evaluate it with `evaluate`
//! (the label path only, i.e. lambda 0).
//!
//! ```toml
//! [stages.dann]
//! kind = "train_dann"
//! inputs = { source = "mnistm.train", target = "usps.train", val = "usps.val" }
//! arch = "mnist"            # or "svhn", "dann_bn" (the PyTorch port's CNN with batch norm)
//! image_size = 28
//! channels = 3
//! epochs = 10
//! batch_size = 128          # per domain
//! optimizer = "sgd"         # or "adam"
//! lr = 0.01
//! lr_schedule = "annealed"  # or "constant"
//! momentum = 0.9            # sgd only
//! beta1 = 0.9               # adam only
//! weight_decay = 0.0
//! lambda_gamma = 10.0       # GRL ramp steepness; smaller ramps later (short runs)
//! ```

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use tch::nn;

use super::train_classifier::defaults;
use super::{Stage, StageContext, StageOutcome, StageShape};
use crate::models::{Arch, DigitCnnConfig};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::{named_variables, ModelMeta};
use crate::training::dann::{DannData, DannModel, DannTrainer};
use crate::training::schedule::LAMBDA_GAMMA;
use crate::training::setup::{self, SOURCE_STREAM, TARGET_STREAM};
use crate::training::{run_epochs, DomainData, IndexStream, InputFormat, LoopPlan, LrSchedule, Normalisation, OptimizerKind, OptimizerSpec};

/// The `train_dann` stage kind.
pub struct TrainDannStage;

/// Parameters of a `train_dann` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainDannParams {
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
    /// Passes over the source set.
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Images per domain per step (capped at the smaller set's size).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// `sgd` (the paper) or `adam` (the popular port).
    #[serde(default = "defaults::sgd")]
    pub optimizer: OptimizerKind,
    /// Base learning rate mu0.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `annealed` (mu0 / (1 + 10 p)^0.75, the paper) or `constant`.
    #[serde(default = "defaults::annealed")]
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
    /// Steepness gamma of the GRL weight schedule 2 / (1 + exp(-gamma p)) - 1; the paper's 10
    /// ramps to 0.99 by half way, smaller values later and lower (short runs need 1-5).
    #[serde(default = "default_lambda_gamma")]
    pub lambda_gamma: f64,
}

fn default_lr() -> f64 {
    0.01
}

fn default_lambda_gamma() -> f64 {
    LAMBDA_GAMMA
}

impl TrainDannParams {
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

impl Stage for TrainDannStage {
    type Params = TrainDannParams;
    const KIND: &'static str = "train_dann";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Domain-adversarial training (DANN): gradient reversal against a domain classifier";

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape { required_inputs: vec!["source".into(), "target".into()], uses_device: true, ..Default::default() }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let source = setup::load_input(ctx, "source")?;
        setup::require_labels(&source, "source")?;
        let target = setup::load_input(ctx, "target")?;
        let val = setup::load_optional(ctx, "val")?;
        let format = InputFormat { channels: params.channels, image_size: params.image_size };
        let (source_norm, target_norm) = (Normalisation::of(&source), Normalisation::of(&target));
        let config = DigitCnnConfig {
            arch: params.arch,
            channels: params.channels,
            image_size: params.image_size,
            classes: source.classes.len() as i64,
        };
        let vs = nn::VarStore::new(ctx.device());
        let model = DannModel::new(&vs.root(), config)?;
        let batch = effective_batch(params.batch_size, &[source.len(), target.len()]);
        let device = ctx.device();
        let data = DannData {
            source: DomainData::new(&source, &source_norm, format, device)?,
            target: DomainData::new(&target, &target_norm, format, device)?,
            source_order: IndexStream::new(source.len(), batch, stream_seed(ctx.seed(), SOURCE_STREAM), device),
            target_order: IndexStream::new(target.len(), batch, stream_seed(ctx.seed(), TARGET_STREAM), device),
        };
        let val_data = setup::validation_data(val.as_ref(), &target_norm, format, ctx)?;
        ctx.log(format!("source {}; target {}; batch {batch} per domain", source.summary(), target.summary()));

        let trainer = DannTrainer::new(&vs, model, params.optimizer_spec(), params.lr_schedule, params.lambda_gamma, data)?;
        let steps = trainer.steps_per_epoch();
        let plan = LoopPlan { phase: "dann".into(), epochs: params.epochs, steps_per_epoch: steps, lr_param: "lr" };
        let trainer = RefCell::new(trainer);
        let history = run_epochs(
            ctx,
            &plan,
            |at| Ok(trainer.borrow_mut().step(at.p)),
            |epoch| {
                let trainer = trainer.borrow();
                // The schedules' values at the last step of this epoch.
                let p = crate::training::schedule::progress(epoch * steps - 1, params.epochs * steps);
                let mut record = vec![("lr", trainer.lr_at(p)), ("lambda", trainer.lambda_at(p))];
                record.extend(setup::val_accuracy(val_data.as_ref(), |x| trainer.model.cnn.logits(x, false)));
                Ok(record)
            },
        )?;
        let model = trainer.into_inner().model;

        let meta = ModelMeta {
            method: "dann".into(),
            model: config,
            class_names: source.classes.clone(),
            normalisation: vec![source_norm, target_norm],
            parts: vec!["feature".into(), "classifier".into(), "domain".into()],
        };
        setup::write_model_dir(ctx.out_dir(), &named_variables(&[&vs]), &meta, &model.tree(), &[&vs], &history)?;
        let headline = format!("{} {} -> {}", Self::KIND, source.domain, target.domain);
        Ok(setup::outcome(&history, &headline, &["train_acc", "domain_loss", "val_acc"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::train_classifier::tests::{context, input, tempdir};
    use crate::training::classifier::tests::banded;

    #[test]
    fn params_default_to_the_paper() {
        let p: TrainDannParams = toml::from_str("").unwrap();
        assert_eq!((p.optimizer, p.lr, p.lr_schedule, p.momentum), (OptimizerKind::Sgd, 0.01, LrSchedule::Annealed, 0.9));
    }

    #[test]
    fn adapts_a_greyscale_16px_target_to_an_rgb_28px_model() {
        let (_guard, root) = tempdir();
        let source = banded(64, 3, 28, 1);
        let target = banded(48, 1, 16, 2);
        let inputs = vec![input(&root, "source", &source), input(&root, "target", &target), input(&root, "val", &target)];
        let mut ctx = context(&root, inputs);
        let p: TrainDannParams = toml::from_str("epochs = 2\nbatch_size = 16\noptimizer = \"adam\"\nlr = 1e-3").unwrap();
        let outcome = TrainDannStage::run(p, &mut ctx).unwrap();
        for key in ["train_loss", "class_loss", "domain_loss", "lambda", "lr", "val_acc"] {
            assert!(outcome.metrics.contains_key(key), "{key} missing: {outcome:?}");
        }
        let json = std::fs::read_to_string(root.join("out/model.json")).unwrap();
        assert!(json.contains("\"dann\""), "{json}");
    }
}
