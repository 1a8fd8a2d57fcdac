//! `train_dann`: domain-adversarial training (Ganin & Lempitsky, "Unsupervised Domain Adaptation
//! by Backpropagation", ICML 2015; JMLR 2016): a feature extractor shared by a label predictor
//! trained on the labelled source domain and a domain classifier fed through a gradient reversal
//! layer, which pushes the features to be indistinguishable between source and target.
//!
//! Each step draws one source batch and one target batch of the same size (`batch_size` each);
//! an epoch is one pass over the source set. loss = CE(class, source) + CE(domain, source = 0) +
//! CE(domain, target = 1); the GRL weight follows lambda_p = 2 / (1 + exp(-gamma p)) - 1 (gamma =
//! `lambda_gamma`, the paper's 10 by default) and, with `optimizer.schedule = "annealed"`, the
//! learning rate lr_p = lr / (1 + 10 p)^0.75, `p` the training progress from 0 to 1. The
//! optimizer defaults are the paper's (SGD, momentum 0.9, lr 0.01, annealed); the popular PyTorch
//! port uses `optimizer = { kind = "adam", lr = 1e-3, schedule = "constant" }`.
//!
//! Batch norm: by default the two batches go through the network in two passes (`forward =
//! "per_domain"`, as the port), so each batch-norm batch holds one domain; on real MNIST ->
//! MNIST-M this is what lets DANN adapt (0.90 vs 0.74 with `"joint"`, fidelity/results.md). `bn_stats =
//! "target"` re-estimates the batch-norm statistics on the target after training, for domains
//! too far apart for the running mixture of both (the quickstart's).
//!
//! Inputs: `source` (labelled), `target` (labels unused), optionally `val` (labelled target
//! images; its accuracy through the label path is logged per epoch as `val_acc`). Each training
//! set is normalised with its own per-channel mean/std (both saved in `model.json`; `val` uses the
//! target's). Images whose size or channel count differs from the network's are converted per
//! batch (greyscale repeated to RGB, bilinear resize to `model.image_size`), so USPS 1x16x16 can
//! be the target of an MNIST-M 3x28x28 source.
//!
//! With `ema_decay`, the saved weights are the exponential moving average of the trained ones
//! over the run (steadier than the last step's at a high learning rate; the quickstart's).
//!
//! Outputs: `model.safetensors` (`feature.*`, `classifier.*`, `domain.*`), `model.json`,
//! `history.json` (per epoch: train_loss, class_loss, domain_loss, train_acc, lr, lambda,
//! val_acc), `architecture.txt`. Metrics: the last epoch's values. Evaluate it with `evaluate`
//! (the label path only, i.e. lambda 0).

use serde::{Deserialize, Serialize};
use tch::nn;

use crate::accel::Precision;
use crate::models::DigitCnnParams;
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::batches::{effective_batch, stream_seed, AdaptationData};
use crate::training::checkpoint::{named_variables, ModelMeta, SOURCE_BN};
use crate::training::dann::{
    BnStats, DannForward, DannModel, DannPasses, DannTraining, Domain, InputNorm,
};
use crate::training::schedule::LAMBDA_GAMMA;
use crate::training::setup::{self, SOURCE_STREAM, TARGET_STREAM};
use crate::training::{
    train, DeviceDataset, IndexStream, LoopPlan, LrSchedule, Normalisation, OptimizerSettings,
};

/// The `train_dann` stage kind.
pub struct TrainDannStage;

