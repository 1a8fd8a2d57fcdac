//! `train_gan`: trains a GAN on one dataset, with the objective chosen by `loss`:
//!
//! - `dcgan` (the PyTorch DCGAN tutorial: BCE, real 1 / fake 0, non-saturating G loss; optional
//!   one-sided `label_smoothing`), default optimizers Adam 2e-4 betas (0.5, 0.999);
//! - `wgan_gp` (critic with LayerNorm and no sigmoid, gradient penalty `gp_lambda` 10,
//!   `n_critic` 5 critic steps per generator step), default Adam 1e-4 betas (0, 0.9);
//! - `acgan` (class-conditional generator, discriminator with an auxiliary class head; needs a
//!   labelled dataset), default Adam 2e-4 betas (0.5, 0.999).
//!
//! The network comes from `model` ([`GanModelParams`]: preset `dcgan` or `deep`, `image_size` 64,
//! 32 or 28, z 100, ngf = ndf = 64, `spectral_norm` on the discriminator). Input `train`: any
//! dataset (unlabelled face folders work); its images are resized to `image_size`, converted to
//! `model.channels` and scaled to `[-1, 1]`.
//!
//! An epoch is one pass over the data: `batches / n_critic` generator steps (see
//! [`crate::training::gan`]). Outputs: the model directory (`model.safetensors` with
//! `generator.*` and `discriminator.*`, `model.json` with family `gan`, `architecture.txt`),
//! `history.json` (g_loss, d_loss, d_real, d_fake, gp, class_acc per epoch), the fixed-noise grid
//! every `sample_every` epochs in `progress/epoch_NNN.png`, `progress_strip.png` and
//! `d_outputs.png` (D(x) and D(G(z)) per epoch) — the last grid, the strip and the curves are the
//! report's figures. Metrics: the last epoch's scalars.

use serde::{Deserialize, Serialize};

use crate::accel::Precision;
use crate::data::Dataset;
use crate::models::{GanConfig, GanLoss, GanPreset, ModelFamily};
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::batches::{effective_batch, stream_seed};
use crate::training::checkpoint::{named_variables, ModelMeta};
use crate::training::gan::{progress_file, GanModel, GanSettings, GanTraining, STRIP_FILE};
use crate::training::setup::{self, SOURCE_STREAM};
use crate::training::{
    train, DeviceDataset, History, IndexStream, InputFormat, LoopPlan, Normalisation,
    OptimizerSettings,
};
use crate::viz::{curves_png, CurvesPlot, Series};

/// The `train_gan` stage kind.
pub struct TrainGanStage;

/// The `model` table: which generator / discriminator pair.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GanModelParams {
    /// `dcgan` (the tutorial's networks) or `deep` (a stride-1 3x3 conv block after each
    /// up/down sampling).
    #[serde(default)]
    pub preset: GanPreset,
    /// 64 (faces), 32 or 28 (digits).
    #[serde(default = "GanModelParams::default_image_size")]
    pub image_size: i64,
    /// Image channels: 3 (greyscale data is repeated) or 1.
    #[serde(default = "GanModelParams::default_channels")]
    pub channels: i64,
    /// Noise dimension.
    #[serde(default = "default_z_dim")]
    pub z_dim: i64,
    /// Generator width (channels of its last hidden layer).
    #[serde(default = "GanModelParams::default_width")]
    pub ngf: i64,
    /// Discriminator width (channels of its first layer).
    #[serde(default = "GanModelParams::default_width")]
    pub ndf: i64,
    /// Spectral normalisation of every discriminator conv.
    #[serde(default)]
    pub spectral_norm: bool,
}

impl Default for GanModelParams {
    fn default() -> Self {
        GanModelParams {
            preset: GanPreset::Dcgan,
            image_size: Self::default_image_size(),
            channels: Self::default_channels(),
            z_dim: default_z_dim(),
            ngf: Self::default_width(),
            ndf: Self::default_width(),
            spectral_norm: false,
        }
    }
}

impl GanModelParams {
    fn default_image_size() -> i64 {
        64
    }
    fn default_channels() -> i64 {
        3
    }
    fn default_width() -> i64 {
        64
    }

