//! GAN training, one method for three objectives ([`GanLoss`]):
//!
//! - `dcgan`: binary cross-entropy as in the PyTorch tutorial; D learns real = 1 (or `1 -
//!   label_smoothing`, one-sided smoothing) and fake = 0, then G minimises `BCE(D(G(z)), 1)` (the
//!   non-saturating loss, "maximise log D(G(z))").
//! - `wgan_gp`: the critic minimises `D(fake) - D(real) + lambda (||grad D(x_hat)||_2 - 1)^2` on
//!   interpolates `x_hat = real + a (fake - real)`, `a ~ U[0, 1]` per sample (double backward);
//!   `n_critic` critic steps per generator step; G minimises `-D(G(z))`.
//! - `acgan`: D minimises `L_S + L_C` (adversarial BCE on logits + class cross-entropy on real
//!   images with their labels and on fake images with the labels they were *sampled* with); G
//!   minimises `BCE(adv(G(z, c)), 1) + CE(aux(G(z, c)), c)`, i.e. it maximises `L_C - L_S`.
//!
//! A training step is one generator update and the discriminator updates before it (1, or
//! `n_critic` for WGAN-GP, each on its own batch), so an epoch (one pass over the data in batches)
//! has `batches / n_critic` steps. Scalars per step: `g_loss`, `d_loss`, `d_real` (mean D(x)),
//! `d_fake` (mean D(G(z)) before the generator update), `gp` (WGAN-GP), `class_acc` (ACGAN: the
//! class head's accuracy on real images). For WGAN-GP `d_real`/`d_fake` are critic scores.
//!
//! A fixed noise batch (drawn once, saved with the state) is rendered after each periodic epoch
//! into `progress/epoch_NNN.png`; its first row of every rendering is kept for the progress strip.

use std::collections::HashMap;

use camino::Utf8Path;
use tch::{nn, Device, Kind, Tensor};

use super::batches::{DeviceDataset, IndexStream};
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::optimizer::{Optimizer, OptimizerSettings};
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::accel::MemoryFormat;
use crate::models::summary::ModuleTree;
use crate::models::{Discriminator, GanConfig, GanLoss, Generator, ModelError};
use crate::viz::grid::{make_grid, save_png, to_unit, Scaling};

/// Where the per-epoch grids go, inside the stage's output directory.
pub const PROGRESS_DIR: &str = "progress";
/// The progress strip: one row of the fixed batch per rendered epoch.
pub const STRIP_FILE: &str = "progress_strip.png";
/// Images per row of the grids and the strip.
const STRIP_WIDTH: i64 = 8;

/// The progress grid of `epoch`, relative to the output directory.
pub fn progress_file(epoch: usize) -> String {
    format!("{PROGRESS_DIR}/epoch_{epoch:03}.png")
}

/// Generator and discriminator, each in its own var store so each optimizer sees only its own.
pub struct GanModel {
    pub config: GanConfig,
    pub generator_vs: nn::VarStore,
    pub generator: Generator,
    pub discriminator_vs: nn::VarStore,
    pub discriminator: Discriminator,
}

impl GanModel {
    /// Fresh networks (`generator.main.*`, `discriminator.main.*`) on `device`.
    pub fn new(config: GanConfig, device: Device) -> Result<Self, ModelError> {
        let generator_vs = nn::VarStore::new(device);
        let generator = Generator::new(&(generator_vs.root() / "generator"), config)?;
        let discriminator_vs = nn::VarStore::new(device);
        let discriminator =
            Discriminator::new(&(discriminator_vs.root() / "discriminator"), config)?;
        Ok(GanModel {
            config,
            generator_vs,
            generator,
            discriminator_vs,
            discriminator,
        })
    }

    pub fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "GAN",
            vec![
                ("generator".into(), self.generator.tree()),
                ("discriminator".into(), self.discriminator.tree()),
            ],
        )
    }

    /// `[n, z_dim]` standard normal noise from libtorch's generator.
    pub fn noise(&self, n: i64, device: Device) -> Tensor {
        Tensor::randn([n, self.config.z_dim], (Kind::Float, device))
    }
}

/// The hyper-parameters of the objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanSettings {
    pub loss: GanLoss,
    /// Critic steps per generator step (WGAN-GP; 1 otherwise).
    pub n_critic: usize,
    pub gp_lambda: f64,
    /// One-sided label smoothing of the real label (`dcgan`, `acgan`): real = 1 - this.
    pub label_smoothing: f64,
    pub generator: OptimizerSettings,
    pub discriminator: OptimizerSettings,
}

