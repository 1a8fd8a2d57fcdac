//! What a training method is to the shared loop of [`super::trainer`]: a type that knows its
//! steps per epoch, takes one step, may add to each epoch's record and write figures when an
//! epoch ends, and can save and restore its whole state. Classifier, DANN, ADDA, GANs and
//! diffusion models each implement it; none of them has a loop of its own.

use std::collections::HashMap;

use camino::Utf8Path;
use tch::Tensor;

use super::state::{StateError, TrainingState};

/// Named scalars: per step (averaged over the epoch), or per epoch.
pub type Scalars = Vec<(&'static str, f64)>;

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

/// An epoch that just ended.
#[derive(Debug, Clone, Copy)]
pub struct EpochEnd<'a> {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// The training progress at the epoch's last step, for reporting scheduled values.
    pub p: f64,
    /// The stage's output directory, for figures such as a sample grid per epoch.
    pub out_dir: &'a Utf8Path,
    /// Whether the periodic hook runs at this epoch (every `hook_every` epochs and at the last).
    pub periodic: bool,
}

pub trait TrainingMethod {
    /// Steps in one epoch.
    fn steps_per_epoch(&self) -> usize;

    /// One training step; its scalars (losses, accuracies) are checked for NaN/inf and averaged
    /// over the epoch.
    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars>;

    /// After every epoch: scalars to add to its record (validation accuracy, the scheduled
    /// learning rate, ...), and, when `end.periodic`, figures written into `end.out_dir`.
    fn end_epoch(&mut self, _end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        Ok(Vec::new())
    }

    /// Everything a resumed run needs to continue bit for bit.
    fn save_state(&self, state: &mut TrainingState);

    /// Restores what [`TrainingMethod::save_state`] saved.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError>;
}
