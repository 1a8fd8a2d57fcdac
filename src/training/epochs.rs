//! The epoch loop every training stage shares: progress bar over steps, cancellation between
//! steps, a divergence check on every loss of every step, per-epoch means, one log line per epoch
//! and the history written to `history.json`.

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::stages::StageContext;

/// What one training step reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStats {
    /// Named losses; all are checked for NaN/inf and averaged over the epoch.
    pub losses: Vec<(&'static str, f64)>,
    /// Correct label predictions in the batch (for the training accuracy).
    pub correct: f64,
    /// Labelled samples in the batch; 0 when the step predicts no labels.
    pub seen: f64,
}

/// Where a step is in the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProgress {
    /// 1-based.
    pub epoch: usize,
    /// 1-based within the epoch.
    pub step: usize,
    /// Training progress in `[0, 1)`, for the schedules.
    pub p: f64,
}

/// How many epochs of how many steps, and what to call the phase.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopPlan {
    pub phase: String,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// The parameter to lower when a loss diverges (`lr`, `pretrain_lr`).
    pub lr_param: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("{phase}: loss became {value} at epoch {epoch} step {step} (`{loss}`); lower `{lr_param}`")]
    Diverged { phase: String, loss: &'static str, value: f64, epoch: usize, step: usize, lr_param: &'static str },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// One record per epoch: `{"epoch": 1, "train_loss": .., "train_acc": .., "val_acc": ..}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<BTreeMap<String, f64>>,
}

impl History {
    /// The last epoch's value of `key`.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.epochs.last().and_then(|record| record.get(key).copied())
    }

    /// Appends the epochs of `other` with their keys prefixed (`pretrain_`; `""` keeps them),
    /// numbering them on from this history's last epoch.
    pub fn extend_prefixed(&mut self, other: &History, prefix: &str) {
        for record in &other.epochs {
            let mut renamed: BTreeMap<String, f64> = record
                .iter()
                .filter(|(k, _)| k.as_str() != "epoch")
                .map(|(k, v)| (format!("{prefix}{k}"), *v))
                .collect();
            renamed.insert("epoch".into(), (self.epochs.len() + 1) as f64);
            self.epochs.push(renamed);
        }
    }

    /// Writes `history.json` into `dir`.
    pub fn save(&self, dir: &Utf8Path) -> Result<(), TrainingError> {
        let path = dir.join("history.json");
        let write_err = |message: String| TrainingError::Write { path: path.to_string(), message };
        let json = serde_json::to_vec_pretty(self).map_err(|e| write_err(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| write_err(e.to_string()))
    }
}