/// The discriminator's loss on a real and a fake batch, with its parts.
pub struct DiscriminatorLoss {
    pub loss: Tensor,
    /// Mean D(x) (probability, critic score or sigmoid of the logit).
    pub d_real: Tensor,
    pub d_fake: Tensor,
    /// The gradient penalty (WGAN-GP).
    pub gp: Option<Tensor>,
    /// Accuracy of the class head on the real batch (ACGAN).
    pub class_acc: Option<Tensor>,
}

fn targets(value: f64, like: &Tensor) -> Tensor {
    Tensor::full_like(like, value)
}

/// `BCE(sigmoid(logit), target)`, on probabilities (`dcgan`, as the tutorial's Sigmoid + BCELoss)
/// or on logits (`acgan`).
fn bce(out: &Tensor, target: f64, loss: GanLoss) -> Tensor {
    let t = targets(target, out);
    match loss {
        GanLoss::Acgan => {
            out.binary_cross_entropy_with_logits::<Tensor>(&t, None, None, tch::Reduction::Mean)
        }
        _ => out.binary_cross_entropy::<Tensor>(&t, None, tch::Reduction::Mean),
    }
}

/// The WGAN-GP penalty `mean((||grad_x_hat D(x_hat)||_2 - 1)^2)` at `x_hat = real + a (fake -
/// real)`, differentiable in the critic's weights (double backward).
pub fn gradient_penalty(
    critic: &Discriminator,
    real: &Tensor,
    fake: &Tensor,
    alpha: &Tensor,
) -> Tensor {
    let x_hat = (real + alpha * (fake - real))
        .detach()
        .set_requires_grad(true);
    let out = critic.forward_t(&x_hat, true).adversarial.sum(Kind::Float);
    let grads = Tensor::run_backward(&[&out], &[&x_hat], true, true);
    let b = real.size()[0];
    // (b, c, h, w) -> (b, c*h*w)
    let norm = grads[0]
        .reshape([b, -1])
        .norm_scalaropt_dim(2, [1i64], false);
    (norm - 1.0).square().mean(Kind::Float)
}

/// The discriminator's loss on `real` (with `labels` for ACGAN) and `fake` (generated with
/// `fake_labels`); `fake` must be detached from the generator. `alpha` (`[b, 1, 1, 1]`)
/// places the WGAN-GP interpolates.
pub fn discriminator_loss(
    model: &GanModel,
    settings: &GanSettings,
    real: &Tensor,
    labels: &Tensor,
    fake: &Tensor,
    fake_labels: &Tensor,
    alpha: &Tensor,
) -> DiscriminatorLoss {
    let d = &model.discriminator;
    let on_real = d.forward_t(real, true);
    let on_fake = d.forward_t(fake, true);
    let mean = |t: &Tensor| t.mean(Kind::Float);
    match settings.loss {
        GanLoss::Dcgan => DiscriminatorLoss {
            loss: bce(
                &on_real.adversarial,
                1.0 - settings.label_smoothing,
                settings.loss,
            ) + bce(&on_fake.adversarial, 0.0, settings.loss),
            d_real: mean(&on_real.adversarial),
            d_fake: mean(&on_fake.adversarial),
            gp: None,
            class_acc: None,
        },
        GanLoss::WganGp => {
            let gp = gradient_penalty(d, real, fake, alpha);
            let (d_real, d_fake) = (mean(&on_real.adversarial), mean(&on_fake.adversarial));
            DiscriminatorLoss {
                loss: &d_fake - &d_real + &gp * settings.gp_lambda,
                d_real,
                d_fake,
                gp: Some(gp),
                class_acc: None,
            }
        }
        GanLoss::Acgan => {
            let adversarial = bce(
                &on_real.adversarial,
                1.0 - settings.label_smoothing,
                settings.loss,
            ) + bce(&on_fake.adversarial, 0.0, settings.loss);
            let (real_logits, fake_logits) = (class_logits(&on_real), class_logits(&on_fake));
            let class = real_logits.cross_entropy_for_logits(labels)
                + fake_logits.cross_entropy_for_logits(fake_labels);
            let acc = real_logits
                .argmax(-1, false)
                .eq_tensor(labels)
                .to_kind(Kind::Float)
                .mean(Kind::Float);
            DiscriminatorLoss {
                loss: adversarial + class,
                d_real: mean(&on_real.adversarial.sigmoid()),
                d_fake: mean(&on_fake.adversarial.sigmoid()),
                gp: None,
                class_acc: Some(acc),
            }
        }
    }
}

