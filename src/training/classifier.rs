//! Supervised training of a [`DigitCnn`] on one labelled dataset: the `train_classifier` stage
//! and ADDA's source pretraining.

use tch::{nn, Device, Kind, Tensor};

use super::batches::{DomainData, IndexStream};
use super::epochs::{read_scalars, StepStats};
use super::optim::{LrSchedule, OptimizerSpec};
use crate::models::DigitCnn;

/// A model, its optimizer and its data stream.
pub struct ClassifierTrainer {
    pub model: DigitCnn,
    opt: nn::Optimizer,
    spec: OptimizerSpec,
    schedule: LrSchedule,
    data: DomainData,
    order: IndexStream,
}

impl ClassifierTrainer {
    /// Trains every variable of `vs` (which holds `model`) on `data`.
    pub fn new(
        vs: &nn::VarStore,
        model: DigitCnn,
        spec: OptimizerSpec,
        schedule: LrSchedule,
        data: DomainData,
        order: IndexStream,
    ) -> Result<Self, tch::TchError> {
        let opt = spec.build(vs)?;
        Ok(ClassifierTrainer { model, opt, spec, schedule, data, order })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.order.batches_per_pass()
    }

    /// The learning rate at progress `p`.
    pub fn lr_at(&self, p: f64) -> f64 {
        self.schedule.at(self.spec.lr, p)
    }

    /// One optimisation step on the next batch, at training progress `p`.
    pub fn step(&mut self, p: f64) -> StepStats {
        self.opt.set_lr(self.lr_at(p));
        let index = self.order.next_batch();
        let (x, y) = (self.data.images(&index), self.data.labels_at(&index));
        supervised_step(&self.model, &mut self.opt, &x, &y)
    }

    /// Gives the model back once training is done.
    pub fn into_model(self) -> DigitCnn {
        self.model
    }
}

/// Cross-entropy step on `(x, y)` in training mode: forward, backward, optimizer step.
pub fn supervised_step(model: &DigitCnn, opt: &mut nn::Optimizer, x: &Tensor, y: &Tensor) -> StepStats {
    let logits = model.logits(x, true);
    let loss = logits.cross_entropy_for_logits(y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    let correct = logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64);
    let values = read_scalars(&[&loss, &correct]);
    StepStats { losses: vec![("train_loss", values[0])], correct: values[1], seen: y.size()[0] as f64 }
}

/// Labels as they go into a cross-entropy loss: `value` repeated `n` times.
pub fn constant_labels(value: i64, n: i64, device: Device) -> Tensor {
    Tensor::full([n], value, (Kind::Int64, device))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::models::{Arch, DigitCnnConfig};
    use crate::training::{InputFormat, Normalisation, OptimizerKind};

    /// A learnable toy problem: class `k` lights up a horizontal band at row `2k`, plus noise.
    pub fn banded(n: usize, channels: usize, size: usize, seed: u64) -> Dataset {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::with_capacity(n * channels * size * size);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % 10;
            labels.push(class as i64);
            for _ in 0..channels {
                for row in 0..size {
                    let band = row * 10 / size == class;
                    for _ in 0..size {
                        let noise: u8 = rng.random_range(0..60);
                        images.push(if band { 190 + noise } else { noise });
                    }
                }
            }
        }
        Dataset::new(images, [n, channels, size, size], labels, Dataset::digit_classes(), "banded").unwrap()
    }

    #[test]
    fn loss_goes_down_on_a_tiny_problem() {
        tch::manual_seed(0);
        let dataset = banded(64, 1, 16, 0);
        let norm = Normalisation::of(&dataset);
        let format = InputFormat { channels: 3, image_size: 16 };
        let data = DomainData::new(&dataset, &norm, format, Device::Cpu).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let config = DigitCnnConfig { arch: Arch::Mnist, channels: 3, image_size: 16, classes: 10 };
        let model = DigitCnn::new(&vs.root(), config).unwrap();
        let spec = OptimizerSpec { kind: OptimizerKind::Adam, lr: 1e-3, momentum: 0.0, beta1: 0.9, weight_decay: 0.0 };
        let order = IndexStream::new(64, 32, 0, Device::Cpu);
        let mut trainer = ClassifierTrainer::new(&vs, model, spec, LrSchedule::Constant, data, order).unwrap();
        let first = trainer.step(0.0).losses[0].1;
        let last = (0..40).map(|_| trainer.step(0.0).losses[0].1).last().unwrap();
        assert!(last < first * 0.5, "loss {first} -> {last}");
    }
}
