//! The local executor: in-process kinds (`command`, `report`, `download`) run inside this
//! process, every other kind in a `hwrun-torch` worker process (see [`crate::stages::runners`]).

use std::collections::BTreeMap;

use anyhow::Context;

use super::{Compute, Work};
use crate::scheduler::job::StageJob;
use crate::stage::{InputArtifact, StageContext, StageOutcome};
use crate::stages::runners;
use crate::worker::{run_in_worker, StageRequest};

/// Runs stages on this machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalExecutor;

impl Compute for LocalExecutor {
    fn compute(
        &self,
        job: &StageJob,
        inputs: BTreeMap<String, InputArtifact>,
        work: &Work<'_>,
    ) -> anyhow::Result<(StageOutcome, String)> {
        match runners::find_in_process(&job.kind) {
            Some(runner) => {
                let log = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&work.log_path)
                    .with_context(|| format!("cannot open the stage log `{}`", work.log_path))?;
                let mut ctx =
                    StageContext::new(job.label.clone(), work.out_dir.clone(), inputs, job.seed)
                        .with_progress(work.bar.clone())
                        .with_cancel(work.cancel.clone())
                        .with_log_file(log)
                        .with_checkpoint_dir(Some(work.checkpoint_dir.clone()));
                Ok((
                    runners::run_catching(runner, &job.param_table()?, &mut ctx)?,
                    "cpu".to_owned(),
                ))
            }
            None => {
                let request = StageRequest {
                    kind: job.kind.clone(),
                    params: job.params.clone(),
                    name: job.label.clone(),
                    out_dir: work.out_dir.clone(),
                    log_file: work.log_path.clone(),
                    inputs,
                    seed: job.seed,
                    device: work.device,
                    checkpoint_dir: Some(work.checkpoint_dir.clone()),
                };
                run_in_worker(&request, &work.bar, work.cancel, work.printer)
            }
        }
    }
}