fn class_logits(j: &crate::models::dcgan::Judgement) -> Tensor {
    match &j.class_logits {
        Some(t) => t.shallow_clone(),
        None => Tensor::zeros(
            [j.adversarial.size()[0], 1],
            (Kind::Float, j.adversarial.device()),
        ),
    }
}

/// The generator's loss on `fake` (generated with `fake_labels`), gradients flowing into G.
pub fn generator_loss(
    model: &GanModel,
    loss: GanLoss,
    fake: &Tensor,
    fake_labels: &Tensor,
) -> Tensor {
    let on_fake = model.discriminator.forward_t(fake, true);
    match loss {
        GanLoss::Dcgan => bce(&on_fake.adversarial, 1.0, loss),
        GanLoss::WganGp => -on_fake.adversarial.mean(Kind::Float),
        GanLoss::Acgan => {
            bce(&on_fake.adversarial, 1.0, loss)
                + class_logits(&on_fake).cross_entropy_for_logits(fake_labels)
        }
    }
}

/// The fixed batch rendered after each epoch: noise and, for ACGAN, labels with one class per
/// row of 10 (rows = classes, columns = noise vectors).
pub struct FixedBatch {
    pub noise: Tensor,
    pub labels: Tensor,
}

impl FixedBatch {
    /// 64 noise vectors, or for a conditional model `classes` rows of 10 columns sharing the
    /// columns' noise.
    pub fn new(model: &GanModel, device: Device) -> Self {
        let classes = model.config.classes;
        if classes > 0 {
            let columns = 10;
            let noise = model.noise(columns, device).repeat([classes, 1]);
            let labels = Tensor::arange(classes, (Kind::Int64, device))
                .repeat_interleave_self_int(columns, 0, None);
            FixedBatch { noise, labels }
        } else {
            FixedBatch {
                noise: model.noise(64, device),
                labels: Tensor::zeros([64], (Kind::Int64, device)),
            }
        }
    }

    /// Images per grid row.
    pub fn row(&self, model: &GanModel) -> i64 {
        if model.config.conditional() {
            10
        } else {
            STRIP_WIDTH
        }
    }
}

/// Generated images in `[-1, 1]`, in eval and inference mode.
pub fn generate(generator: &Generator, noise: &Tensor, labels: &Tensor) -> Tensor {
    crate::accel::inference(|| generator.forward_t(noise, Some(labels), false))
}

/// GAN training: the networks, their optimizers, the data stream and the fixed batch.
pub struct GanTraining {
    pub model: GanModel,
    settings: GanSettings,
    g_optimizer: Optimizer,
    d_optimizer: Optimizer,
    data: DeviceDataset,
    order: IndexStream,
    pub fixed: FixedBatch,
    /// The first row of the fixed batch at every rendered epoch, `[k * row, C, H, W]`.
    strip: Option<Tensor>,
    /// Epochs rendered into the progress grids.
    pub rendered: Vec<usize>,
}

/// The layout a loss trains fastest in (measured with PyTorch at 64x64, batch 64, 2 threads):
/// channels-last, except for WGAN-GP, whose penalty's double backward through the critic's
/// convolutions is 27 % slower channels-last (7.0 vs 5.6 s per 5 + 1 step).
fn training_layout(loss: GanLoss) -> MemoryFormat {
    match loss {
        GanLoss::WganGp => MemoryFormat::Contiguous,
        GanLoss::Dcgan | GanLoss::Acgan => MemoryFormat::ChannelsLast,
    }
}

impl GanTraining {
    /// `data` must be scaled to `[-1, 1]`.
    pub fn new(
        model: GanModel,
        settings: GanSettings,
        data: DeviceDataset,
        order: IndexStream,
    ) -> Self {
        let layout = training_layout(settings.loss);
        let g_optimizer = Optimizer::in_layout(settings.generator, &[&model.generator_vs], layout);
        let d_optimizer =
            Optimizer::in_layout(settings.discriminator, &[&model.discriminator_vs], layout);
        let fixed = FixedBatch::new(&model, model.generator_vs.device());
        GanTraining {
            model,
            settings,
            g_optimizer,
            d_optimizer,
            data: data.in_layout(layout),
            order,
            fixed,
            strip: None,
            rendered: Vec::new(),
        }
    }

