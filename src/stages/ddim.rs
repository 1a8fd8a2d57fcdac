//! `ddim`: DDIM sampling (Song et al. 2021) from a trained noise model, deterministic
//! (`eta = 0`) and stochastic, as the course's face problem asks.
//!
//! The noise model is either the course's pretrained face UNet (`unet`, a `UNet.pt` state_dict,
//! every name and shape checked; see `models::face_unet`) on a linear schedule of `n_t` betas
//! from `beta_start` to `beta_end` (1000, 1e-4, 0.02), or a `train_ddpm` output (input `model`,
//! its own schedule; image `i` is of class `i mod classes`, guided with `guidance`). The
//! starting noises are the tensor files of `noise_dir` (`00.pt`, `01.pt`, ..., each `[1, C, S,
//! S]`) or `n_noises` drawn from the seed.
//!
//! `steps` evenly spaced timesteps under `convention` (`offset`: 981, ..., 1, ending at
//! alpha_bar_0 with x0 clamped, which reproduces the course's ground truth; `zero`: 980, ...,
//! 0, ending at 1, unclamped by default; `clip_x0` overrides). Outputs: the `eta = 0` sample of
//! every noise as `eta0/NN.png` (saved by per-image min-max scaling, how the ground truth was
//! written, or by clamping [-1, 1]), with, given `gt_dir`, the `mse` against `gt_dir/NN.png` as
//! the course's checker computes it (mean squared difference of the uint8 pixel arrays; per
//! image `mse.NN` and the mean `mse`); `eta_grid.png` (rows = `eta`, columns = the first
//! `grid_noises` noises); `interpolation.png` (`interpolate = [a, b]` noises, alpha = 0, 0.1,
//! ..., 1: slerp in the first row, linear in the second, eta 0).

use std::collections::BTreeMap;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::diffusion::ddpm::guided_eps;
use crate::diffusion::interpolate::{self, alphas};
use crate::diffusion::{Convention, Ddim, NoiseSchedule};
use crate::models::weights::load_file_strict;
use crate::models::{FaceUnet, FaceUnetConfig};
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::ddpm::{ConditionalEps, LoadedDdpm};
use crate::training::threads;
use crate::viz::grid::{save_grid, save_png, to_bytes, to_unit, Scaling};

pub struct DdimStage;

/// How a sample becomes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Saving {
    /// Per image (x - min) / (max - min): how the course's ground truth was written.
    MinMax,
    /// (x + 1) / 2 clamped to [0, 1].
    Clamp,
}

impl Saving {
    fn scaling(self) -> Scaling {
        match self {
            Saving::MinMax => Scaling::MinMax,
            Saving::Clamp => Scaling::Symmetric,
        }
    }
}

