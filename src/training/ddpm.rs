//! Training a class-conditional DDPM (Ho et al. 2020) with classifier-free guidance (Ho &
//! Salimans 2022), as TeaPearce's Conditional_Diffusion_MNIST does: each step draws t uniformly
//! from 1..=n_T and noise eps, noises the batch to x_t, drops each image's class with
//! probability `drop_prob`, and regresses the network's output on eps (MSE). An optional
//! exponential moving average of the weights (`ema_decay`) is what sampling then uses.
//!
//! Images are scaled to [-1, 1] (mean 0.5, std 0.5 per channel).

use std::collections::HashMap;

use camino::Utf8Path;
use tch::{nn, Device, Kind, Tensor};

use super::batches::{DeviceDataset, IndexStream, Normalisation};
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::moving_average::MovingAverage;
use super::optimizer::{Optimizer, OptimizerSettings};
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::diffusion::ddpm::{self, GuidedNoiseModel};
use crate::diffusion::NoiseSchedule;
use crate::models::{ContextUnet, ContextUnetConfig, ModelError};
use crate::viz::grid::{save_grid, to_unit, Scaling};

/// The normalisation to [-1, 1] a diffusion model is trained and sampled in.
pub fn symmetric_normalisation(domain: &str, channels: usize) -> Normalisation {
    Normalisation {
        domain: domain.to_owned(),
        mean: vec![0.5; channels],
        std: vec![0.5; channels],
    }
}

/// A [`ContextUnet`] as the guided noise model of a batch of classes.
pub struct ConditionalEps<'a> {
    pub net: &'a ContextUnet,
    /// `[b]` int64.
    pub labels: Tensor,
    pub n_t: usize,
}

impl GuidedNoiseModel for ConditionalEps<'_> {
    fn eps(&self, x: &Tensor, t: usize, drop_class: bool) -> Tensor {
        let b = x.size()[0];
        let options = (Kind::Float, x.device());
        let time = Tensor::full([b], t as f64 / self.n_t as f64, options);
        let drop = Tensor::full([b], if drop_class { 1.0 } else { 0.0 }, options);
        self.net.forward(x, &self.labels, &time, &drop, false)
    }
}

/// A batch's loss with every random choice given: MSE between `noise` and the network's
/// prediction from x_t (`t` `[b]` int64 in 1..=n), classes dropped where `drop` `[b]` is 1.
pub fn ddpm_loss(
    net: &ContextUnet,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    labels: &Tensor,
    t: &Tensor,
    noise: &Tensor,
    drop: &Tensor,
) -> Tensor {
    let x_t = ddpm::noised(schedule, x0, t, noise);
    let time = t.to_kind(Kind::Float) / schedule.len() as f64;
    let predicted = net.forward(&x_t, labels, &time, drop, true);
    predicted.mse_loss(noise, tch::Reduction::Mean)
}

/// `per_class` samples of each class in `0..classes` (class-major), guided with `w`, from
/// `noise` `[classes * per_class, C, S, S]`; the stochastic terms are drawn after seeding
/// libtorch with `seed`.
pub fn class_samples(
    net: &ContextUnet,
    schedule: &NoiseSchedule,
    labels: &Tensor,
    noise: &Tensor,
    w: f64,
    seed: u64,
    snapshot_at: &[usize],
) -> (Tensor, Vec<(usize, Tensor)>) {
    tch::manual_seed(seed as i64);
    let model = ConditionalEps {
        net,
        labels: labels.shallow_clone(),
        n_t: schedule.len(),
    };
    let shape = noise.size();
    let device = noise.device();
    crate::accel::inference(|| {
        ddpm::sample(
            schedule,
            &model,
            noise,
            w,
            |_| Tensor::randn(shape.as_slice(), (Kind::Float, device)),
            snapshot_at,
        )
    })
}

/// The DDPM's weights with an optional moving average.
pub struct DdpmModel {
    pub vs: nn::VarStore,
    pub net: ContextUnet,
    /// The moving average and the network that reads it.
    pub ema: Option<(MovingAverage, ContextUnet)>,
}

impl DdpmModel {
    pub fn new(
        config: ContextUnetConfig,
        ema_decay: Option<f64>,
        device: Device,
    ) -> Result<Self, ModelError> {
        let vs = nn::VarStore::new(device);
        let net = ContextUnet::new(&vs.root(), config)?;
        let ema = match ema_decay {
            Some(decay) => {
                let ema_vs = nn::VarStore::new(device);
                let ema_net = ContextUnet::new(&ema_vs.root(), config)?;
                Some((MovingAverage::new(ema_vs, &vs, decay), ema_net))
            }
            None => None,
        };
        Ok(DdpmModel { vs, net, ema })
    }

    /// The weights sampling uses: the moving average when there is one.
    pub fn sampling(&self) -> (&nn::VarStore, &ContextUnet) {
        match &self.ema {
            Some((average, net)) => (&average.store, net),
            None => (&self.vs, &self.net),
        }
    }

    fn update_ema(&mut self) {
        if let Some((average, _)) = &self.ema {
            average.update();
        }
    }
}

/// A DDPM training run: model, optimizer, data and schedule.
pub struct DdpmTraining {
    pub model: DdpmModel,
    optimizer: Optimizer,
    data: DeviceDataset,
    order: IndexStream,
    pub schedule: NoiseSchedule,
    drop_prob: f64,
    classes: i64,
    /// The fixed starting noise of the periodic sample grid and its guidance weight.
    grid_noise: Tensor,
    grid_guidance: f64,
    grid_seed: u64,
}

/// Samples per class in the periodic grid.
pub const GRID_PER_CLASS: i64 = 10;