    fn critic_steps(&self) -> usize {
        match self.settings.loss {
            GanLoss::WganGp => self.settings.n_critic.max(1),
            _ => 1,
        }
    }

    /// Noise and labels for a fake batch of `b`: labels drawn uniformly over the classes.
    fn fake_inputs(&self, b: i64, device: Device) -> (Tensor, Tensor) {
        let z = self.model.noise(b, device);
        let classes = self.model.config.classes.max(1);
        let labels = Tensor::randint(classes, [b], (Kind::Int64, device));
        (z, labels)
    }

    /// Renders the fixed batch into `progress/epoch_NNN.png` and keeps its first row.
    fn render(&mut self, epoch: usize, out_dir: &Utf8Path) -> anyhow::Result<()> {
        let images = to_unit(
            &generate(&self.model.generator, &self.fixed.noise, &self.fixed.labels),
            Scaling::Symmetric,
        );
        let row = self.fixed.row(&self.model);
        save_png(
            &make_grid(&images, row, 2, 0.0),
            &out_dir.join(progress_file(epoch)),
        )?;
        let first = images.narrow(0, 0, row.min(images.size()[0]));
        self.strip = Some(match &self.strip {
            Some(strip) => Tensor::cat(&[strip, &first], 0),
            None => first,
        });
        self.rendered.push(epoch);
        Ok(())
    }

    /// Writes the progress strip (one row per rendered epoch, oldest on top).
    pub fn save_strip(&self, out_dir: &Utf8Path) -> anyhow::Result<bool> {
        let Some(strip) = &self.strip else {
            return Ok(false);
        };
        save_png(
            &make_grid(strip, self.fixed.row(&self.model), 2, 0.0),
            &out_dir.join(STRIP_FILE),
        )?;
        Ok(true)
    }
}

impl TrainingMethod for GanTraining {
    /// One pass over the data: `batches / n_critic` generator steps.
    fn steps_per_epoch(&self) -> usize {
        (self.order.batches_per_pass() / self.critic_steps()).max(1)
    }

    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        // With one discriminator step the generator step reuses its fake batch, as the DCGAN
        // tutorial does (D sees it detached); WGAN-GP's critic steps use fakes without a graph
        // and the generator step draws its own.
        let steps = self.critic_steps();
        let mut last = None;
        for _ in 0..steps {
            let index = self.order.next_batch();
            let real = self.data.images(&index);
            let labels = self.data.labels_at(&index);
            let b = real.size()[0];
            let device = real.device();
            let (z, fake_labels) = self.fake_inputs(b, device);
            let fake = if steps == 1 {
                self.model.generator.forward_t(&z, Some(&fake_labels), true)
            } else {
                tch::no_grad(|| self.model.generator.forward_t(&z, Some(&fake_labels), true))
            };
            let alpha = Tensor::rand([b, 1, 1, 1], (Kind::Float, device));
            let d = discriminator_loss(
                &self.model,
                &self.settings,
                &real,
                &labels,
                &fake.detach(),
                &fake_labels,
                &alpha,
            );
            self.d_optimizer.backward_step(&d.loss, at.p)?;
            last = Some((d, fake, fake_labels));
        }
        let Some((d, fake, fake_labels)) = last else {
            anyhow::bail!("no discriminator step ran")
        };
        let (fake, fake_labels) = if steps == 1 {
            (fake, fake_labels)
        } else {
            let (z, labels) = self.fake_inputs(fake.size()[0], fake.device());
            (
                self.model.generator.forward_t(&z, Some(&labels), true),
                labels,
            )
        };
        // The next discriminator step's zero_grad would discard D's weight gradients of the
        // generator loss, so D is frozen for it: the backward pass only carries the gradient
        // through D to the fakes, saving D's weight-gradient convolutions (the PyTorch tutorial
        // computes and discards them).
        self.model.discriminator_vs.freeze();
        let g_loss = generator_loss(&self.model, self.settings.loss, &fake, &fake_labels);
        let g_update = self.g_optimizer.backward_step(&g_loss, at.p);
        self.model.discriminator_vs.unfreeze();
        g_update?;

