//! `sample_diffusion`: ancestral sampling of a `train_ddpm` model with classifier-free guidance,
//! eps = (1 + w) eps_cond - w eps_uncond, for every weight of `guidance`, as the course's digit
//! protocol asks: `per_class` images per class named `{class}_{idx:03}.png` in one folder per
//! weight (`w0/`, `w2/`, `w0_5/` for 0.5), each folder also a labelled dataset (the named output
//! of the same name) that `evaluate` scores with a digit classifier; a grid per weight (rows =
//! classes, columns = the first `grid_columns` noise vectors, shared across classes); and the
//! reverse-process strip: the first image of class 0 at the six `strip_timesteps` (n_t = pure
//! noise, 0 = the sample), sampled with the last weight of `guidance`.
//!
//! Deterministic for a seed: the starting noise of image `idx` is the same for every class and
//! weight; the noise added along the way is drawn per chunk of `batch` images.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::Dataset;
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};
use crate::training::ddpm::{class_samples, LoadedDdpm};
use crate::training::threads;
use crate::viz::grid::{save_grid, save_png, to_unit, Scaling};

pub struct SampleDiffusionStage;

/// Parameters of a `sample_diffusion` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleDiffusionParams {
    /// Images per class and guidance weight.
    #[serde(default = "default_per_class")]
    pub per_class: usize,
    /// Guidance weights w (0 = purely conditional).
    #[serde(default = "default_guidance")]
    pub guidance: Vec<f64>,
    /// Columns of the per-weight grid (noise vectors per class).
    #[serde(default = "default_grid_columns")]
    pub grid_columns: usize,
    /// Six timesteps of the reverse-process strip, from n_t (noise) down to 0 (the sample);
    /// default evenly spaced.
    #[serde(default)]
    pub strip_timesteps: Option<Vec<usize>>,
    /// Images sampled together.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_per_class() -> usize {
    100
}
fn default_guidance() -> Vec<f64> {
    vec![0.0, 2.0]
}
fn default_grid_columns() -> usize {
    10
}
fn default_batch() -> usize {
    500
}

/// Snapshots in the strip.
pub const STRIP_LENGTH: usize = 6;

/// The named output of guidance weight `w`: `w2`, `w0_5`, `wm1` for -1.
pub fn output_name(w: f64) -> String {
    format!("w{w}").replace('.', "_").replace('-', "m")
}

impl Stage for SampleDiffusionStage {
    type Params = SampleDiffusionParams;
    const KIND: &'static str = "sample_diffusion";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Guided DDPM samples per class, grids, the reverse-process strip, datasets to evaluate";
    const INPUTS: Inputs = Inputs::Named(&[InputSpec::required("model", "a train_ddpm output")]);
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

[stages.samples]
kind = "sample_diffusion"
inputs = { model = "ddpm" }
per_class = 100             # images {class}_{idx:03}.png per class and weight
guidance = [0.0, 2.0]       # outputs samples.w0, samples.w2 (labelled datasets)
grid_columns = 10
strip_timesteps = [50, 40, 30, 20, 10, 0]
batch = 500
"#;

    fn validate(p: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(
            (1..=100_000).contains(&p.per_class),
            "per_class",
            "from 1 to 100000",
        )?;
        ParamError::check(!p.guidance.is_empty(), "guidance", "at least one weight")?;
        for (i, w) in p.guidance.iter().enumerate() {
            ParamError::check(w.is_finite(), &format!("guidance.{i}"), "a finite number")?;
        }
        let mut names: Vec<String> = p.guidance.iter().map(|&w| output_name(w)).collect();
        names.sort();
        ParamError::check(
            names.windows(2).all(|w| w[0] != w[1]),
            "guidance",
            "distinct weights",
        )?;
        ParamError::check(
            (1..=p.per_class).contains(&p.grid_columns),
            "grid_columns",
            "from 1 to per_class",
        )?;
        ParamError::check((1..=1 << 16).contains(&p.batch), "batch", "from 1 to 65536")?;
        if let Some(steps) = &p.strip_timesteps {
            ParamError::check(
                steps.len() == STRIP_LENGTH,
                "strip_timesteps",
                "six timesteps",
            )?;
        }
        Ok(())
    }