/// Runs `plan.epochs` epochs of `plan.steps_per_epoch` calls to `step`, then `end_epoch` (which
/// adds validation accuracy and scheduled values to the epoch's record).
pub fn run_epochs(
    ctx: &StageContext,
    plan: &LoopPlan,
    mut step: impl FnMut(StepProgress) -> anyhow::Result<StepStats>,
    mut end_epoch: impl FnMut(usize) -> anyhow::Result<Vec<(&'static str, f64)>>,
) -> anyhow::Result<History> {
    let mut history = History::default();
    let total = plan.epochs * plan.steps_per_epoch;
    for epoch in 1..=plan.epochs {
        ctx.start_phase(format!("{} epoch {epoch}/{}", plan.phase, plan.epochs), plan.steps_per_epoch as u64);
        let mut sums = EpochSums::default();
        for step_in_epoch in 1..=plan.steps_per_epoch {
            ctx.check_cancelled()?;
            let done = (epoch - 1) * plan.steps_per_epoch + step_in_epoch - 1;
            let progress = StepProgress { epoch, step: step_in_epoch, p: super::schedule::progress(done, total) };
            let stats = step(progress)?;
            check_finite(plan, &stats, progress)?;
            sums.add(&stats);
            ctx.progress().inc(1);
        }
        let mut record = sums.means(epoch);
        record.extend(end_epoch(epoch)?.into_iter().map(|(k, v)| (k.to_owned(), v)));
        ctx.log(epoch_line(plan, epoch, &record));
        history.epochs.push(record);
    }
    Ok(history)
}

/// Reads scalar tensors in one transfer (one device sync per step instead of one per value).
pub fn read_scalars(values: &[&Tensor]) -> Vec<f64> {
    let stacked: Vec<Tensor> = values.iter().map(|t| t.detach().to_kind(Kind::Double).reshape([1])).collect();
    Vec::<f64>::try_from(Tensor::cat(&stacked, 0).to_device(Device::Cpu)).unwrap_or_default()
}

fn check_finite(plan: &LoopPlan, stats: &StepStats, at: StepProgress) -> Result<(), TrainingError> {
    match stats.losses.iter().find(|(_, v)| !v.is_finite()) {
        Some(&(loss, value)) => Err(TrainingError::Diverged {
            phase: plan.phase.clone(),
            loss,
            value,
            epoch: at.epoch,
            step: at.step,
            lr_param: plan.lr_param,
        }),
        None => Ok(()),
    }
}

#[derive(Default)]
struct EpochSums {
    losses: Vec<(&'static str, f64)>,
    steps: f64,
    correct: f64,
    seen: f64,
}

impl EpochSums {
    fn add(&mut self, stats: &StepStats) {
        if self.losses.is_empty() {
            self.losses = stats.losses.iter().map(|&(k, _)| (k, 0.0)).collect();
        }
        for ((_, sum), (_, v)) in self.losses.iter_mut().zip(&stats.losses) {
            *sum += v;
        }
        self.steps += 1.0;
        self.correct += stats.correct;
        self.seen += stats.seen;
    }

    fn means(&self, epoch: usize) -> BTreeMap<String, f64> {
        let mut record = BTreeMap::from([("epoch".to_owned(), epoch as f64)]);
        for &(name, sum) in &self.losses {
            record.insert(name.to_owned(), sum / self.steps.max(1.0));
        }
        if self.seen > 0.0 {
            record.insert("train_acc".to_owned(), self.correct / self.seen);
        }
        record
    }
}

fn epoch_line(plan: &LoopPlan, epoch: usize, record: &BTreeMap<String, f64>) -> String {
    let values: Vec<String> = record
        .iter()
        .filter(|(k, _)| k.as_str() != "epoch")
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    format!("{} epoch {epoch}/{}: {}", plan.phase, plan.epochs, values.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> (tempfile::TempDir, StageContext) {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let ctx = StageContext::detached("t", path, Default::default(), 0);
        (dir, ctx)
    }

    fn plan() -> LoopPlan {
        LoopPlan { phase: "train".into(), epochs: 2, steps_per_epoch: 3, lr_param: "lr" }
    }

    #[test]
    fn averages_losses_and_accuracy_per_epoch() {
        let (_dir, ctx) = ctx();
        let mut ps = Vec::new();
        let history = run_epochs(
            &ctx,
            &plan(),
            |at| {
                ps.push(at.p);
                Ok(StepStats { losses: vec![("train_loss", at.step as f64)], correct: 1.0, seen: 2.0 })
            },
            |_| Ok(vec![("val_acc", 0.25)]),
        )
        .unwrap();
        assert_eq!(history.epochs.len(), 2);
        assert_eq!(history.last("train_loss"), Some(2.0));
        assert_eq!(history.last("train_acc"), Some(0.5));
        assert_eq!(history.last("val_acc"), Some(0.25));
        assert_eq!(ps, [0.0, 1.0 / 6.0, 2.0 / 6.0, 0.5, 4.0 / 6.0, 5.0 / 6.0]);
    }

    #[test]
    fn a_nan_loss_names_epoch_step_and_parameter() {
        let (_dir, ctx) = ctx();
        let err = run_epochs(
            &ctx,
            &plan(),
            |at| {
                let loss = if at.epoch == 2 && at.step == 3 { f64::NAN } else { 1.0 };
                Ok(StepStats { losses: vec![("train_loss", loss)], ..Default::default() })
            },
            |_| Ok(vec![]),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "train: loss became NaN at epoch 2 step 3 (`train_loss`); lower `lr`");
    }
}
