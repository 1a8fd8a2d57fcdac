//! The one training loop every method runs on: a progress bar over each epoch's steps,
//! Ctrl-C between steps, a divergence check on every scalar of every step, per-epoch means plus
//! the method's own epoch scalars, one log line per epoch, the periodic hook, and resumable
//! checkpoints.
//!
//! **Resume.** When the runner gives the stage a checkpoint directory (outside the cache entry,
//! removed once the entry is committed), the loop saves the method's whole state and the history
//! every `checkpoint_every` epochs. A run killed at epoch k restarts from its last checkpoint and
//! logs `resumed at epoch k`. Each epoch reseeds libtorch's generator from the recipe seed, the
//! phase and the epoch number, so dropout masks and sampled noise do not depend on whether the
//! earlier epochs ran in this process: a resumed run ends with the same weights, bit for bit on
//! the CPU, as an uninterrupted one.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::state::TrainingState;
use crate::accel::Precision;
use crate::stage::StageContext;

/// How many epochs, what to call the phase, how often to run the hook and to checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopPlan {
    pub phase: String,
    pub epochs: usize,
    /// The periodic hook of [`TrainingMethod::end_epoch`] runs every this many epochs and at the
    /// last one.
    pub hook_every: usize,
    /// Save a resume checkpoint every this many epochs.
    pub checkpoint_every: usize,
    /// The parameter to lower when a loss diverges (`optimizer.lr`, `pretrain_optimizer.lr`).
    pub lr_param: &'static str,
    /// The steps' compute precision (`bf16`: under autocast, on fp32 master weights).
    pub precision: Precision,
}

impl LoopPlan {
    /// `epochs` epochs of `phase`, the hook and a checkpoint after every epoch.
    pub fn new(phase: impl Into<String>, epochs: usize, lr_param: &'static str) -> Self {
        LoopPlan {
            phase: phase.into(),
            epochs,
            hook_every: 1,
            checkpoint_every: 1,
            lr_param,
            precision: Precision::Fp32,
        }
    }

    pub fn precision(self, precision: Precision) -> Self {
        LoopPlan { precision, ..self }
    }