    fn shape(p: &Self::Params) -> StageShape {
        StageShape {
            outputs: p.guidance.iter().map(|&w| output_name(w)).collect(),
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        tch::manual_seed(ctx.seed() as i64);
        threads::use_physical_cores();
        let device = ctx.device();
        let model_dir = ctx.input("model")?.dir.clone();
        let ddpm = LoadedDdpm::load(&model_dir, device)
            .with_context(|| format!("input `model` of stage `{}`", ctx.name()))?;
        let schedule = ddpm.schedule.build();
        let n_t = schedule.len();
        let strip_at = params.strip_timesteps.clone().unwrap_or_else(|| {
            (0..STRIP_LENGTH)
                .rev()
                .map(|k| n_t * k / (STRIP_LENGTH - 1))
                .collect()
        });
        if let Some(&t) = strip_at.iter().find(|&&t| t > n_t) {
            anyhow::bail!("strip_timesteps: {t} is beyond the model's n_t = {n_t}; use timesteps from {n_t} down to 0");
        }
        let config = ddpm.net.config;
        let (classes, per_class) = (config.classes as usize, params.per_class);
        let shape = [
            per_class as i64,
            config.channels,
            config.image_size,
            config.image_size,
        ];
        let start_noise = Tensor::randn(shape, (Kind::Float, device));
        let total = classes * per_class;
        let mut outcome = StageOutcome::default();
        let strip_w = *params.guidance.last().unwrap_or(&0.0);
        for (wi, &w) in params.guidance.iter().enumerate() {
            let name = output_name(w);
            let folder = crate::data::dataset::output_dir(ctx.out_dir(), &name);
            let mut bytes =
                vec![
                    0u8;
                    total * (config.channels * config.image_size * config.image_size) as usize
                ];
            let image_len = bytes.len() / total;
            let mut grid = Vec::new();
            let mut strip = Vec::new();
            ctx.in_chunks(format!("sampling w = {w}"), total, params.batch, |range| {
                let index: Vec<i64> = range.clone().map(|i| (i % per_class) as i64).collect();
                let labels: Vec<i64> = range.clone().map(|i| (i / per_class) as i64).collect();
                let noise =
                    start_noise.index_select(0, &Tensor::from_slice(&index).to_device(device));
                let labels_t = Tensor::from_slice(&labels).to_device(device);
                let seed = ctx.seed().wrapping_add((wi * total + range.start) as u64);
                let snapshot_at: &[usize] = if w == strip_w && range.start == 0 {
                    &strip_at
                } else {
                    &[]
                };
                let (images, snapshots) = class_samples(
                    &ddpm.net,
                    &schedule,
                    &labels_t,
                    &noise,
                    w,
                    seed,
                    snapshot_at,
                );
                if !snapshots.is_empty() {
                    strip = snapshots.iter().map(|(_, x)| x.get(0)).collect();
                }
                let unit = to_unit(&images, Scaling::Symmetric);
                let chunk_bytes = (&unit * 255.0 + 0.5)
                    .clamp(0.0, 255.0)
                    .to_kind(Kind::Uint8)
                    .to_device(tch::Device::Cpu)
                    .flatten(0, -1);
                let chunk_bytes = Vec::<u8>::try_from(chunk_bytes)?;
                bytes[range.start * image_len..range.end * image_len].copy_from_slice(&chunk_bytes);
                for (k, i) in range.clone().enumerate() {
                    let (class, idx) = (i / per_class, i % per_class);
                    save_png(
                        &unit.get(k as i64),
                        &folder.join(format!("{class}_{idx:03}.png")),
                    )?;
                    if idx < params.grid_columns {
                        grid.push((i, unit.get(k as i64)));
                    }
                }
                Ok(())
            })?;
            grid.sort_by_key(|(i, _)| *i);
            let grid: Vec<Tensor> = grid.into_iter().map(|(_, t)| t).collect();
            let grid_file = format!("grid_{name}.png");
            save_grid(
                &Tensor::stack(&grid, 0),
                params.grid_columns as i64,
                &ctx.out_dir().join(&grid_file),
            )?;
            outcome.figure(
                grid_file,
                format!("w = {w}: rows = classes, columns = noise vectors"),
            );
            if !strip.is_empty() {
                save_grid(
                    &to_unit(&Tensor::stack(&strip, 0), Scaling::Symmetric),
                    STRIP_LENGTH as i64,
                    &ctx.out_dir().join("strip.png"),
                )?;
                outcome.figure(
                    "strip.png",
                    format!(
                        "reverse process of the first `{}` (w = {w}) at t = {strip_at:?}",
                        ddpm.class_names.first().map(String::as_str).unwrap_or("0")
                    ),
                );
            }
            let labels = (0..total).map(|i| (i / per_class) as i64).collect();
            let shape = [
                total,
                config.channels as usize,
                config.image_size as usize,
                config.image_size as usize,
            ];
            let dataset = Dataset::new(
                bytes,
                shape,
                labels,
                ddpm.class_names.clone(),
                ddpm.domain.clone(),
            )?;
            ctx.save_dataset(&name, &dataset, &mut outcome)?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::params;

    #[test]
    fn weights_name_outputs_and_bad_weights_are_refused() {
        assert_eq!(
            (
                output_name(0.0),
                output_name(2.0),
                output_name(0.5),
                output_name(-1.0)
            ),
            ("w0".into(), "w2".into(), "w0_5".into(), "wm1".into())
        );
        let p = params::<SampleDiffusionStage>("").unwrap();
        assert_eq!(SampleDiffusionStage::shape(&p).outputs, ["w0", "w2"]);
        assert_eq!(
            params::<SampleDiffusionStage>("guidance = [1.0, nan]")
                .unwrap_err()
                .path,
            ["guidance", "1"]
        );
        assert_eq!(
            params::<SampleDiffusionStage>("guidance = [2.0, 2.0]")
                .unwrap_err()
                .path,
            ["guidance"]
        );
    }
}
