//! Runs a plan through an executor ([`executor`]): the pool ([`pool`]) runs every stage whose
//! inputs are done on this machine, up to `--jobs` at once, at most one device-bound stage per
//! device; the Slurm executor submits them to a cluster. Either way each stage is committed to
//! the cache by [`run_stage::run_job`] the moment it finishes.

pub mod executor;
pub mod job;
mod pool;
pub mod run_stage;
pub mod summary;

use crate::cache::Cache;
use crate::graph::{NodeStatus, Plan};
use crate::output::Printer;
use crate::stage::CancelToken;
use crate::worker::DeviceRequest;
pub use executor::Executor;
pub use summary::{RunSummary, StageReport, StageResult};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub device: DeviceRequest,
}

/// Everything an executor needs to run a plan.
pub struct RunEnv<'a> {
    pub plan: &'a Plan,
    pub statuses: &'a [NodeStatus],
    pub cache: &'a Cache,
    pub options: &'a RunOptions,
    pub printer: &'a Printer,
    pub cancel: &'a CancelToken,
}