/// Parameters of a `ddim` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DdimParams {
    /// The course's face UNet weights (`hw2_data/face/UNet.pt`); or give input `model`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub unet: Option<Utf8PathBuf>,
    /// Widths of the face UNet (the course's by default).
    #[serde(default = "default_face")]
    pub face_unet: FaceUnetConfig,
    /// Schedule of the face UNet: steps, first and last beta.
    #[serde(default = "default_n_t")]
    pub n_t: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// Folder of noise tensors `00.pt`, `01.pt`, ... (`[1, C, S, S]` each); or use `n_noises`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub noise_dir: Option<Utf8PathBuf>,
    /// Noises drawn from the seed when there is no `noise_dir`.
    #[serde(default = "default_n_noises")]
    pub n_noises: usize,
    /// Side of the drawn noises for the face UNet (a `train_ddpm` model uses its own).
    #[serde(default = "default_image_size")]
    pub image_size: i64,
    /// DDIM steps; must divide the schedule's.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// The eta values of the grid (0 = deterministic DDIM, 1 = DDPM-like).
    #[serde(default = "default_eta")]
    pub eta: Vec<f64>,
    /// `offset` (981..1, the course's) or `zero` (980..0).
    #[serde(default = "default_convention")]
    pub convention: Convention,
    /// Clamp the predicted x0 to [-1, 1] (default: yes under `offset`, no under `zero`).
    #[serde(default)]
    pub clip_x0: Option<bool>,
    /// `min_max` (per image) or `clamp`.
    #[serde(default = "default_saving")]
    pub save: Saving,
    /// Reference PNGs `NN.png` of the eta = 0 outputs, for the `mse` metric.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub gt_dir: Option<Utf8PathBuf>,
    /// Noises (columns) of the eta grid.
    #[serde(default = "default_grid_noises")]
    pub grid_noises: usize,
    /// The two noises (by position) to interpolate between.
    #[serde(default = "default_pair")]
    pub interpolate: [usize; 2],
    /// Guidance weight for a `train_ddpm` model.
    #[serde(default)]
    pub guidance: f64,
    /// Images denoised together.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_face() -> FaceUnetConfig {
    FaceUnetConfig::COURSE
}
fn default_n_t() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    1e-4
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_n_noises() -> usize {
    10
}
fn default_image_size() -> i64 {
    256
}
fn default_steps() -> usize {
    50
}
fn default_eta() -> Vec<f64> {
    vec![0.0, 0.25, 0.5, 0.75, 1.0]
}
fn default_convention() -> Convention {
    Convention::Offset
}
fn default_saving() -> Saving {
    Saving::MinMax
}
fn default_grid_noises() -> usize {
    4
}
fn default_pair() -> [usize; 2] {
    [0, 1]
}
fn default_batch() -> usize {
    2
}

/// Interpolation points per row (alpha = 0, 0.1, ..., 1).
const INTERPOLATION_POINTS: usize = 11;

#[derive(Debug, thiserror::Error)]
pub enum DdimStageError {
    #[error("noise file {path}: shape {found:?}, expected [1, {channels}, S, S] with S {size}")]
    NoiseShape {
        path: Utf8PathBuf,
        found: Vec<i64>,
        channels: i64,
        size: String,
    },
    #[error("noise folder {dir} has no NN.pt files")]
    NoNoise { dir: Utf8PathBuf },
    #[error("noise folder {dir}: noise {index} of `interpolate` or the grid does not exist ({count} noises)")]
    NoiseIndex {
        dir: String,
        index: usize,
        count: usize,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: Utf8PathBuf, message: String },
    #[error("reference image {path} is {found:?} (width, height, channels); the sample {name} is {expected:?}")]
    GtSize {
        path: Utf8PathBuf,
        name: String,
        found: (u32, u32, usize),
        expected: (u32, u32, usize),
    },
    #[error("this stage needs a noise model: give `unet` (the face UNet's UNet.pt) or the input `model` (a train_ddpm output), not both and not neither")]
    NoiseModel,
}