impl DdpmTraining {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: DdpmModel,
        settings: OptimizerSettings,
        data: DeviceDataset,
        order: IndexStream,
        schedule: NoiseSchedule,
        drop_prob: f64,
        grid_guidance: f64,
        seed: u64,
    ) -> Self {
        let optimizer = Optimizer::new(settings, &[&model.vs]);
        let classes = model.net.config.classes;
        let config = model.net.config;
        let generator_seed = seed.wrapping_add(0x5eed);
        tch::manual_seed(generator_seed as i64);
        let grid_noise = Tensor::randn(
            [
                classes * GRID_PER_CLASS,
                config.channels,
                config.image_size,
                config.image_size,
            ],
            (Kind::Float, model.vs.device()),
        );
        DdpmTraining {
            model,
            optimizer,
            data,
            order,
            schedule,
            drop_prob,
            classes,
            grid_noise,
            grid_guidance,
            grid_seed: generator_seed,
        }
    }

    /// Writes the 10-per-class grid (rows = classes) to `path`.
    pub fn save_grid(&self, path: &Utf8Path) -> anyhow::Result<()> {
        let labels = Tensor::arange(self.classes, (Kind::Int64, self.grid_noise.device()))
            .repeat_interleave_self_int(GRID_PER_CLASS, 0, None);
        let (_, net) = self.model.sampling();
        let (images, _) = class_samples(
            net,
            &self.schedule,
            &labels,
            &self.grid_noise,
            self.grid_guidance,
            self.grid_seed,
            &[],
        );
        save_grid(&to_unit(&images, Scaling::Symmetric), GRID_PER_CLASS, path)?;
        Ok(())
    }
}

impl TrainingMethod for DdpmTraining {
    fn steps_per_epoch(&self) -> usize {
        self.order.batches_per_pass()
    }

    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        let index = self.order.next_batch();
        let x0 = self.data.images(&index);
        let labels = self.data.labels_at(&index);
        let b = x0.size()[0];
        let device = x0.device();
        let t = Tensor::randint_low(
            1,
            self.schedule.len() as i64 + 1,
            [b],
            (Kind::Int64, device),
        );
        let noise = x0.randn_like();
        let drop = Tensor::rand([b], (Kind::Float, device))
            .lt(self.drop_prob)
            .to_kind(Kind::Float);
        let loss = ddpm_loss(
            &self.model.net,
            &self.schedule,
            &x0,
            &labels,
            &t,
            &noise,
            &drop,
        );
        self.optimizer.backward_step(&loss, at.p)?;
        self.model.update_ema();
        Ok(named_scalars(&["train_loss"], &[&loss])?)
    }

    fn end_epoch(&mut self, end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        if end.periodic {
            self.save_grid(&end.out_dir.join(grid_file(end.epoch)))?;
        }
        Ok(vec![("lr", self.optimizer.lr())])
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("model", &self.model.vs);
        if let Some((average, _)) = &self.model.ema {
            average.save_state("ema", state);
        }
        self.optimizer.save_state("optimizer", state);
        self.order.save_state("order", state);
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.model.vs, "model", state)?;
        if let Some((average, _)) = &self.model.ema {
            average.load_state("ema", state)?;
        }
        self.optimizer.load_state("optimizer", state)?;
        self.order.load_state("order", state)
    }
}

/// Where the periodic grid of `epoch` goes, relative to the output directory.
pub fn grid_file(epoch: usize) -> String {
    format!("samples/epoch_{epoch:03}.png")
}

/// The noise schedule beside a DDPM's model files.
pub const SCHEDULE_FILE: &str = "schedule.json";

#[derive(Debug, thiserror::Error)]
pub enum DdpmFileError {
    #[error("cannot read {path}: {message} (is this the output of a train_ddpm stage?)")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

pub fn write_schedule(
    dir: &Utf8Path,
    config: &crate::diffusion::ScheduleConfig,
) -> Result<(), DdpmFileError> {
    let path = dir.join(SCHEDULE_FILE);
    let write_err = |message: String| DdpmFileError::Write {
        path: path.to_string(),
        message,
    };
    let json = serde_json::to_vec_pretty(config).map_err(|e| write_err(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| write_err(e.to_string()))
}

/// A trained DDPM read back from a `train_ddpm` output: the sampling weights and the schedule.
pub struct LoadedDdpm {
    pub net: ContextUnet,
    pub schedule: crate::diffusion::ScheduleConfig,
    pub class_names: Vec<String>,
    /// The training set's domain (what a classifier of that domain normalises samples with).
    pub domain: String,
    _vs: nn::VarStore,
}

impl LoadedDdpm {
    pub fn load(dir: &Utf8Path, device: Device) -> anyhow::Result<Self> {
        let checkpoint = super::checkpoint::Checkpoint::open(dir)?;
        let crate::models::ModelFamily::ContextUnet(config) = checkpoint.meta.model.clone() else {
            return Err(checkpoint
                .wrong_family("a DDPM noise model (train_ddpm)")
                .into());
        };
        let path = dir.join(SCHEDULE_FILE);
        let read_err = |message: String| DdpmFileError::Read {
            path: path.to_string(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
        let schedule = serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
        let vs = nn::VarStore::new(device);
        let net = ContextUnet::new(&vs.root(), config)?;
        checkpoint.load_weights(&vs)?;
        let domain = checkpoint
            .meta
            .normalisation
            .first()
            .map(|n| n.domain.clone())
            .unwrap_or_default();
        Ok(LoadedDdpm {
            net,
            schedule,
            class_names: checkpoint.meta.class_names,
            domain,
            _vs: vs,
        })
    }
}
