//! `hwrun status RECIPE`: where each stage of a recipe submitted to Slurm is (pending, running,
//! done, failed, skipped), from the cache and the submission record, with one `squeue` call.
//! And `hwrun run-job FILE`, what a submitted job runs on its node.

use std::fmt::Write;

use serde::Serialize;

use super::args::{GlobalArgs, RecipeArgs, RunJobArgs};
use super::session::{Access, Failure, Session};
use crate::error::exit_code;
use crate::graph::Status;
use crate::output::{OutputMode, Printer};
use crate::scheduler::executor::slurm::queue::{self, JobStates};
use crate::scheduler::executor::slurm::record::SubmissionRecord;
use crate::scheduler::executor::slurm::run_job::run_job_file;
use crate::scheduler::executor::slurm::{classify, failure_message, StageState};
use crate::stage::CancelToken;

/// One row of `hwrun status`.
#[derive(Serialize)]
struct StatusRow {
    stage: String,
    state: &'static str,
    job: Option<String>,
    /// Failed stages: what Slurm said and the job's log.
    error: Option<String>,
}

pub fn status(global: &GlobalArgs, args: &RecipeArgs, printer: &Printer) -> Result<i32, Failure> {
    let session = Session::open(global, args, Access::Read)?;
    let plan = &session.plan;
    let record = SubmissionRecord::load(&session.cache, &plan.recipe.name)?;
    let jobs = record.as_ref().map_or_else(Vec::new, |r| r.jobs.clone());
    let submitted_jobs = record
        .iter()
        .flat_map(|r| &r.stages)
        .map(|s| s.job.as_str());
    let states = JobStates::complete(queue::squeue(&jobs)?, submitted_jobs);
    let rows: Vec<StatusRow> = plan
        .topological()
        .into_iter()
        .map(|node| {
            let stage = &plan.graph[node];
            let key = stage.key.hex();
            let submitted = record.as_ref().and_then(|r| r.stage_by_key(&key));
            let row = |state, error| StatusRow {
                stage: stage.label.clone(),
                state,
                job: submitted.map(|s| s.job.clone()),
                error,
            };
            let Some(submitted) = submitted else {
                return match session.statuses[node.index()].status {
                    Status::Cached => row("done", None),
                    Status::Run => row("not submitted", None),
                };
            };
            let job_state = states.get(&submitted.job);
            match classify(&session.cache, &stage.key, job_state) {
                StageState::Done(_) => row("done", None),
                StageState::Pending => row("pending", None),
                StageState::Running => row("running", None),
                StageState::DependencyFailed => {
                    row("skipped", Some("an input's job failed".to_owned()))
                }
                StageState::Failed(what) | StageState::Unknown(what) => {
                    row("failed", Some(failure_message(submitted, &what)))
                }
            }
        })
        .collect();
    let failed = rows.iter().any(|r| r.state == "failed");
    if printer.mode() == OutputMode::Json {
        printer.result(&serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?);
    } else {
        printer.result(&render(&rows, record.as_ref()));
    }
    Ok(if failed {
        exit_code::STAGE_FAILED
    } else {
        exit_code::SUCCESS
    })
}

fn render(rows: &[StatusRow], record: Option<&SubmissionRecord>) -> String {
    let width = rows
        .iter()
        .map(|r| r.stage.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    match record {
        Some(record) => {
            let _ = writeln!(
                out,
                "submission {} (Slurm jobs {})\n",
                record.run_id,
                record.jobs.join(", ")
            );
        }
        None => out.push_str("no Slurm submission of this recipe in this cache\n\n"),
    }
    let _ = writeln!(
        out,
        "{:<width$}  {:<13}  {:<10}  log",
        "stage", "state", "job"
    );
    for row in rows {
        let job = row.job.as_deref().unwrap_or("-");
        let detail = row.error.as_deref().unwrap_or_default().replace('\n', " ");
        let _ = writeln!(
            out,
            "{:<width$}  {:<13}  {:<10}  {detail}",
            row.stage, row.state, job
        );
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for state in [
        "done",
        "running",
        "pending",
        "failed",
        "skipped",
        "not submitted",
    ] {
        let n = rows.iter().filter(|r| r.state == state).count();
        if n > 0 {
            counts.push((state, n));
        }
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let _ = write!(out, "\n{}", counts.join(", "));
    out
}

/// `hwrun run-job FILE`: exit 0 when the stage is in the cache afterwards.
pub fn run_job(args: &RunJobArgs, printer: &Printer, cancel: &CancelToken) -> Result<i32, Failure> {
    match run_job_file(&args.file, cancel, printer) {
        Ok(()) => Ok(exit_code::SUCCESS),
        Err(error) if cancel.is_cancelled() => {
            eprintln!("error: {error:#}");
            Ok(exit_code::INTERRUPTED)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(exit_code::STAGE_FAILED)
        }
    }
}