        let mut names = vec!["g_loss", "d_loss", "d_real", "d_fake"];
        let mut values = vec![&g_loss, &d.loss, &d.d_real, &d.d_fake];
        if let Some(gp) = &d.gp {
            names.push("gp");
            values.push(gp);
        }
        if let Some(acc) = &d.class_acc {
            names.push("class_acc");
            values.push(acc);
        }
        Ok(named_scalars(&names, &values)?)
    }

    fn end_epoch(&mut self, end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        if end.periodic {
            self.render(end.epoch, end.out_dir)?;
        }
        Ok(Vec::new())
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("generator", &self.model.generator_vs);
        state.add_store("discriminator", &self.model.discriminator_vs);
        self.g_optimizer.save_state("g_optimizer", state);
        self.d_optimizer.save_state("d_optimizer", state);
        self.order.save_state("order", state);
        state.insert("fixed.noise", self.fixed.noise.shallow_clone());
        state.insert("fixed.labels", self.fixed.labels.shallow_clone());
        state.insert(
            "rendered",
            Tensor::from_slice(&self.rendered.iter().map(|&e| e as i64).collect::<Vec<_>>()),
        );
        if let Some(strip) = &self.strip {
            state.insert("strip", strip.shallow_clone());
        }
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.model.generator_vs, "generator", state)?;
        restore_store(&self.model.discriminator_vs, "discriminator", state)?;
        self.g_optimizer.load_state("g_optimizer", state)?;
        self.d_optimizer.load_state("d_optimizer", state)?;
        self.order.load_state("order", state)?;
        let device = self.model.generator_vs.device();
        let get = |key: &str| {
            state
                .get(key)
                .ok_or_else(|| StateError::Missing(key.to_owned()))
        };
        self.fixed.noise = get("fixed.noise")?.to_device(device);
        self.fixed.labels = get("fixed.labels")?.to_device(device);
        self.rendered = Vec::<i64>::try_from(get("rendered")?)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e as usize)
            .collect();
        self.strip = state.get("strip").map(|t| t.to_device(device));
        Ok(())
    }
}

/// A trained generator, rebuilt from its checkpoint.
pub struct LoadedGenerator {
    pub meta: super::checkpoint::ModelMeta,
    pub generator: Generator,
    _vs: nn::VarStore,
}

impl LoadedGenerator {
    /// Rebuilds the generator of a `train_gan` checkpoint and loads its weights on `device`.
    pub fn load(
        checkpoint: super::checkpoint::Checkpoint,
        config: GanConfig,
        device: Device,
    ) -> Result<Self, super::checkpoint::CheckpointError> {
        let vs = nn::VarStore::new(device);
        let generator = Generator::new(&(vs.root() / "generator"), config)?;
        checkpoint.load_weights(&vs)?;
        Ok(LoadedGenerator {
            meta: checkpoint.meta,
            generator,
            _vs: vs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::GanPreset;

    fn model(loss: GanLoss) -> GanModel {
        let classes = if loss == GanLoss::Acgan { 10 } else { 0 };
        let config = GanConfig {
            preset: GanPreset::Dcgan,
            loss,
            image_size: 28,
            channels: 1,
            z_dim: 8,
            ngf: 4,
            ndf: 4,
            spectral_norm: false,
            classes,
        };
        GanModel::new(config, Device::Cpu).unwrap()
    }

    #[test]
    fn the_penalty_is_differentiable_in_the_critic() {
        // Its values are checked against PyTorch in tests/parity_gan.rs.
        tch::manual_seed(0);
        let m = model(GanLoss::WganGp);
        let real = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let fake = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let alpha = Tensor::rand([4, 1, 1, 1], (Kind::Float, Device::Cpu));
        let gp = gradient_penalty(&m.discriminator, &real, &fake, &alpha);
        assert!(gp.double_value(&[]) >= 0.0);
        assert!(
            gp.requires_grad(),
            "the penalty must be differentiable in the critic"
        );
    }

    #[test]
    fn acgan_fixed_batch_has_a_row_per_class() {
        tch::manual_seed(0);
        let m = model(GanLoss::Acgan);
        let fixed = FixedBatch::new(&m, Device::Cpu);
        assert_eq!(fixed.noise.size(), [100, 8]);
        assert_eq!(
            Vec::<i64>::try_from(&fixed.labels.narrow(0, 9, 2)).unwrap(),
            [0, 1]
        );
        assert!(
            fixed.noise.get(0).equal(&fixed.noise.get(10)),
            "columns share their noise"
        );
        let g_loss = generator_loss(
            &m,
            GanLoss::Acgan,
            &m.generator
                .forward_t(&fixed.noise, Some(&fixed.labels), false),
            &fixed.labels,
        );
        assert!(g_loss.double_value(&[]).is_finite());
    }
}