/// Parameters of a `train_dann` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainDannParams {
    /// The network: `arch`, `image_size`, `channels`.
    #[serde(default)]
    pub model: DigitCnnParams,
    /// Passes over the source set.
    #[serde(default = "setup::default_epochs")]
    pub epochs: usize,
    /// `fp32`, or `bf16`: steps under bf16 autocast on fp32 master weights (faster where the
    /// convolutions are large enough to gain from bf16; compare with `make bench`).
    #[serde(default)]
    pub precision: Precision,
    /// Images per domain per step (capped at the smaller set's size).
    #[serde(default = "setup::default_batch_size")]
    pub batch_size: usize,
    /// The optimizer (default: the paper's SGD, lr 0.01, momentum 0.9, annealed).
    pub optimizer: OptimizerSettings,
    /// Steepness gamma of the GRL weight schedule 2 / (1 + exp(-gamma p)) - 1; the paper's 10
    /// ramps to 0.99 by half way, smaller values later and lower (short runs need 1-5).
    #[serde(default = "default_lambda_gamma")]
    pub lambda_gamma: f64,
    /// How a step's two batches go through the network: `per_domain` (one pass per domain, as
    /// the PyTorch port: each batch-norm batch holds one domain) or `joint` (one pass of both).
    #[serde(default = "default_forward")]
    pub forward: DannForward,
    /// The target batch also goes through the label head (its class logits unused), as in the
    /// PyTorch port, so that head's batch-norm running statistics follow both domains; by
    /// default the source alone (measured no better on real digits, fidelity/results.md).
    #[serde(default)]
    pub target_through_label_head: bool,
    /// Weight of an information-maximisation loss on the target's class predictions (mean
    /// entropy of each minus entropy of their mean, SHOT), ramped in with the GRL weight; it
    /// keeps the adversarial alignment from mapping a target digit onto another digit's
    /// source cluster. 0 (the default) turns it off.
    #[serde(default)]
    pub target_information_weight: f64,
    /// Input normalisation: `per_domain` (each training set by its own per-channel mean/std),
    /// `source` (both by the source's) or `half` ((x - 0.5) / 0.5 everywhere).
    #[serde(default = "default_input_norm")]
    pub input_norm: InputNorm,
    /// Batch-norm statistics the saved model evaluates with: `running` (averaged over training)
    /// or `target` (re-estimated on the target training set after training).
    #[serde(default = "default_bn_stats")]
    pub bn_stats: BnStats,
    /// When set, the saved model is an exponential moving average of the weights with this
    /// decay (the history's `val_acc` stays the live weights'); pair it with `bn_stats =
    /// "target"`, which recomputes the batch-norm statistics for the averaged weights.
    #[serde(default)]
    pub ema_decay: Option<f64>,
}

/// The per-domain pass: on real digits it is what makes DANN adapt (fidelity/results.md).
fn default_forward() -> DannForward {
    DannForward::PerDomain
}

fn default_input_norm() -> InputNorm {
    InputNorm::PerDomain
}

/// PyTorch's: on real digits (MNIST -> MNIST-M) the running mixture of both domains'
/// statistics evaluates well after per-domain training; domains far apart (the quickstart's
/// synthetic USPS) need `target` (fidelity/results.md).
fn default_bn_stats() -> BnStats {
    BnStats::Running
}

fn default_lambda_gamma() -> f64 {
    LAMBDA_GAMMA
}

impl Stage for TrainDannStage {
    type Params = TrainDannParams;
    const KIND: &'static str = "train_dann";
    const VERSION: u32 = 6;
    const ABOUT: &'static str =
        "Domain-adversarial training (DANN): gradient reversal against a domain classifier";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required("source", "the labelled source dataset"),
        InputSpec::required("target", "the target dataset (labels unused)"),
        InputSpec::optional(
            "val",
            "labelled target images whose accuracy is logged per epoch",
        ),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.usps]
kind = "synthetic"
domain = "usps"
n_train = 200
n_val = 100

[stages.dann]
kind = "train_dann"
inputs = { source = "mnistm.train", target = "usps.train", val = "usps.val" }
model = { arch = "dann_bn", image_size = 28, channels = 3 }   # or "mnist", "svhn"
epochs = 10
batch_size = 128          # per domain
lambda_gamma = 10.0       # GRL ramp steepness; smaller ramps later (short runs)
forward = "per_domain"    # one pass per domain (batch norm per domain); or "joint"
target_through_label_head = false  # true: the label head's BN statistics follow both domains
target_information_weight = 0.0  # > 0: information maximisation on the target's predictions
input_norm = "per_domain" # each domain by its own mean/std; or "source" | "half"
bn_stats = "running"      # eval statistics; or "target" (re-estimated on the target)
ema_decay = 0.99          # optional: save a moving average of the weights