    pub fn hook_every(self, hook_every: usize) -> Self {
        LoopPlan {
            hook_every: hook_every.max(1),
            ..self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("{phase}: `{scalar}` became {value} at epoch {epoch} step {step}; lower `{lr_param}`")]
    Diverged {
        phase: String,
        scalar: &'static str,
        value: f64,
        epoch: usize,
        step: usize,
        lr_param: &'static str,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// One record per epoch: `{"epoch": 1, "train_loss": .., "val_acc": ..}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<BTreeMap<String, f64>>,
}

impl History {
    /// The last epoch's value of `key`.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.epochs
            .last()
            .and_then(|record| record.get(key).copied())
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
        write_json(&dir.join("history.json"), self)
    }
}

/// What a checkpoint records beside the state tensors.
#[derive(Serialize, Deserialize)]
struct Progress {
    epoch: usize,
    history: History,
    /// blake3 of the state file, written last: a state whose bytes changed (a flipped bit, a
    /// cut-off write) would otherwise resume silently into a wrong model.
    #[serde(default)]
    state_blake3: Option<String>,
}

const STATE_FILE: &str = "state.safetensors";
const PROGRESS_FILE: &str = "progress.json";

/// Runs `method` for `plan.epochs` epochs (or what remains after a checkpoint) and returns the
/// history of all epochs.
pub fn train(
    ctx: &StageContext,
    plan: &LoopPlan,
    method: &mut dyn TrainingMethod,
) -> anyhow::Result<History> {
    let checkpoints = ctx.checkpoint_dir().map(|dir| dir.join(&plan.phase));
    let (mut history, done) = match checkpoints
        .as_deref()
        .map(|dir| resume(dir, method, ctx))
        .transpose()?
    {
        Some(Some((history, epoch))) => {
            ctx.log(format!("{}: resumed at epoch {epoch}", plan.phase));
            (history, epoch)
        }
        _ => (History::default(), 0),
    };
    let steps_per_epoch = method.steps_per_epoch();
    let total = plan.epochs * steps_per_epoch;
    for epoch in done + 1..=plan.epochs {
        tch::manual_seed(epoch_seed(ctx.seed(), &plan.phase, epoch));
        ctx.start_phase(
            format!("{} epoch {epoch}/{}", plan.phase, plan.epochs),
            steps_per_epoch as u64,
        );
        let mut sums = EpochSums::default();
        for step in 1..=steps_per_epoch {
            ctx.check_cancelled()?;
            let done_steps = (epoch - 1) * steps_per_epoch + step - 1;
            let at = StepProgress {
                epoch,
                step,
                p: super::schedule::progress(done_steps, total),
            };
            let scalars = {
                let _autocast = plan.precision.autocast(ctx.device())?;
                method.step(at)?
            };
            check_finite(plan, &scalars, at)?;
            sums.add(&scalars);
            ctx.progress().inc(1);
        }
        let end = EpochEnd {
            epoch,
            epochs: plan.epochs,
            p: super::schedule::progress(epoch * steps_per_epoch - 1, total),
            out_dir: ctx.out_dir(),
            periodic: epoch % plan.hook_every == 0 || epoch == plan.epochs,
        };
        let mut record = sums.means(epoch);
        record.extend(
            method
                .end_epoch(end)?
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        ctx.log(epoch_line(plan, epoch, &record));
        history.epochs.push(record);
        if let Some(dir) = &checkpoints {
            if epoch % plan.checkpoint_every == 0 || epoch == plan.epochs {
                save_checkpoint(dir, method, epoch, &history)?;
            }
        }
    }
    Ok(history)
}

/// The history and epoch of the checkpoint in `dir`, with `method` restored from it; `None`
/// when there is no usable checkpoint. A checkpoint whose state does not match its recorded
/// hash is deleted with a warning, and the phase starts over.
fn resume(
    dir: &Utf8Path,
    method: &mut dyn TrainingMethod,
    ctx: &StageContext,
) -> anyhow::Result<Option<(History, usize)>> {
    let Ok(bytes) = std::fs::read(dir.join(PROGRESS_FILE)) else {
        return Ok(None);
    };
    let Ok(progress) = serde_json::from_slice::<Progress>(&bytes) else {
        return Ok(None);
    };
    let state_file = dir.join(STATE_FILE);
    let actual = blake3::Hasher::new()
        .update_mmap(&state_file)
        .map(|hasher| hasher.finalize().to_hex().to_string());
    let problem = match (&actual, &progress.state_blake3) {
        (Err(error), _) => Some(format!("its state cannot be read ({error})")),
        (Ok(_), None) => Some("it records no hash of its state".to_owned()),
        (Ok(actual), Some(recorded)) if actual != recorded => {
            Some("its state does not match the hash recorded with it".to_owned())
        }
        (Ok(_), Some(_)) => None,
    };
    if let Some(problem) = problem {
        let warning = format!("discarding the checkpoint at {dir}: {problem}; starting over");
        tracing::warn!("{warning}");
        ctx.log(warning);
        std::fs::remove_dir_all(dir).map_err(|e| TrainingError::Write {
            path: dir.to_string(),
            message: e.to_string(),
        })?;
        return Ok(None);
    }
    let state = TrainingState::load(&state_file)?;
    method.load_state(&state)?;
    Ok(Some((progress.history, progress.epoch)))
}

/// Writes the checkpoint into a fresh directory and renames it over the previous one, so a
/// kill during the write leaves the previous checkpoint intact.
fn save_checkpoint(
    dir: &Utf8Path,
    method: &dyn TrainingMethod,
    epoch: usize,
    history: &History,
) -> anyhow::Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| TrainingError::Write {
        path: parent.to_string(),
        message: e.to_string(),
    })?;
    let fresh = Utf8PathBuf::from(format!("{dir}.new"));
    let _ = std::fs::remove_dir_all(&fresh);
    let written = write_checkpoint(&fresh, method, epoch, history);
    if written.is_err() {
        // A full disk must not leave a half-written checkpoint behind.
        let _ = std::fs::remove_dir_all(&fresh);
    }
    written?;
    let old = Utf8PathBuf::from(format!("{dir}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| TrainingError::Write {
            path: dir.to_string(),
            message: e.to_string(),
        })?;
    }
    std::fs::rename(&fresh, dir).map_err(|e| TrainingError::Write {
        path: dir.to_string(),
        message: e.to_string(),
    })?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Writes the state and then, last, the progress file with the state's hash into `fresh`.
