//! `train_ddpm`: a class-conditional DDPM (Ho et al. 2020) on labelled digit images, with
//! classifier-free guidance (Ho & Salimans 2022), as TeaPearce's Conditional_Diffusion_MNIST and
//! the course's reports train it: a ContextUnet of width `model.n_feat` predicts the noise of
//! x_t (t uniform in 1..=n_t, betas from `beta_start` to `beta_end`, or a cosine schedule), the
//! class dropped with probability `drop_prob`, MSE loss, Adam 1e-4 decayed linearly to 0,
//! batch 256. With `ema_decay` the sampling weights are a moving average of the trained ones.
//!
//! Input: `train` (labelled; images scaled to [-1, 1], resized to `model.image_size`; the
//! channel count is the dataset's). Outputs: `model.safetensors` (the sampling weights:
//! the average when `ema_decay` is set), `model.json` (family `context_unet`),
//! `schedule.json`, `history.json` (train_loss, lr per epoch), `architecture.txt`, and a grid of
//! 10 samples per class (rows = classes, guidance `grid_guidance`) every `sample_every` epochs
//! and at the last one (`samples/epoch_NNN.png`; the report shows the last). Sample it with
//! `sample_diffusion` or `ddim`.

use serde::{Deserialize, Serialize};

use crate::accel::Precision;
use crate::diffusion::{BetaSchedule, ScheduleConfig};
use crate::models::ContextUnetConfig;
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::{named_variables, ModelMeta};
use crate::training::ddpm::{self, symmetric_normalisation, DdpmModel, DdpmTraining};
use crate::training::setup::{self, SOURCE_STREAM};
use crate::training::{
    train, DeviceDataset, IndexStream, InputFormat, LoopPlan, LrSchedule, OptimizerSettings,
};

pub struct TrainDdpmStage;

/// The network of a `train_ddpm` stage.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DdpmNetParams {
    /// Width of the ContextUnet's first level (128 in the reference; a multiple of 8).
    #[serde(default = "default_n_feat")]
    pub n_feat: i64,
    /// Side the images are resized to (a multiple of 4; 28 for digits).
    #[serde(default = "default_image_size")]
    pub image_size: i64,
}

impl Default for DdpmNetParams {
    fn default() -> Self {
        DdpmNetParams {
            n_feat: default_n_feat(),
            image_size: default_image_size(),
        }
    }
}

fn default_n_feat() -> i64 {
    128
}
fn default_image_size() -> i64 {
    28
}

/// Parameters of a `train_ddpm` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainDdpmParams {
    /// The network: `n_feat`, `image_size`.
    #[serde(default)]
    pub model: DdpmNetParams,
    /// Diffusion steps n_T (400-1000 in the reports).
    #[serde(default = "default_n_t")]
    pub n_t: usize,
    /// First beta of the linear schedule.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta of the linear schedule.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// `linear` (Ho et al.) or `cosine` (Nichol & Dhariwal).
    #[serde(default = "default_schedule")]
    pub schedule: BetaSchedule,
    /// Probability of dropping an image's class in training (classifier-free guidance).
    #[serde(default = "default_drop_prob")]
    pub drop_prob: f64,
    /// Decay of the moving average of the weights sampling uses (e.g. 0.995); none by default.
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Passes over the training set.
    #[serde(default = "setup::default_epochs")]
    pub epochs: usize,
    /// `fp32`, or `bf16`: steps under bf16 autocast on fp32 master weights (faster where the
    /// convolutions are large enough to gain from bf16; compare with `make bench`).
    #[serde(default)]
    pub precision: Precision,
    /// Images per step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Epochs between sample grids (0: only after the last epoch).
    #[serde(default)]
    pub sample_every: usize,
    /// Guidance weight w of the sample grids.
    #[serde(default = "default_grid_guidance")]
    pub grid_guidance: f64,
    /// The optimizer (default: Adam, lr 1e-4, linear decay to 0).
    pub optimizer: OptimizerSettings,
}

