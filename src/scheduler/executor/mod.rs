//! The executor seam: how the stages of a plan get computed.
//!
//! Two levels, because executors differ in what they take over:
//! - [`Compute`] computes one stage into its staging directory. The scheduler's pool
//!   ([`super::pool`]) drives it: it picks ready stages, runs up to `--jobs` at once, and commits
//!   each through [`super::run_stage::run_job`], the one place that holds the cache's
//!   lock-stage-commit protocol. [`local::LocalExecutor`] (in process, or the `hwrun-torch`
//!   worker process for libtorch kinds) and [`mock::MockExecutor`] (placeholders, for tests) are
//!   computes.
//! - [`Executor`] runs a whole plan. Every [`Compute`] is one through the pool;
//!   [`slurm::SlurmExecutor`] is one by itself: it submits every stage to run as a batch of
//!   Slurm jobs chained by dependencies, and each job runs `hwrun run-job`, which commits through
//!   the same `run_job` on its node with the local executor.

pub mod local;
pub mod mock;
pub mod slurm;

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use indicatif::ProgressBar;

use super::job::StageJob;
use super::{RunEnv, RunSummary};
use crate::output::Printer;
use crate::stage::{CancelToken, InputArtifact, StageOutcome};
use crate::worker::DeviceRequest;

/// What a [`Compute`] gets for one stage besides the job: where to write, how to report, when
/// to stop.
pub struct Work<'a> {
    /// The (empty) output directory to fill.
    pub out_dir: Utf8PathBuf,
    /// The stage log (created, empty).
    pub log_path: Utf8PathBuf,
    pub device: DeviceRequest,
    /// Where the stage may keep resume checkpoints (outside its entry, kept across a kill).
    pub checkpoint_dir: Utf8PathBuf,
    pub bar: ProgressBar,
    pub cancel: &'a CancelToken,
    pub printer: &'a Printer,
}

/// Computes one stage whose inputs are committed.
pub trait Compute: Sync {
    /// Fills `work.out_dir`; returns the stage's outcome and the device it ran on.
    fn compute(
        &self,
        job: &StageJob,
        inputs: BTreeMap<String, InputArtifact>,
        work: &Work<'_>,
    ) -> anyhow::Result<(StageOutcome, String)>;
}

/// Runs every stage of a plan that is not cached; returns what happened to each.
/// An error means nothing could be started (e.g. the cluster refused the jobs); a stage that
/// fails is in the summary.
pub trait Executor {
    fn execute(&self, run: &RunEnv<'_>) -> anyhow::Result<RunSummary>;
}

impl<C: Compute> Executor for C {
    fn execute(&self, run: &RunEnv<'_>) -> anyhow::Result<RunSummary> {
        Ok(super::pool::execute(self, run))
    }
}
