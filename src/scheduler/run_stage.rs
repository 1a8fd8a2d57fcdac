//! Runs one stage instance, whatever computes it: lock its key, stage its outputs in a temporary
//! directory, have the executor compute them, commit on success. Every executor goes through
//! here (the pool in this process, `hwrun run-job` on a Slurm node), so the cache's
//! lock-stage-commit protocol lives in one place.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::ProgressBar;

use super::executor::{Compute, Work};
use super::job::StageJob;
use crate::cache::file_hash::HashError;
use crate::cache::{Cache, CacheError, Lookup, Manifest};
use crate::output::Printer;
use crate::stage::{CancelToken, Cancelled};
use crate::worker::DeviceRequest;

/// What running a node gave.
pub enum NodeRun {
    /// Another process (or an earlier step of this one) had already produced it.
    AlreadyCached(Manifest),
    Ran(Manifest),
}

/// How the stage should run, besides the job itself.
pub struct RunSettings<'a> {
    pub device: DeviceRequest,
    pub cancel: &'a CancelToken,
    pub printer: &'a Printer,
}

/// Runs `job` with `compute` unless the cache has it, and commits it.
pub fn run_job(
    cache: &Cache,
    job: &StageJob,
    compute: &dyn Compute,
    settings: &RunSettings<'_>,
    bar: ProgressBar,
    on_wait: impl FnOnce(),
) -> anyhow::Result<NodeRun> {
    let key = job.cache_key()?;
    // Hold before checking, so `gc` either sees the hold or has moved the entry away already;
    // the hold lasts until this process exits, so the stages reading it find it too.
    cache.hold(&key)?;
    if let Lookup::Valid(manifest) = cache.check(&key) {
        return Ok(NodeRun::AlreadyCached(*manifest));
    }
    let lock = cache.lock_waiting(&key, on_wait)?;
    match cache.check(&key) {
        Lookup::Valid(manifest) => return Ok(NodeRun::AlreadyCached(*manifest)),
        Lookup::Corrupt(problem) => {
            let moved = cache.quarantine(&key, &lock)?;
            settings.printer.warn(&format!(
                "the cached result of `{}` is corrupt: {problem}; moved it to `{moved}`, running the stage again",
                job.label
            ));
        }
        Lookup::Absent => {}
    }
    let checkpoint_dir = cache.checkpoint_dir(&key);
    let staging = cache.stage(key, lock)?;
    let started = Instant::now();
    let computed = job.resolve_inputs(cache).and_then(|inputs| {
        let log_path = staging.log_path();
        std::fs::File::create(&log_path).with_context(|| format!("cannot create `{log_path}`"))?;
        let work = Work {
            out_dir: staging.out_dir(),
            log_path,
            device: settings.device,
            checkpoint_dir,
            bar,
            cancel: settings.cancel,
            printer: settings.printer,
        };
        let computed = compute.compute(job, inputs, &work)?;
        for output in &job.outputs {
            anyhow::ensure!(
                work.out_dir.join(output).is_dir(),
                "stage kind `{}` declared output `{output}` but did not write it (hwrun bug)",
                job.kind
            );
        }
        Ok(computed)
    });
    let (outcome, device) = match computed {
        Ok(result) => result,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => return Err(error),
        Err(error) => {
            return Err(match cache.keep_failed_log(&staging, &job.label) {
                Some(log) => {
                    anyhow::anyhow!("{}\n(stage log: {log})", crate::output::chain_text(&error))
                }
                None => error,
            })
        }
    };
    let manifest = Manifest {
        format: Manifest::format_version(),
        key: job.key.clone(),
        kind: job.kind.clone(),
        stage_version: job.stage_version,
        stage: job.label.clone(),
        recipe: job.recipe.clone(),
        params: job.canonical.clone(),
        seed: job.seed,
        inputs: job.input_records(),
        external: job.external.clone(),
        outcome,
        files: Vec::new(),
        wall_time_s: started.elapsed().as_secs_f64(),
        device,
        hwrun_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    match cache.commit(staging, manifest) {
        Ok(manifest) => Ok(NodeRun::Ran(manifest)),
        Err(CacheError::Hash(HashError::Interrupted { .. })) => Err(Cancelled.into()),
        Err(error) => Err(error.into()),
    }
}
