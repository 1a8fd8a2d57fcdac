//! `hwrun run-job FILE`: what a Slurm job runs on its node. It reads the job file, picks its
//! stage (`SLURM_ARRAY_TASK_ID` for an array), and runs it with the local executor (in process,
//! or the `hwrun-torch` worker for libtorch kinds) through the same lock-stage-commit as a local
//! run, trying again up to the job's `retries` times. A job whose stage is already in the cache
//! (another submission produced it) succeeds at once.

use anyhow::Context;
use camino::Utf8Path;
use indicatif::ProgressBar;

use super::record::JobFile;
use crate::cache::Cache;
use crate::output::Printer;
use crate::scheduler::executor::local::LocalExecutor;
use crate::scheduler::run_stage::{run_job, NodeRun, RunSettings};
use crate::stage::{CancelToken, Cancelled};

pub fn run_job_file(
    path: &Utf8Path,
    cancel: &CancelToken,
    printer: &Printer,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the job file `{path}`"))?;
    let file: JobFile = serde_json::from_str(&text)
        .with_context(|| format!("malformed job file `{path}` (hwrun bug)"))?;
    let index = match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(id) => id
            .parse::<usize>()
            .with_context(|| format!("SLURM_ARRAY_TASK_ID `{id}` is not an index"))?,
        Err(_) => 0,
    };
    let task = file.tasks.get(index).with_context(|| {
        format!(
            "job file `{path}` has {} stage(s), no task {index}",
            file.tasks.len()
        )
    })?;
    let cache = Cache::open(&file.cache)
        .with_context(|| format!("cannot open the cache `{}` on this node", file.cache))?;
    let settings = RunSettings {
        device: file.device,
        cancel,
        printer,
    };
    printer.status(&format!(
        "running {} ({}) on {}",
        task.label,
        task.kind,
        hostname()
    ));
    let mut attempt = 0;
    loop {
        let result = run_job(
            &cache,
            task,
            &LocalExecutor,
            &settings,
            ProgressBar::hidden(),
            || {
                printer.status(&format!(
                    "waiting for another hwrun process running {}",
                    task.label
                ))
            },
        );
        match result {
            Ok(NodeRun::Ran(manifest)) => {
                printer.status(&format!("✓ {} {:.1}s", task.label, manifest.wall_time_s));
                return Ok(());
            }
            Ok(NodeRun::AlreadyCached(_)) => {
                printer.status(&format!("✓ {} (already in the cache)", task.label));
                return Ok(());
            }
            Err(error) if error.downcast_ref::<Cancelled>().is_some() => return Err(error),
            Err(error) if attempt < file.retries => {
                attempt += 1;
                printer.warn(&format!(
                    "{} failed: {error:#}; retry {attempt} of {}",
                    task.label, file.retries
                ));
            }
            Err(error) => return Err(error.context(format!("stage `{}` failed", task.label))),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "this node".to_owned(), |h| h.trim().to_owned())
}
