//! `hwrun [run] RECIPE`: plan, run what is missing, print where everything is.

use std::fmt::Write;

use serde::Deserialize;

use super::args::{ExecutorChoice, GlobalArgs, RunArgs};
use super::results::{link_results, results_dir};
use super::session::{Access, Failure, Session};
use crate::error::exit_code;
use crate::graph::Status;
use crate::output::{OutputMode, Printer};
use crate::scheduler::executor::local::LocalExecutor;
use crate::scheduler::executor::slurm::{SlurmConfig, SlurmExecutor};
use crate::scheduler::{Executor, RunEnv, RunOptions, RunSummary, StageResult};
use crate::stage::CancelToken;
use crate::worker::DeviceRequest;

pub fn run(
    global: &GlobalArgs,
    args: &RunArgs,
    printer: &Printer,
    cancel: &CancelToken,
) -> Result<i32, Failure> {
    let device = parse_device(global.device.as_deref())?;
    let session = Session::open(global, &args.recipe, Access::Write)?;
    match session.cache.clean_stale_staging() {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} staging directories left by interrupted runs"),
        Err(error) => printer.warn(&format!("cannot clean stale staging directories: {error}")),
    }
    let settings = RunTable::from_recipe(&session.plan.recipe.document.root)?;
    let executor = args
        .executor
        .or(settings.executor)
        .unwrap_or(ExecutorChoice::Local);
    let retries = args.retries.or(settings.retries).unwrap_or(0);
    if executor == ExecutorChoice::Local && (args.detach || retries > 0) {
        return Err(Failure::Input(anyhow::anyhow!(
            "`--detach` and `--retries` need `--executor slurm` (or `executor = \"slurm\"` in the recipe's `[run]`)"
        )));
    }
    let to_run = session
        .statuses
        .iter()
        .filter(|s| s.status == Status::Run)
        .count();
    let place = match executor {
        ExecutorChoice::Local => device.to_string(),
        ExecutorChoice::Slurm => "Slurm".to_owned(),
    };
    printer.status(&format!(
        "{}: {} stages, {} cached, {} to run on {place}",
        session.plan.recipe.name,
        session.statuses.len(),
        session.statuses.len() - to_run,
        to_run,
    ));
    let options = RunOptions {
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        keep_going: args.keep_going,
        device,
    };
    let env = RunEnv {
        plan: &session.plan,
        statuses: &session.statuses,
        cache: &session.cache,
        options: &options,
        printer,
        cancel,
    };
    let mut summary = match executor {
        ExecutorChoice::Local => LocalExecutor.execute(&env),
        ExecutorChoice::Slurm => {
            let names: Vec<&str> = session
                .plan
                .recipe
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            let config = SlurmConfig::from_recipe(&session.plan.recipe.document.root, &names)
                .map_err(|e| {
                    Failure::Input(
                        anyhow::Error::from(e).context("invalid `[slurm]` table in the recipe"),
                    )
                })?;
            SlurmExecutor {
                config,
                retries,
                detach: args.detach,
            }
            .execute(&env)
        }
    }
    .map_err(Failure::Input)?;
    if let Err(error) = link_results(&results_dir(global), &session.cache, &mut summary) {
        printer.warn(&format!("cannot link the results: {error}"));
    }
    record_refs(&session, &summary);
    session.save_stat_cache();
    match printer.mode() {
        OutputMode::Json => {
            printer.result(&serde_json::to_string_pretty(&summary).map_err(anyhow::Error::from)?)
        }
        _ => printer.result(&render_summary(&summary)),
    }
    Ok(if summary.interrupted {
        exit_code::INTERRUPTED
    } else if summary.succeeded() {
        exit_code::SUCCESS
    } else {
        exit_code::STAGE_FAILED
    })
}