fn write_checkpoint(
    fresh: &Utf8Path,
    method: &dyn TrainingMethod,
    epoch: usize,
    history: &History,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(fresh).map_err(|e| TrainingError::Write {
        path: fresh.to_string(),
        message: e.to_string(),
    })?;
    let mut state = TrainingState::default();
    method.save_state(&mut state);
    let state_file = fresh.join(STATE_FILE);
    state.save(&state_file)?;
    let hash = blake3::Hasher::new()
        .update_mmap(&state_file)
        .map_err(|e| TrainingError::Write {
            path: state_file.to_string(),
            message: e.to_string(),
        })?
        .finalize();
    write_json(
        &fresh.join(PROGRESS_FILE),
        &Progress {
            epoch,
            history: history.clone(),
            state_blake3: Some(hash.to_hex().to_string()),
        },
    )?;
    Ok(())
}

fn write_json(path: &Utf8Path, value: &impl Serialize) -> Result<(), TrainingError> {
    let write_err = |message: String| TrainingError::Write {
        path: path.to_string(),
        message,
    };
    let json = serde_json::to_vec_pretty(value).map_err(|e| write_err(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| write_err(e.to_string()))
}

/// libtorch's seed for one epoch of one phase.
fn epoch_seed(seed: u64, phase: &str, epoch: usize) -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(phase.as_bytes());
    hasher.update(&(epoch as u64).to_le_bytes());
    let bytes = hasher.finalize();
    // libtorch takes any i64; keep it non-negative for readability in logs.
    (u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or([0; 8])) >> 1) as i64
}

/// Reads scalar tensors in one transfer (one device sync per step instead of one per value).
pub fn read_scalars(values: &[&Tensor]) -> Result<Vec<f64>, tch::TchError> {
    let stacked = values
        .iter()
        .map(|t| t.detach().to_kind(Kind::Double).f_reshape([1]))
        .collect::<Result<Vec<Tensor>, _>>()?;
    Vec::<f64>::try_from(Tensor::f_cat(&stacked, 0)?.to_device(Device::Cpu))
}