fn default_n_t() -> usize {
    400
}
fn default_beta_start() -> f64 {
    1e-4
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn default_drop_prob() -> f64 {
    0.1
}
fn default_batch_size() -> usize {
    256
}
fn default_grid_guidance() -> f64 {
    2.0
}

/// Largest number of diffusion steps the plan accepts.
const MAX_N_T: usize = 100_000;

impl TrainDdpmParams {
    pub fn schedule_config(&self) -> ScheduleConfig {
        ScheduleConfig {
            n_t: self.n_t,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            schedule: self.schedule,
        }
    }
}

impl Stage for TrainDdpmStage {
    type Params = TrainDdpmParams;
    const KIND: &'static str = "train_ddpm";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "Class-conditional DDPM with classifier-free guidance (ContextUnet noise model)";
    const INPUTS: Inputs =
        Inputs::Named(&[InputSpec::required("train", "the labelled images to model")]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 10

[stages.ddpm]
kind = "train_ddpm"
inputs = { train = "digits.train" }
model = { n_feat = 128, image_size = 28 }
n_t = 400                 # diffusion steps
beta_start = 1e-4
beta_end = 0.02
schedule = "linear"       # or "cosine"
drop_prob = 0.1           # class dropout for classifier-free guidance
ema_decay = 0.995         # optional: sample with a moving average of the weights
epochs = 20
batch_size = 256
sample_every = 5          # epochs between 10-per-class sample grids
grid_guidance = 2.0

[stages.ddpm.optimizer]
kind = "adam"
lr = 1e-4
schedule = "linear"       # decays to 0 by the end
"#;

    fn defaults(_written: &toml::Table) -> toml::Table {
        setup::optimizer_defaults(
            "optimizer",
            OptimizerSettings::adam(1e-4, [0.9, 0.999]).with_schedule(LrSchedule::Linear),
        )
    }

    fn validate(p: &Self::Params) -> Result<(), ParamError> {
        ParamError::check((1..=1 << 20).contains(&p.epochs), "epochs", "at least 1")?;
        ParamError::check(
            (1..=1 << 20).contains(&p.batch_size),
            "batch_size",
            "at least 1",
        )?;
        ParamError::check(
            p.model.n_feat >= 8 && p.model.n_feat % 8 == 0 && p.model.n_feat <= 4096,
            "model.n_feat",
            "a multiple of 8 from 8 to 4096",
        )?;
        ParamError::check(
            p.model.image_size >= 4 && p.model.image_size % 4 == 0 && p.model.image_size <= 1024,
            "model.image_size",
            "a multiple of 4 from 4 to 1024",
        )?;
        ParamError::check((2..=MAX_N_T).contains(&p.n_t), "n_t", "from 2 to 100000")?;
        ParamError::check(
            p.beta_start.is_finite() && p.beta_start > 0.0 && p.beta_start < 1.0,
            "beta_start",
            "in (0, 1)",
        )?;
        ParamError::check(
            p.beta_end.is_finite() && p.beta_end >= p.beta_start && p.beta_end < 1.0,
            "beta_end",
            "in [beta_start, 1)",
        )?;
        ParamError::check((0.0..1.0).contains(&p.drop_prob), "drop_prob", "in [0, 1)")?;
        if let Some(decay) = p.ema_decay {
            ParamError::check((0.0..1.0).contains(&decay), "ema_decay", "in [0, 1)")?;
        }
        ParamError::check(
            p.grid_guidance.is_finite(),
            "grid_guidance",
            "a finite number",
        )?;
        setup::validate_optimizer("optimizer", &p.optimizer)
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let dataset = setup::load_input(ctx, "train")?;
        setup::require_labels(&dataset, "train")?;
        let channels = dataset.shape[1];
        let config = ContextUnetConfig {
            channels: channels as i64,
            n_feat: params.model.n_feat,
            image_size: params.model.image_size,
            classes: dataset.classes.len() as i64,
        };
        let device = ctx.device();
        let norm = symmetric_normalisation(&dataset.domain, channels);
        let format = InputFormat {
            channels: config.channels,
            image_size: config.image_size,
        };
        let data = DeviceDataset::new(&dataset, &norm, format, device)?;
        let batch = effective_batch(params.batch_size, &[dataset.len()]);
        let order = IndexStream::new(
            dataset.len(),
            batch,
            stream_seed(ctx.seed(), SOURCE_STREAM),
            device,
        );
        let model = DdpmModel::new(config, params.ema_decay, device)?;
        let tree = model.net.tree();
        let schedule_config = params.schedule_config();
        ctx.log(format!(
            "train {}; batch {batch}; n_t {}",
            dataset.summary(),
            params.n_t
        ));
        let mut training = DdpmTraining::new(
            model,
            params.optimizer,
            data,
            order,
            schedule_config.build(),
            params.drop_prob,
            params.grid_guidance,
            ctx.seed(),
        );
        let every = if params.sample_every == 0 {
            params.epochs
        } else {
            params.sample_every
        };
        let history = train(
            ctx,
            &LoopPlan::new("ddpm", params.epochs, "optimizer.lr")
                .hook_every(every)
                .precision(params.precision),
            &mut training,
        )?;

        let (vs, _) = training.model.sampling();
        let meta = ModelMeta {
            method: "ddpm".into(),
            model: crate::models::ModelFamily::ContextUnet(config),
            class_names: dataset.classes.clone(),
            normalisation: vec![norm],
            parts: vec![
                "init_conv".into(),
                "down1".into(),
                "down2".into(),
                "up0".into(),
                "up1".into(),
                "up2".into(),
                "out".into(),
            ],
        };
        setup::write_model_dir(
            ctx.out_dir(),
            &named_variables(&[vs]),
            &meta,
            &tree,
            &[&training.model.vs],
            &history,
        )?;
        ddpm::write_schedule(ctx.out_dir(), &schedule_config)?;
        let mut outcome = setup::outcome(
            &history,
            &format!("{} {}", Self::KIND, dataset.domain),
            &["train_loss"],
        );
        outcome.figure(
            ddpm::grid_file(params.epochs),
            format!(
                "10 samples per class after epoch {} (rows = classes, w = {})",
                params.epochs, params.grid_guidance
            ),
        );
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, params, tempdir};

    #[test]
    fn params_default_to_the_reference_and_are_checked() {
        let p = params::<TrainDdpmStage>("").unwrap();
        assert_eq!(
            (
                p.n_t,
                p.batch_size,
                p.model.n_feat,
                p.optimizer.lr,
                p.optimizer.schedule
            ),
            (400, 256, 128, 1e-4, LrSchedule::Linear)
        );
        assert_eq!(
            params::<TrainDdpmStage>("drop_prob = 1.5")
                .unwrap_err()
                .path,
            ["drop_prob"]
        );
        assert_eq!(
            params::<TrainDdpmStage>("model = { n_feat = 12 }")
                .unwrap_err()
                .path,
            ["model", "n_feat"]
        );
        assert_eq!(
            params::<TrainDdpmStage>("ema_decay = 1.0")
                .unwrap_err()
                .path,
            ["ema_decay"]
        );
    }

    #[test]
    fn trains_and_writes_the_model_the_schedule_and_a_grid() {
        let (_guard, root) = tempdir();
        let data = banded(40, 1, 8, 1);
        let mut ctx = context(&root, vec![input(&root, "train", &data)]);
        let p = params::<TrainDdpmStage>("epochs = 1\nbatch_size = 16\nn_t = 10\nema_decay = 0.9\nmodel = { n_feat = 8, image_size = 8 }").unwrap();
        let outcome = TrainDdpmStage::run(p, &mut ctx).unwrap();
        assert!(outcome.metrics["train_loss"].is_finite());
        assert!(root.join("out/samples/epoch_001.png").exists());
        let loaded = ddpm::LoadedDdpm::load(&root.join("out"), tch::Device::Cpu).unwrap();
        assert_eq!(loaded.schedule.n_t, 10);
    }
}