/// Remembers each finished stage's key so the next plan can say what changed.
fn record_refs(session: &Session, summary: &RunSummary) {
    for stage in &summary.stages {
        if matches!(stage.result, StageResult::Cached | StageResult::Ran) {
            if let Some(key) = crate::cache::CacheKey::from_hex(&stage.key) {
                if let Err(error) = session.cache.record_ref(&summary.recipe, &stage.name, &key) {
                    tracing::warn!("cannot record the last key of `{}`: {error}", stage.name);
                }
            }
        }
    }
}

/// The end-of-run table: each stage, what happened, how long, where its output is.
fn render_summary(summary: &RunSummary) -> String {
    let mut out = String::new();
    let width = summary
        .stages
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:<16} {:<8} {:>8}  output",
        "stage", "kind", "result", "time"
    );
    for stage in &summary.stages {
        let result = match stage.result {
            StageResult::Cached => "cached",
            StageResult::Ran => "ran",
            StageResult::Failed => "FAILED",
            StageResult::Skipped => "skipped",
            StageResult::Submitted => "queued",
        };
        let time = if stage.result == StageResult::Ran {
            format!("{:.1}s", stage.seconds)
        } else {
            "-".to_owned()
        };
        let location = match (
            stage.results.as_ref().or(stage.output.as_ref()),
            &stage.error,
            &stage.job,
        ) {
            // Printed once, in full, below the table.
            (_, Some(_), _) if stage.result == StageResult::Failed => "(error below)".to_owned(),
            (_, Some(error), _) => error.lines().next().unwrap_or_default().to_owned(),
            (Some(log), None, Some(job)) if stage.result == StageResult::Submitted => {
                format!("job {job}, log {log}")
            }
            (Some(output), None, _) => output.to_string(),
            (None, None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<16} {:<8} {:>8}  {location}",
            stage.name, stage.kind, result, time
        );
    }
    let lines: Vec<&String> = summary
        .stages
        .iter()
        .flat_map(|s| &s.outcome.summary)
        .collect();
    if !lines.is_empty() {
        out.push('\n');
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} ran, {} cached, {} failed, {} skipped",
        summary.count(StageResult::Ran),
        summary.count(StageResult::Cached),
        summary.count(StageResult::Failed),
        summary.count(StageResult::Skipped)
    );
    let queued = summary.count(StageResult::Submitted);
    if queued > 0 {
        let _ = writeln!(
            out,
            "\n{queued} queued on Slurm: `hwrun status RECIPE` shows where they are"
        );
    }
    for failed in summary
        .stages
        .iter()
        .filter(|s| s.result == StageResult::Failed)
    {
        if let Some(error) = &failed.error {
            let _ = writeln!(out, "\nerror: stage `{}` failed: {error}", failed.name);
        }
    }
    // Last, where a person looks first.
    let reports = summary.primary_files();
    if !reports.is_empty() {
        out.push('\n');
    }
    for file in reports {
        let _ = writeln!(out, "report: {file}");
    }
    out
}

/// `--device`: `cpu`, `cuda`, `cuda:N`; by default CUDA when available (decided by the worker).
pub fn parse_device(device: Option<&str>) -> Result<DeviceRequest, Failure> {
    match device {
        None => Ok(DeviceRequest::Auto),
        Some(text) => DeviceRequest::parse(text).ok_or_else(|| {
            Failure::Input(anyhow::anyhow!(
                "unknown device `{text}`: use `cpu`, `cuda` or `cuda:N`"
            ))
        }),
    }
}

/// The recipe's `[run]` table: how it runs by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTable {
    /// `local` or `slurm`.
    executor: Option<ExecutorChoice>,
    /// Tries of a failed stage after the first (Slurm).
    retries: Option<u32>,
}

impl RunTable {
    fn from_recipe(root: &toml::Table) -> Result<RunTable, Failure> {
        let Some(table) = root.get("run") else {
            return Ok(RunTable::default());
        };
        table.clone().try_into().map_err(|e: toml::de::Error| {
            Failure::Input(anyhow::anyhow!(
                "invalid `[run]` table in the recipe: {}",
                e.message()
            ))
        })
    }
}