/// Reads a noise tensor: a PyTorch `torch.save` of one tensor (`.pt`), or the first tensor of a
/// safetensors file.
pub fn read_noise(path: &Utf8Path) -> anyhow::Result<Option<Tensor>> {
    if path.extension() == Some("safetensors") {
        let tensors = Tensor::read_safetensors(path).map_err(|e| DdimStageError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(tensors.into_iter().next().map(|(_, t)| t))
    } else {
        Ok(Some(crate::pytorch_file::read_tensor(path)?))
    }
}

/// The noise model a chain calls: `eps(x, t)` at schedule index `t`.
/// Both networks are boxed: their blocks hold every conv's hyper-parameters, hundreds of bytes.
enum NoiseModel {
    Face {
        unet: Box<FaceUnet>,
        _vs: nn::VarStore,
        schedule: NoiseSchedule,
    },
    Digits {
        ddpm: Box<LoadedDdpm>,
        schedule: NoiseSchedule,
        guidance: f64,
    },
}

impl NoiseModel {
    fn schedule(&self) -> &NoiseSchedule {
        match self {
            NoiseModel::Face { schedule, .. } | NoiseModel::Digits { schedule, .. } => schedule,
        }
    }

    /// Channels and, when fixed, the side of the images.
    fn image_format(&self) -> (i64, Option<i64>) {
        match self {
            NoiseModel::Face { .. } => (3, None),
            NoiseModel::Digits { ddpm, .. } => {
                (ddpm.net.config.channels, Some(ddpm.net.config.image_size))
            }
        }
    }

    /// `x` `[b, C, S, S]` at index `t`; `first` is the position of the batch's first image
    /// (a digit model's class is its position mod the class count).
    fn eps(&self, x: &Tensor, t: usize, first: usize) -> Tensor {
        match self {
            NoiseModel::Face { unet, .. } => {
                let b = x.size()[0];
                unet.forward(x, &Tensor::full([b], t as f64, (Kind::Float, x.device())))
            }
            NoiseModel::Digits {
                ddpm,
                schedule,
                guidance,
            } => {
                let b = x.size()[0] as usize;
                let classes = ddpm.net.config.classes as usize;
                let labels: Vec<i64> = (first..first + b).map(|i| (i % classes) as i64).collect();
                let model = ConditionalEps {
                    net: &ddpm.net,
                    labels: Tensor::from_slice(&labels).to_device(x.device()),
                    n_t: schedule.len(),
                };
                guided_eps(&model, x, t + 1, *guidance)
            }
        }
    }
}

impl Stage for DdimStage {
    type Params = DdimParams;
    const KIND: &'static str = "ddim";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "DDIM sampling (eta grid, slerp vs linear interpolation, MSE against reference images)";
    const INPUTS: Inputs = Inputs::Named(&[InputSpec::optional(
        "model",
        "a train_ddpm output (instead of `unet`)",
    )]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 10

[stages.ddpm]
kind = "train_ddpm"
inputs = { train = "digits.train" }
model = { n_feat = 16 }
n_t = 50
epochs = 1

[stages.ddim]
kind = "ddim"
inputs = { model = "ddpm" }        # or: unet = "hw2_data/face/UNet.pt"
# noise_dir = "hw2_data/face/noise" # 00.pt, 01.pt, ...; else n_noises from the seed
n_noises = 10
steps = 10                         # must divide n_t (50 for UNet.pt's 1000)
eta = [0.0, 0.25, 0.5, 0.75, 1.0]
convention = "offset"              # 981..1 (the course's GT) or "zero" (980..0)
save = "min_max"                   # or "clamp"
# gt_dir = "hw2_data/face/GT"      # mse against NN.png
grid_noises = 4
interpolate = [0, 1]
guidance = 2.0                     # a train_ddpm model only
"#;

    fn validate(p: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(p.steps >= 1, "steps", "at least 1")?;
        // A train_ddpm model's schedule is known only when it runs.
        if p.unet.is_some() {
            ParamError::check(
                p.n_t % p.steps == 0,
                "steps",
                "a divisor of the schedule's steps (n_t, 1000 for UNet.pt)",
            )?;
        }
        ParamError::check((1..=100_000).contains(&p.n_t), "n_t", "from 1 to 100000")?;
        ParamError::check(
            p.beta_start.is_finite()
                && p.beta_start > 0.0
                && p.beta_end < 1.0
                && p.beta_end >= p.beta_start,
            "beta_start",
            "0 < beta_start <= beta_end < 1",
        )?;
        ParamError::check(!p.eta.is_empty(), "eta", "at least one value")?;
        for (i, eta) in p.eta.iter().enumerate() {
            ParamError::check(
                eta.is_finite() && *eta >= 0.0,
                &format!("eta.{i}"),
                "a finite number >= 0",
            )?;
        }
        ParamError::check(p.guidance.is_finite(), "guidance", "a finite number")?;
        ParamError::check(
            (1..=10_000).contains(&p.n_noises),
            "n_noises",
            "from 1 to 10000",
        )?;
        ParamError::check(
            p.image_size >= FaceUnetConfig::MIN_IMAGE_SIZE
                && p.image_size % 32 == 0
                && p.image_size <= 4096,
            "image_size",
            "a multiple of 32 from 32 to 4096",
        )?;
        ParamError::check(p.grid_noises >= 1, "grid_noises", "at least 1")?;
        ParamError::check(
            p.interpolate[0] != p.interpolate[1],
            "interpolate",
            "two different noises",
        )?;
        // The noises of a `noise_dir` are counted only when the stage runs.
        if p.noise_dir.is_none() {
            for (i, &index) in p.interpolate.iter().enumerate() {
                ParamError::check(
                    index < p.n_noises,
                    &format!("interpolate.{i}"),
                    &format!("a noise index below `n_noises` ({})", p.n_noises),
                )?;
            }
        }
        ParamError::check((1..=1024).contains(&p.batch), "batch", "from 1 to 1024")
    }

    fn shape(p: &Self::Params) -> StageShape {
        let external_paths = [&p.unet, &p.noise_dir, &p.gt_dir]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        StageShape {
            external_paths,
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        tch::manual_seed(ctx.seed() as i64);
        threads::use_physical_cores();
        let device = ctx.device();
        let model = load_model(&params, ctx, device)?;
        let (channels, fixed_size) = model.image_format();
        let (names, noises) = load_noises(
            &params,
            channels,
            fixed_size.unwrap_or(params.image_size),
            fixed_size,
            device,
        )?;
        let count = names.len();
        for index in params
            .interpolate
            .iter()
            .copied()
            .chain([params.grid_noises.min(count) - 1])
        {
            if index >= count {
                let dir = params
                    .noise_dir
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "(drawn)".into());
                return Err(DdimStageError::NoiseIndex { dir, index, count }.into());
            }
        }
        let clip = params.clip_x0.unwrap_or(params.convention.clips_x0());
        let ddim = Ddim::new(model.schedule(), params.steps, params.convention, clip)
            .map_err(|e| anyhow::anyhow!("steps: {e}"))?;
        let scaling = params.save.scaling();
        let mut outcome = StageOutcome::default();

        // The deterministic samples of every noise.
        let deterministic = chains(ctx, &ddim, &model, &noises, 0.0, params.batch, "eta 0")?;
        let mut saved = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let image = to_unit(&deterministic.get(k as i64), scaling);
            save_png(
                &image,
                &ctx.out_dir().join("eta0").join(format!("{name}.png")),
            )?;
            saved.push(image);
        }
        if let Some(gt_dir) = &params.gt_dir {
            let errors = mse_against(gt_dir, &names, &saved)?;
            for (name, mse) in &errors {
                outcome.metrics.insert(format!("mse.{name}"), *mse);
            }
            let mean = errors.values().sum::<f64>() / errors.len() as f64;
            outcome.metrics.insert("mse".into(), mean);
            outcome.summary.push(format!(
                "ddim eta 0: mean MSE {mean:.4} against {gt_dir} over {} images",
                errors.len()
            ));
        }

        // Rows = eta, columns = the first grid noises.
        let columns = params.grid_noises.min(count);
        let grid_noise = noises.narrow(0, 0, columns as i64);
        let mut rows = Vec::new();
        for (e, &eta) in params.eta.iter().enumerate() {
            let samples = if eta == 0.0 {
                deterministic.narrow(0, 0, columns as i64)
            } else {
                tch::manual_seed(ctx.seed().wrapping_add(1 + e as u64) as i64);
                chains(
                    ctx,
                    &ddim,
                    &model,
                    &grid_noise,
                    eta,
                    params.batch,
                    &format!("eta {eta}"),
                )?
            };
            rows.push(to_unit(&samples, scaling));
        }
        save_grid(
            &Tensor::cat(&rows, 0),
            columns as i64,
            &ctx.out_dir().join("eta_grid.png"),
        )?;
        outcome.figure(
            "eta_grid.png",
            format!(
                "DDIM samples: rows eta = {:?}, columns noises {}",
                params.eta,
                names[..columns].join(", ")
            ),
        );

        // Slerp in the first row, linear in the second.
        let [a, b] = params.interpolate;
        let (z0, z1) = (noises.get(a as i64), noises.get(b as i64));
        let mut paths: Vec<Tensor> = alphas(INTERPOLATION_POINTS)
            .iter()
            .map(|&al| interpolate::slerp(&z0, &z1, al))
            .collect();
        paths.extend(
            alphas(INTERPOLATION_POINTS)
                .iter()
                .map(|&al| interpolate::linear(&z0, &z1, al)),
        );
        let interpolated = chains(
            ctx,
            &ddim,
            &model,
            &Tensor::stack(&paths, 0),
            0.0,
            params.batch,
            "interpolation",
        )?;
        save_grid(
            &to_unit(&interpolated, scaling),
            INTERPOLATION_POINTS as i64,
            &ctx.out_dir().join("interpolation.png"),
        )?;
        outcome.figure(
            "interpolation.png",
            format!(
                "noises {} -> {}, alpha 0..1: slerp (top), linear (bottom)",
                names[a], names[b]
            ),
        );
        outcome.summary.push(format!(
            "ddim: {count} noises, {} steps ({:?}), eta {:?}",
            params.steps, params.convention, params.eta
        ));
        Ok(outcome)
    }
}

fn load_model(
    params: &DdimParams,
    ctx: &StageContext,
    device: Device,
) -> anyhow::Result<NoiseModel> {
    match (&params.unet, ctx.inputs().contains_key("model")) {
        (Some(path), false) => {
            let vs = nn::VarStore::new(device);
            let unet = FaceUnet::new(&vs.root(), params.face_unet)?;
            load_file_strict(&vs, path)
                .context("`unet` is not the course's face UNet (UNet.pt)")?;
            // oneDNN's native layout: no reorder of weights and activations in every conv.
            crate::accel::memory_format::vars_to_channels_last(&vs)?;
            let schedule = NoiseSchedule::linear(params.n_t, params.beta_start, params.beta_end);
            Ok(NoiseModel::Face {
                unet: Box::new(unet),
                _vs: vs,
                schedule,
            })
        }
        (None, true) => {
            let dir = ctx.input("model")?.dir.clone();
            let ddpm = LoadedDdpm::load(&dir, device)
                .with_context(|| format!("input `model` of stage `{}`", ctx.name()))?;
            let schedule = ddpm.schedule.build();
            if schedule.len() % params.steps != 0 {
                anyhow::bail!(
                    "steps: {} does not divide the model's n_t = {}; choose a divisor",
                    params.steps,
                    schedule.len()
                );
            }
            Ok(NoiseModel::Digits {
                ddpm: Box::new(ddpm),
                schedule,
                guidance: params.guidance,
            })
        }
        _ => Err(DdimStageError::NoiseModel.into()),
    }
}

/// The noises' names (`00`, ... or the files' stems) and the noises `[n, C, S, S]`.
fn load_noises(
    params: &DdimParams,
    channels: i64,
    size: i64,
    fixed: Option<i64>,
    device: Device,
) -> anyhow::Result<(Vec<String>, Tensor)> {
    let Some(dir) = &params.noise_dir else {
        let names = (0..params.n_noises).map(|i| format!("{i:02}")).collect();
        return Ok((
            names,
            Tensor::randn(
                [params.n_noises as i64, channels, size, size],
                (Kind::Float, device),
            ),
        ));
    };
    let entries = std::fs::read_dir(dir).map_err(|e| DdimStageError::Read {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let mut files: Vec<Utf8PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Utf8PathBuf::from_path_buf(e.path()).ok())
        .filter(|p| matches!(p.extension(), Some("pt" | "pth" | "safetensors")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DdimStageError::NoNoise { dir: dir.clone() }.into());
    }
    let mut names = Vec::new();
    let mut noises = Vec::new();
    let mut side = fixed;
    for path in files {
        let tensor = read_noise(&path)?;
        let shape = tensor.as_ref().map(Tensor::size).unwrap_or_default();
        let ok = shape.len() == 4
            && shape[0] == 1
            && shape[1] == channels
            && shape[2] == shape[3]
            // A model of one image size (a train_ddpm model) fixes the side; the face UNet
            // takes any multiple of 32, the same in every file.
            && match (fixed, side) {
                (Some(s), _) | (None, Some(s)) => s == shape[2],
                (None, None) => shape[2] % 32 == 0,
            };
        let Some(tensor) = tensor.filter(|_| ok) else {
            let size = side.map_or("a multiple of 32, equal in every file".to_string(), |s| {
                s.to_string()
            });
            return Err(DdimStageError::NoiseShape {
                path,
                found: shape,
                channels,
                size,
            }
            .into());
        };
        side = Some(shape[2]);
        names.push(path.file_stem().unwrap_or_default().to_owned());
        noises.push(tensor.to_kind(Kind::Float).to_device(device));
    }
    Ok((names, Tensor::cat(&noises, 0)))
}

/// DDIM chains from every noise of `noises`, `batch` at a time.
fn chains(
    ctx: &StageContext,
    ddim: &Ddim,
    model: &NoiseModel,
    noises: &Tensor,
    eta: f64,
    batch: usize,
    what: &str,
) -> anyhow::Result<Tensor> {
    let n = noises.size()[0] as usize;
    let mut outputs = Vec::new();
    ctx.in_chunks(format!("DDIM {what}"), n, batch, |range| {
        let x = noises.narrow(0, range.start as i64, range.len() as i64);
        let shape = x.size();
        let device = x.device();
        let sample = crate::accel::inference(|| {
            ddim.sample(
                &x,
                eta,
                |x, t| model.eps(x, t, range.start),
                |_| Tensor::randn(shape.as_slice(), (Kind::Float, device)),
            )
        })?;
        outputs.push(sample);
        Ok(())
    })?;
    Ok(Tensor::cat(&outputs, 0))
}

/// The course checker's error: per image, the mean squared difference of the uint8 pixels of
/// `gt_dir/NAME.png` and the saved sample.
fn mse_against(
    gt_dir: &Utf8Path,
    names: &[String],
    saved: &[Tensor],
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut errors = BTreeMap::new();
    for (name, image) in names.iter().zip(saved) {
        let path = gt_dir.join(format!("{name}.png"));
        let reference = image::open(&path).map_err(|e| DdimStageError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let size = image.size();
        let channels = size[0] as usize;
        let expected = (size[2] as u32, size[1] as u32, channels);
        let reference_bytes = if channels == 1 {
            reference.to_luma8().into_raw()
        } else {
            reference.to_rgb8().into_raw()
        };
        let found = (
            reference.width(),
            reference.height(),
            reference.color().channel_count() as usize,
        );
        if (found.0, found.1) != (expected.0, expected.1)
            || (found.2 != channels && !(found.2 == 4 && channels == 3))
        {
            return Err(DdimStageError::GtSize {
                path,
                name: name.clone(),
                found,
                expected,
            }
            .into());
        }
        let ours = to_bytes(image);
        let sum: f64 = ours
            .iter()
            .zip(&reference_bytes)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        errors.insert(name.clone(), sum / ours.len() as f64);
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::params;

    #[test]
    fn bad_parameters_name_their_key() {
        assert_eq!(
            params::<DdimStage>("steps = 30\nunet = \"UNet.pt\"")
                .unwrap_err()
                .path,
            ["steps"]
        );
        assert_eq!(
            params::<DdimStage>("eta = [0.0, -0.5]").unwrap_err().path,
            ["eta", "1"]
        );
        assert_eq!(
            params::<DdimStage>("guidance = inf").unwrap_err().path,
            ["guidance"]
        );
        assert_eq!(
            params::<DdimStage>("n_noises = 3\ninterpolate = [0, 3]")
                .unwrap_err()
                .path,
            ["interpolate", "1"]
        );
        assert!(params::<DdimStage>("noise_dir = \"f/noise\"\ninterpolate = [0, 30]").is_ok());
        let p =
            params::<DdimStage>("unet = \"f/UNet.pt\"\nnoise_dir = \"f/noise\"\ngt_dir = \"f/GT\"")
                .unwrap();
        assert_eq!(DdimStage::shape(&p).external_paths.len(), 3);
    }
}