    fn config(&self, loss: GanLoss, classes: i64) -> GanConfig {
        GanConfig {
            preset: self.preset,
            loss,
            image_size: self.image_size,
            channels: self.channels,
            z_dim: self.z_dim,
            ngf: self.ngf,
            ndf: self.ndf,
            spectral_norm: self.spectral_norm,
            classes: if loss == GanLoss::Acgan { classes } else { 0 },
        }
    }
}

fn default_z_dim() -> i64 {
    100
}

/// One network's optimizer table.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkParams {
    /// The network's optimizer (defaults by `loss`).
    pub optimizer: OptimizerSettings,
}

/// Parameters of a `train_gan` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainGanParams {
    /// `dcgan`, `wgan_gp` or `acgan`.
    #[serde(default)]
    pub loss: GanLoss,
    /// The networks: `preset`, `image_size`, `channels`, `z_dim`, `ngf`, `ndf`, `spectral_norm`.
    #[serde(default)]
    pub model: GanModelParams,
    /// Passes over the training set.
    #[serde(default = "setup::default_epochs")]
    pub epochs: usize,
    /// `fp32`, or `bf16`: steps under bf16 autocast on fp32 master weights (faster where the
    /// convolutions are large enough to gain from bf16; compare with `make bench`).
    #[serde(default)]
    pub precision: Precision,
    /// Real images per discriminator step (capped at the dataset's size).
    #[serde(default = "setup::default_batch_size")]
    pub batch_size: usize,
    /// Critic steps per generator step (`wgan_gp`; the other losses take one).
    #[serde(default = "default_n_critic")]
    pub n_critic: usize,
    /// Weight of the gradient penalty (`wgan_gp`).
    #[serde(default = "default_gp_lambda")]
    pub gp_lambda: f64,
    /// One-sided label smoothing: real images are labelled `1 - label_smoothing` (`dcgan`,
    /// `acgan`).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Render the fixed noise batch every this many epochs (and at the last).
    #[serde(default = "default_sample_every")]
    pub sample_every: usize,
    /// `[stages.x.generator.optimizer]`.
    pub generator: NetworkParams,
    /// `[stages.x.discriminator.optimizer]`.
    pub discriminator: NetworkParams,
}

fn default_n_critic() -> usize {
    5
}
fn default_gp_lambda() -> f64 {
    10.0
}
fn default_sample_every() -> usize {
    1
}

/// The papers' optimizer for `loss`.
fn default_optimizer(loss: GanLoss) -> OptimizerSettings {
    match loss {
        GanLoss::WganGp => OptimizerSettings::adam(1e-4, [0.0, 0.9]),
        GanLoss::Dcgan | GanLoss::Acgan => OptimizerSettings::adam(2e-4, [0.5, 0.999]),
    }
}

/// Beyond this the plan refuses a GAN size: a typo, not a model that fits in memory.
const MAX_WIDTH: i64 = 4096;