/// Names `values` read with [`read_scalars`].
pub fn named_scalars(names: &[&'static str], values: &[&Tensor]) -> Result<Scalars, tch::TchError> {
    Ok(names.iter().copied().zip(read_scalars(values)?).collect())
}

fn check_finite(plan: &LoopPlan, scalars: &Scalars, at: StepProgress) -> Result<(), TrainingError> {
    match scalars.iter().find(|(_, v)| !v.is_finite()) {
        Some(&(scalar, value)) => Err(TrainingError::Diverged {
            phase: plan.phase.clone(),
            scalar,
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
    sums: Vec<(&'static str, f64)>,
    steps: f64,
}

impl EpochSums {
    fn add(&mut self, scalars: &Scalars) {
        if self.sums.is_empty() {
            self.sums = scalars.iter().map(|&(k, _)| (k, 0.0)).collect();
        }
        for ((_, sum), (_, v)) in self.sums.iter_mut().zip(scalars) {
            *sum += v;
        }
        self.steps += 1.0;
    }

    fn means(&self, epoch: usize) -> BTreeMap<String, f64> {
        let mut record = BTreeMap::from([("epoch".to_owned(), epoch as f64)]);
        for &(name, sum) in &self.sums {
            record.insert(name.to_owned(), sum / self.steps.max(1.0));
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
    format!(
        "{} epoch {epoch}/{}: {}",
        plan.phase,
        plan.epochs,
        values.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::training::state::StateError;

    /// Counts steps; its state is the count.
    struct Counter {
        steps: i64,
        ps: Vec<f64>,
        nan_at: Option<(usize, usize)>,
    }

    impl TrainingMethod for Counter {
        fn steps_per_epoch(&self) -> usize {
            3
        }
        fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
            self.steps += 1;
            self.ps.push(at.p);
            let loss = if self.nan_at == Some((at.epoch, at.step)) {
                f64::NAN
            } else {
                at.step as f64
            };
            Ok(vec![("train_loss", loss)])
        }
        fn end_epoch(&mut self, end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
            Ok(vec![
                ("val_acc", 0.25),
                ("periodic", end.periodic as i64 as f64),
            ])
        }
        fn save_state(&self, state: &mut TrainingState) {
            state.insert("steps", Tensor::from(self.steps));
        }
        fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
            self.steps = state
                .get("steps")
                .ok_or_else(|| StateError::Missing("steps".into()))?
                .int64_value(&[]);
            Ok(())
        }
    }

    fn ctx(checkpoints: Option<Utf8PathBuf>) -> (tempfile::TempDir, StageContext) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let ctx =
            StageContext::new("t", path, Default::default(), 0).with_checkpoint_dir(checkpoints);
        (dir, ctx)
    }

    #[test]
    fn scalars_are_read_together_and_anything_else_is_an_error() {
        let (a, b) = (Tensor::from(1.5f32), Tensor::from(2i64));
        assert_eq!(read_scalars(&[&a, &b]).unwrap(), [1.5, 2.0]);
        let pair = Tensor::from_slice(&[1.0f32, 2.0]);
        assert!(read_scalars(&[&a, &pair]).is_err());
        assert!(read_scalars(&[]).is_err());
    }

    #[test]
    fn averages_per_epoch_and_runs_the_hook_periodically() {
        let (_dir, ctx) = ctx(None);
        let mut counter = Counter {
            steps: 0,
            ps: vec![],
            nan_at: None,
        };
        let plan = LoopPlan::new("train", 3, "optimizer.lr").hook_every(2);
        let history = train(&ctx, &plan, &mut counter).unwrap();
        assert_eq!(history.epochs.len(), 3);
        assert_eq!(history.last("train_loss"), Some(2.0));
        assert_eq!(history.last("val_acc"), Some(0.25));
        let periodic: Vec<f64> = history.epochs.iter().map(|r| r["periodic"]).collect();
        assert_eq!(periodic, [0.0, 1.0, 1.0]);
        assert_eq!(counter.ps[..4], [0.0, 1.0 / 9.0, 2.0 / 9.0, 3.0 / 9.0]);
    }

    #[test]
    fn a_nan_names_epoch_step_and_parameter() {
        let (_dir, ctx) = ctx(None);
        let mut counter = Counter {
            steps: 0,
            ps: vec![],
            nan_at: Some((2, 3)),
        };
        let err = train(
            &ctx,
            &LoopPlan::new("train", 2, "optimizer.lr"),
            &mut counter,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "train: `train_loss` became NaN at epoch 2 step 3; lower `optimizer.lr`"
        );
    }

    #[test]
    fn a_second_run_resumes_from_the_checkpoint() {
        let checkpoints = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(checkpoints.path().to_owned()).unwrap();
        let (_out, ctx) = ctx(Some(dir));
        let mut first = Counter {
            steps: 0,
            ps: vec![],
            nan_at: None,
        };
        train(&ctx, &LoopPlan::new("train", 2, "lr"), &mut first).unwrap();
        let mut second = Counter {
            steps: 0,
            ps: vec![],
            nan_at: None,
        };
        let history = train(&ctx, &LoopPlan::new("train", 3, "lr"), &mut second).unwrap();
        assert_eq!(second.steps, 9, "restored 6 steps, ran the third epoch");
        assert_eq!(second.ps.len(), 3);
        assert_eq!(history.epochs.len(), 3);
    }

    fn counter() -> Counter {
        Counter {
            steps: 0,
            ps: vec![],
            nan_at: None,
        }
    }

    #[test]
    fn a_checkpoint_that_does_not_verify_is_discarded_and_the_phase_starts_over() {
        let checkpoints = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(checkpoints.path().to_owned()).unwrap();
        let (_out, ctx) = ctx(Some(dir.clone()));
        let state = dir.join("train").join(STATE_FILE);
        type Damage = fn(&mut Vec<u8>);
        let damages: [(&str, Damage); 2] = [
            ("a flipped bit", |bytes| {
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
            }),
            ("a cut-off write", |bytes| bytes.truncate(bytes.len() / 2)),
        ];
        for (damage, apply) in damages {
            train(&ctx, &LoopPlan::new("train", 2, "lr"), &mut counter()).unwrap();
            let mut bytes = std::fs::read(&state).unwrap();
            apply(&mut bytes);
            std::fs::write(&state, bytes).unwrap();
            let mut rerun = counter();
            let history = train(&ctx, &LoopPlan::new("train", 3, "lr"), &mut rerun).unwrap();
            assert_eq!(rerun.steps, 9, "{damage}: all three epochs ran again");
            assert_eq!(rerun.ps.len(), 9, "{damage}");
            assert_eq!(history.epochs.len(), 3, "{damage}");
            std::fs::remove_dir_all(dir.join("train")).unwrap();
        }
    }
}
