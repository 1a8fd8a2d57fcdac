//! Supervised training of a [`DigitCnn`] on one labelled dataset: the `train_classifier` stage
//! and ADDA's source pretraining.

use std::collections::HashMap;

use tch::{nn, Device, Kind, Tensor};

use super::batches::{DeviceDataset, IndexStream};
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::optimizer::{Optimizer, OptimizerSettings};
use super::setup::val_accuracy;
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::models::DigitCnn;

/// A classifier, its optimizer, its training data and an optional validation set.
pub struct ClassifierTraining {
    pub vs: nn::VarStore,
    pub model: DigitCnn,
    optimizer: Optimizer,
    data: DeviceDataset,
    order: IndexStream,
    val: Option<DeviceDataset>,
}

impl ClassifierTraining {
    /// Trains every variable of `vs` (which holds `model`) on `data`.
    pub fn new(
        vs: nn::VarStore,
        model: DigitCnn,
        settings: OptimizerSettings,
        data: DeviceDataset,
        order: IndexStream,
        val: Option<DeviceDataset>,
    ) -> Self {
        let optimizer = Optimizer::new(settings, &[&vs]);
        ClassifierTraining {
            vs,
            model,
            optimizer,
            data,
            order,
            val,
        }
    }
}

impl TrainingMethod for ClassifierTraining {
    fn steps_per_epoch(&self) -> usize {
        self.order.batches_per_pass()
    }

    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        let index = self.order.next_batch();
        let (x, y) = (self.data.images(&index), self.data.labels_at(&index));
        supervised_step(&self.model, &mut self.optimizer, &x, &y, at.p)
    }

    fn end_epoch(&mut self, _end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        let mut record = vec![("lr", self.optimizer.lr())];
        record.extend(val_accuracy(self.val.as_ref(), |x| {
            self.model.logits(x, false)
        }));
        Ok(record)
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("model", &self.vs);
        self.optimizer.save_state("optimizer", state);
        self.order.save_state("order", state);
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.vs, "model", state)?;
        self.optimizer.load_state("optimizer", state)?;
        self.order.load_state("order", state)
    }
}

/// Cross-entropy step on `(x, y)` in training mode at progress `p`: forward, backward, update.
pub fn supervised_step(
    model: &DigitCnn,
    optimizer: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    p: f64,
) -> anyhow::Result<Scalars> {
    let logits = model.logits(x, true);
    let loss = logits.cross_entropy_for_logits(y);
    optimizer.backward_step(&loss, p)?;
    let accuracy = logits
        .argmax(-1, false)
        .eq_tensor(y)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    Ok(named_scalars(
        &["train_loss", "train_acc"],
        &[&loss, &accuracy],
    )?)
}

/// Labels as they go into a cross-entropy loss: `value` repeated `n` times.
pub fn constant_labels(value: i64, n: i64, device: Device) -> Tensor {
    Tensor::full([n], value, (Kind::Int64, device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, DigitCnnConfig};
    use crate::testing::banded;
    use crate::training::{InputFormat, Normalisation};

    #[test]
    fn loss_goes_down_on_a_tiny_problem() {
        tch::manual_seed(0);
        let dataset = banded(64, 1, 16, 0);
        let norm = Normalisation::of(&dataset);
        let format = InputFormat {
            channels: 3,
            image_size: 16,
        };
        let data = DeviceDataset::new(&dataset, &norm, format, Device::Cpu).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let config = DigitCnnConfig {
            arch: Arch::Mnist,
            channels: 3,
            image_size: 16,
            classes: 10,
        };
        let model = DigitCnn::new(&vs.root(), config).unwrap();
        let order = IndexStream::new(64, 32, 0, Device::Cpu);
        let settings = OptimizerSettings::adam(1e-3, [0.9, 0.999]);
        let mut training = ClassifierTraining::new(vs, model, settings, data, order, None);
        let at = StepProgress {
            epoch: 1,
            step: 1,
            p: 0.0,
        };
        let first = training.step(at).unwrap()[0].1;
        let last = (0..40)
            .map(|_| training.step(at).unwrap()[0].1)
            .last()
            .unwrap();
        assert!(last < first * 0.5, "loss {first} -> {last}");
    }
}