impl Stage for TrainGanStage {
    type Params = TrainGanParams;
    const KIND: &'static str = "train_gan";
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "Train a GAN (DCGAN, WGAN-GP, spectral norm, ACGAN) with a fixed-noise grid per epoch";
    const INPUTS: Inputs = Inputs::Named(&[InputSpec::required(
        "train",
        "a dataset (labelled for acgan), e.g. a dataset stage's `train`",
    )]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 256
n_val = 10

[stages.gan]
kind = "train_gan"
inputs = { train = "digits.train" }
loss = "acgan"            # dcgan | wgan_gp | acgan
model = { preset = "dcgan", image_size = 28, z_dim = 100, ngf = 64, ndf = 64, spectral_norm = false }
epochs = 5
batch_size = 128
n_critic = 5              # wgan_gp only
gp_lambda = 10.0          # wgan_gp only
label_smoothing = 0.0     # dcgan / acgan: real label = 1 - this
sample_every = 1

[stages.gan.generator.optimizer]
kind = "adam"
lr = 2e-4
betas = [0.5, 0.999]

[stages.gan.discriminator.optimizer]
kind = "adam"
lr = 2e-4
betas = [0.5, 0.999]
"#;

    fn defaults(written: &toml::Table) -> toml::Table {
        let loss = written
            .get("loss")
            .and_then(|v| v.clone().try_into::<GanLoss>().ok())
            .unwrap_or_default();
        let optimizer = setup::optimizer_defaults("optimizer", default_optimizer(loss));
        ["generator", "discriminator"]
            .into_iter()
            .map(|net| (net.to_owned(), toml::Value::Table(optimizer.clone())))
            .collect()
    }

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(
            (1..=1 << 20).contains(&params.epochs),
            "epochs",
            "at least 1",
        )?;
        ParamError::check(
            (1..=1 << 16).contains(&params.batch_size),
            "batch_size",
            "from 1 to 65536",
        )?;
        let m = &params.model;
        ParamError::check(
            crate::models::dcgan::IMAGE_SIZES.contains(&m.image_size),
            "model.image_size",
            "28, 32 or 64",
        )?;
        ParamError::check(matches!(m.channels, 1 | 3), "model.channels", "1 or 3")?;
        ParamError::check(
            (1..=MAX_WIDTH).contains(&m.z_dim),
            "model.z_dim",
            "from 1 to 4096",
        )?;
        ParamError::check(
            (1..=MAX_WIDTH).contains(&m.ngf),
            "model.ngf",
            "from 1 to 4096",
        )?;
        ParamError::check(
            (1..=MAX_WIDTH).contains(&m.ndf),
            "model.ndf",
            "from 1 to 4096",
        )?;
        ParamError::check(
            (1..=100).contains(&params.n_critic),
            "n_critic",
            "from 1 to 100",
        )?;
        ParamError::check(
            params.gp_lambda.is_finite() && params.gp_lambda >= 0.0,
            "gp_lambda",
            "a number >= 0",
        )?;
        ParamError::check(
            (0.0..0.5).contains(&params.label_smoothing),
            "label_smoothing",
            "in [0, 0.5)",
        )?;
        ParamError::check(params.sample_every >= 1, "sample_every", "at least 1")?;
        setup::validate_optimizer("generator.optimizer", &params.generator.optimizer)?;
        setup::validate_optimizer("discriminator.optimizer", &params.discriminator.optimizer)
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
        if params.loss == GanLoss::Acgan {
            setup::require_labels(&dataset, "train")?;
        }
        let config = params
            .model
            .config(params.loss, dataset.classes.len() as i64);
        let device = ctx.device();
        let model = GanModel::new(config, device)?;
        let batch = effective_batch(params.batch_size, &[dataset.len()]);
        ctx.log(format!(
            "train {}; {} loss, batch {batch}",
            dataset.summary(),
            params.loss.name()
        ));
        let norm = symmetric(&dataset);
        let format = InputFormat {
            channels: config.channels,
            image_size: config.image_size,
        };
        let data = DeviceDataset::new(&dataset, &norm, format, device)?;
        let order = IndexStream::new(
            dataset.len(),
            batch,
            stream_seed(ctx.seed(), SOURCE_STREAM),
            device,
        );
        let settings = GanSettings {
            loss: params.loss,
            n_critic: params.n_critic,
            gp_lambda: params.gp_lambda,
            label_smoothing: params.label_smoothing,
            generator: params.generator.optimizer,
            discriminator: params.discriminator.optimizer,
        };
        let mut training = GanTraining::new(model, settings, data, order);
        let plan = LoopPlan::new("gan", params.epochs, "generator.optimizer.lr")
            .hook_every(params.sample_every)
            .precision(params.precision);
        let history = train(ctx, &plan, &mut training)?;

        let meta = ModelMeta {
            method: params.loss.name().into(),
            model: ModelFamily::Gan(config),
            class_names: if config.conditional() {
                dataset.classes.clone()
            } else {
                Vec::new()
            },
            normalisation: vec![norm],
            parts: ["generator", "discriminator"].map(String::from).to_vec(),
        };
        let m = &training.model;
        let stores = [&m.generator_vs, &m.discriminator_vs];
        setup::write_model_dir(
            ctx.out_dir(),
            &named_variables(&stores),
            &meta,
            &m.tree(),
            &stores,
            &history,
        )?;
        let mut outcome = setup::outcome(
            &history,
            &format!("{} {}", Self::KIND, params.loss.name()),
            &["g_loss", "d_loss", "d_real", "d_fake"],
        );
        if let Some(&last) = training.rendered.last() {
            outcome.figure(
                progress_file(last),
                format!("fixed noise after epoch {last}"),
            );
        }
        if training.save_strip(ctx.out_dir())? {
            let epochs: Vec<String> = training.rendered.iter().map(usize::to_string).collect();
            outcome.figure(
                STRIP_FILE,
                format!("progress: one row per epoch ({})", epochs.join(", ")),
            );
        }
        draw_d_outputs(&history, ctx.out_dir())?;
        outcome.figure(D_OUTPUTS_FILE, "D(x) and D(G(z)) per epoch");
        Ok(outcome)
    }
}