[stages.dann.optimizer]
kind = "sgd"              # sgd | adam | adamw
lr = 0.01
momentum = 0.9            # sgd only
betas = [0.9, 0.999]      # adam only
weight_decay = 0.0
schedule = "annealed"     # lr / (1 + 10 p)^0.75; or constant | linear | cosine
"#;

    fn defaults(_written: &toml::Table) -> toml::Table {
        let paper = OptimizerSettings::sgd(0.01, 0.9).with_schedule(LrSchedule::Annealed);
        setup::optimizer_defaults("optimizer", paper)
    }

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        setup::validate_loop(&params.model, params.epochs, params.batch_size)?;
        setup::validate_optimizer("optimizer", &params.optimizer)?;
        ParamError::check(
            params.lambda_gamma.is_finite() && params.lambda_gamma > 0.0,
            "lambda_gamma",
            "a finite number > 0",
        )?;
        ParamError::check(
            params.target_information_weight.is_finite() && params.target_information_weight >= 0.0,
            "target_information_weight",
            "a finite number >= 0",
        )?;
        if let Some(decay) = params.ema_decay {
            ParamError::check((0.0..1.0).contains(&decay), "ema_decay", "in [0, 1)")?;
        }
        Ok(())
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let source = setup::load_input(ctx, "source")?;
        setup::require_labels(&source, "source")?;
        let target = setup::load_input(ctx, "target")?;
        let val = setup::load_optional(ctx, "val")?;
        let format = setup::input_format(&params.model);
        let (source_norm, target_norm) = params
            .input_norm
            .apply(Normalisation::of(&source), Normalisation::of(&target));
        let config = params.model.config(source.classes.len() as i64);
        let vs = nn::VarStore::new(ctx.device());
        let model = DannModel::new(&vs.root(), config)?;
        let batch = effective_batch(params.batch_size, &[source.len(), target.len()]);
        let device = ctx.device();
        let data = AdaptationData {
            source: DeviceDataset::new(&source, &source_norm, format, device)?,
            target: DeviceDataset::new(&target, &target_norm, format, device)?,
            source_order: IndexStream::new(
                source.len(),
                batch,
                stream_seed(ctx.seed(), SOURCE_STREAM),
                device,
            ),
            target_order: IndexStream::new(
                target.len(),
                batch,
                stream_seed(ctx.seed(), TARGET_STREAM),
                device,
            ),
        };
        let val_data = setup::validation_data(val.as_ref(), &target_norm, format, ctx)?;
        ctx.log(format!(
            "source {}; target {}; batch {batch} per domain",
            source.summary(),
            target.summary()
        ));

        let mut training = DannTraining::new(
            vs,
            model,
            params.optimizer,
            (
                params.lambda_gamma,
                DannPasses {
                    forward: params.forward,
                    target_through_label_head: params.target_through_label_head,
                    target_information_weight: params.target_information_weight,
                },
            ),
            data,
            val_data,
        );
        if let Some(decay) = params.ema_decay {
            training = training.with_moving_average(decay, config)?;
        }
        let history = train(
            ctx,
            &LoopPlan::new("dann", params.epochs, "optimizer.lr").precision(params.precision),
            &mut training,
        )?;
        training.adopt_average()?;
        // The history's `val_acc` is measured with the running statistics (estimating the
        // target's at every epoch would change the random streams training draws from).
        // Each domain's statistics for the averaged weights: the source's are kept beside the
        // model's (`source_bn.*`) so that `features` can show each domain as training
        // normalised it; the target's become the model's evaluation statistics.
        let mut source_statistics = Vec::new();
        let mut parts = vec!["feature".into(), "classifier".into(), "domain".into()];
        if params.bn_stats == BnStats::Target {
            training.estimate_statistics(Domain::Source);
            source_statistics = training
                .batch_norm_statistics()
                .into_iter()
                .map(|(name, statistic)| (format!("{SOURCE_BN}.{name}"), statistic.copy()))
                .collect();
            // A network without batch norm has one behaviour for both domains.
            if !source_statistics.is_empty() {
                parts.push(SOURCE_BN.into());
            }
            training.estimate_statistics(Domain::Target);
            if let Some(acc) = training.val_accuracy() {
                ctx.log(format!(
                    "batch-norm statistics re-estimated on the target: val_acc {acc:.4}"
                ));
            }
        }

        let mut tensors = named_variables(&[&training.vs]);
        tensors.extend(source_statistics);
        let meta = ModelMeta {
            method: "dann".into(),
            model: crate::models::ModelFamily::DigitCnn(config),
            class_names: source.classes.clone(),
            normalisation: vec![source_norm, target_norm],
            parts,
        };
        let vs = &training.vs;
        setup::write_model_dir(
            ctx.out_dir(),
            &tensors,
            &meta,
            &training.model.tree(),
            &[vs],
            &history,
        )?;
        let headline = format!("{} {} -> {}", Self::KIND, source.domain, target.domain);
        let mut outcome = setup::outcome(
            &history,
            &headline,
            &["train_acc", "domain_loss", "val_acc"],
        );
        if let (BnStats::Target, Some(acc)) = (params.bn_stats, training.val_accuracy()) {
            outcome.metrics.insert("val_acc_target_bn".to_owned(), acc);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, params, tempdir};
    use crate::training::OptimizerKind;

    #[test]
    fn params_default_to_the_paper() {
        let p = params::<TrainDannStage>("").unwrap();
        let o = p.optimizer;
        assert_eq!(
            (o.kind, o.lr, o.schedule, o.momentum),
            (OptimizerKind::Sgd, 0.01, LrSchedule::Annealed, 0.9)
        );
        assert_eq!(
            (p.forward, p.input_norm, p.bn_stats),
            (
                DannForward::PerDomain,
                InputNorm::PerDomain,
                BnStats::Running
            )
        );
        let joint = params::<TrainDannStage>(
            "forward = \"joint\"\ninput_norm = \"half\"\nbn_stats = \"target\"",
        )
        .unwrap();
        assert_eq!(
            (joint.forward, joint.input_norm, joint.bn_stats),
            (DannForward::Joint, InputNorm::Half, BnStats::Target)
        );
        let err = params::<TrainDannStage>("forward = \"both\"").unwrap_err();
        assert!(err.message.contains("per_domain"), "{err:?}");
        assert_eq!(
            params::<TrainDannStage>("lambda_gamma = -1.0")
                .unwrap_err()
                .path,
            ["lambda_gamma"]
        );
        let err = params::<TrainDannStage>("[optimizer]\nkind = \"adam\"\nbetaz = [0.5, 0.9]")
            .unwrap_err();
        assert!(err.message.contains("betaz"), "{err:?}");
        assert_eq!(err.path, ["optimizer", "betaz"]);
    }

    #[test]
    fn adapts_a_greyscale_16px_target_to_an_rgb_28px_model() {
        let (_guard, root) = tempdir();
        let source = banded(64, 3, 28, 1);
        let target = banded(48, 1, 16, 2);
        let inputs = vec![
            input(&root, "source", &source),
            input(&root, "target", &target),
            input(&root, "val", &target),
        ];
        let mut ctx = context(&root, inputs);
        let p = params::<TrainDannStage>(
            "epochs = 2\nbatch_size = 16\nbn_stats = \"target\"\nmodel = { arch = \"dann_bn\" }\noptimizer = { kind = \"adam\", lr = 1e-3 }",
        )
        .unwrap();
        let outcome = TrainDannStage::run(p, &mut ctx).unwrap();
        for key in [
            "train_loss",
            "class_loss",
            "domain_loss",
            "lambda",
            "lr",
            "val_acc",
        ] {
            assert!(
                outcome.metrics.contains_key(key),
                "{key} missing: {outcome:?}"
            );
        }
        let json = std::fs::read_to_string(root.join("out/model.json")).unwrap();
        assert!(json.contains("\"dann\""), "{json}");
        // `bn_stats = "target"` keeps the source's statistics beside the target's, and they
        // differ: the two domains' images differ.
        assert!(json.contains(&format!("\"{SOURCE_BN}\"")), "{json}");
        let weights: std::collections::HashMap<String, tch::Tensor> =
            tch::Tensor::read_safetensors(root.join("out/model.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
        let name = "feature.bn1.running_mean";
        let source_mean = &weights[&format!("{SOURCE_BN}.{name}")];
        assert!(!source_mean.allclose(&weights[name], 1e-3, 1e-3, false));
    }
}