const D_OUTPUTS_FILE: &str = "d_outputs.png";

/// Mean 0.5 and std 0.5 per channel: pixels in `[0, 1]` become `[-1, 1]`, the generator's range.
fn symmetric(dataset: &Dataset) -> Normalisation {
    let channels = dataset.shape[1];
    Normalisation {
        domain: dataset.domain.clone(),
        mean: vec![0.5; channels],
        std: vec![0.5; channels],
    }
}

fn draw_d_outputs(history: &History, out_dir: &camino::Utf8Path) -> anyhow::Result<()> {
    let column = |key: &str| -> Vec<f64> {
        history
            .epochs
            .iter()
            .map(|e| e.get(key).copied().unwrap_or(f64::NAN))
            .collect()
    };
    let (real, fake) = (column("d_real"), column("d_fake"));
    let series = [
        Series {
            name: "D(x)",
            values: &real,
        },
        Series {
            name: "D(G(z))",
            values: &fake,
        },
    ];
    let plot = CurvesPlot {
        title: "discriminator outputs",
        x_label: "epoch",
        y_label: "mean output",
        series: &series,
    };
    curves_png(
        &out_dir.join(D_OUTPUTS_FILE),
        &plot,
        crate::viz::DEFAULT_SIZE,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, params, tempdir};

    #[test]
    fn optimizers_default_by_loss() {
        let p = params::<TrainGanStage>("").unwrap();
        assert_eq!(
            p.generator.optimizer,
            OptimizerSettings::adam(2e-4, [0.5, 0.999])
        );
        assert_eq!((p.batch_size, p.model.z_dim, p.model.ngf), (128, 100, 64));
        let p = params::<TrainGanStage>("loss = \"wgan_gp\"\n[discriminator.optimizer]\nlr = 3e-4")
            .unwrap();
        assert_eq!(
            p.generator.optimizer,
            OptimizerSettings::adam(1e-4, [0.0, 0.9])
        );
        assert_eq!(
            (
                p.discriminator.optimizer.lr,
                p.discriminator.optimizer.betas
            ),
            (3e-4, [0.0, 0.9])
        );
        let err = params::<TrainGanStage>("model = { z_dim = 0 }").unwrap_err();
        assert!(err.to_string().contains("model.z_dim"), "{err}");
    }

    #[test]
    fn trains_each_loss_and_writes_grids_and_the_strip() {
        for loss in ["dcgan", "wgan_gp", "acgan"] {
            let (_guard, root) = tempdir();
            let data = banded(32, 1, 28, 1);
            let mut ctx = context(&root, vec![input(&root, "train", &data)]);
            let text = format!("loss = \"{loss}\"\nepochs = 2\nbatch_size = 8\nn_critic = 2\nmodel = {{ image_size = 28, ngf = 4, ndf = 4, z_dim = 8 }}");
            let outcome =
                TrainGanStage::run(params::<TrainGanStage>(&text).unwrap(), &mut ctx).unwrap();
            for key in ["g_loss", "d_loss", "d_real", "d_fake"] {
                assert!(
                    outcome.metrics.contains_key(key),
                    "{loss}: {key} missing: {outcome:?}"
                );
            }
            assert_eq!(outcome.metrics.contains_key("gp"), loss == "wgan_gp");
            assert_eq!(outcome.metrics.contains_key("class_acc"), loss == "acgan");
            for file in [
                "progress/epoch_001.png",
                "progress/epoch_002.png",
                STRIP_FILE,
                D_OUTPUTS_FILE,
                "model.json",
            ] {
                assert!(
                    root.join("out").join(file).exists(),
                    "{loss}: {file} missing"
                );
            }
            assert_eq!(outcome.figures.len(), 3);
        }
    }
}
