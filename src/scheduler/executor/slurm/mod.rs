//! The Slurm executor (`--executor slurm`, or `executor = "slurm"` in the recipe's `[run]`).
//!
//! Every stage that must run becomes a Slurm job that runs `hwrun run-job FILE` ([`run_job`])
//! on a node; the job file (in the cache's `tmp/slurm/`) holds what the stage needs, so no user
//! value is ever quoted into a shell script. The instances of one stage across a sweep's variants
//! are one job array (`--array=0-N`, task `i` runs the file's `i`-th stage). Jobs are chained
//! with `--dependency=afterok:` and `--kill-on-invalid-dep=yes`, so the dependents of a failed
//! stage never start. Resources come from the `[slurm]` table ([`config`]). After submission
//! the executor follows the jobs with one `squeue` call per poll (back-off from 0.5 s to 5 s),
//! reads their results from the cache (which must be on a filesystem every node shares), and
//! cancels them all (`scancel`) on Ctrl-C. The submission is recorded in the cache for
//! `hwrun status` ([`record`]).

pub mod config;
pub mod queue;
pub mod record;
pub mod run_job;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use petgraph::graph::NodeIndex;

use super::Executor;
use crate::cache::{Cache, CacheKey, Manifest};
use crate::graph::Status;
use crate::scheduler::job::StageJob;
use crate::scheduler::{RunEnv, RunSummary, StageReport, StageResult};
pub use config::SlurmConfig;
use queue::{top_job, JobState, JobStates};
use record::{sanitize, write_json, JobFile, SubmissionRecord, SubmittedStage};

const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);

/// The one script every job runs: it executes its arguments, so values reach hwrun as argv.
const JOB_SCRIPT: &str = "#!/bin/sh\n# hwrun's Slurm job script: runs `hwrun run-job FILE` as given in its arguments.\nexec \"$@\"\n";

/// Submits a plan's stages to Slurm and follows them.
#[derive(Debug, Clone, Default)]
pub struct SlurmExecutor {
    pub config: SlurmConfig,
    /// Tries of a failed stage inside its job, after the first.
    pub retries: u32,
    /// Return after submission (`--detach`).
    pub detach: bool,
}

/// What was submitted: the record, and which of its stages each node is.
pub struct Submission {
    pub record: SubmissionRecord,
    by_node: BTreeMap<NodeIndex, usize>,
    /// The job files (removed once every job has finished).
    job_dir: Option<Utf8PathBuf>,
    /// From planning done to every job queued.
    pub seconds: f64,
}

impl Executor for SlurmExecutor {
    fn execute(&self, run: &RunEnv<'_>) -> anyhow::Result<RunSummary> {
        let submission = self.submit(run)?;
        if self.detach {
            return Ok(detached_summary(run, &submission));
        }
        Ok(self.follow(run, &submission))
    }
}

impl SlurmExecutor {
    /// Submits every stage to run, one job (or array) per stage declaration, in dependency order.
    pub fn submit(&self, run: &RunEnv<'_>) -> anyhow::Result<Submission> {
        let started = Instant::now();
        let plan = run.plan;
        let mut groups: BTreeMap<(usize, bool), Vec<NodeIndex>> = BTreeMap::new();
        for node in plan.graph.node_indices() {
            if run.statuses[node.index()].status == Status::Run {
                let stage = &plan.graph[node];
                groups
                    .entry((stage.decl, stage.shape.uses_device))
                    .or_default()
                    .push(node);
            }
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let run_id = format!("{unix}-{}", std::process::id());
        let mut record = SubmissionRecord::new(&plan.recipe.name, run_id.clone());
        let mut by_node = BTreeMap::new();
        if groups.is_empty() {
            return Ok(Submission {
                record,
                by_node,
                job_dir: None,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let job_dir = run.cache.root().join("tmp").join("slurm").join(&run_id);
        let log_dir = run
            .cache
            .root()
            .join("slurm")
            .join("logs")
            .join(sanitize(&plan.recipe.name));
        for dir in [&job_dir, &log_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{dir}`"))?;
        }
        let script = job_dir.join("job.sh");
        std::fs::write(&script, JOB_SCRIPT).with_context(|| format!("cannot write `{script}`"))?;
        let hwrun = match &self.config.hwrun {
            Some(path) => path.clone(),
            None => current_exe()?,
        };
        // Job id of each submitted node (the array's id for a task), for its dependents.
        let mut job_of: HashMap<NodeIndex, String> = HashMap::new();
        for ((decl, uses_device), nodes) in &groups {
            let name = &plan.recipe.stages[*decl].name;
            let tasks = nodes
                .iter()
                .map(|&node| StageJob::of(plan, node))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let job_file = job_dir.join(format!("{}.json", sanitize(name)));
            let file = JobFile {
                cache: run.cache.root().to_owned(),
                device: run.options.device,
                retries: self.retries,
                tasks,
            };
            write_json(&job_file, &file)?;
            let dependencies: BTreeSet<&String> = nodes
                .iter()
                .flat_map(|&node| plan.inputs_of(node))
                .filter_map(|(_, input)| job_of.get(&input))
                .collect();
            let array = nodes.len() > 1;
            let pattern = if array { "%A_%a" } else { "%j" };
            let mut args = vec![
                format!("--job-name=hwrun:{}:{name}", plan.recipe.name),
                format!(
                    "--output={}",
                    log_dir.join(format!("{}-{pattern}.out", sanitize(name)))
                ),
                "--open-mode=append".to_owned(),
            ];
            if array {
                args.push(format!("--array=0-{}", nodes.len() - 1));
            }
            if !dependencies.is_empty() {
                let ids: Vec<&str> = dependencies.iter().map(|s| s.as_str()).collect();
                args.push(format!("--dependency=afterok:{}", ids.join(":")));
                args.push("--kill-on-invalid-dep=yes".to_owned());
            }
            if self.retries > 0 {
                // A job whose node died is queued again by Slurm.
                args.push("--requeue".to_owned());
            }
            args.extend(self.config.resources(name).sbatch_args(*uses_device));
            args.extend([
                script.to_string(),
                hwrun.to_string(),
                "run-job".to_owned(),
                job_file.to_string(),
            ]);
            let id = match queue::sbatch(&args) {
                Ok(id) => id,
                Err(error) => {
                    if let Err(cancel_error) = queue::scancel(&record.jobs) {
                        run.printer.warn(&format!("{cancel_error:#}"));
                    }
                    return Err(error.context(format!("cannot submit stage `{name}` to Slurm")));
                }
            };
            tracing::debug!("submitted `{name}` as job {id} ({} task(s))", nodes.len());
            for (index, &node) in nodes.iter().enumerate() {
                let job = if array {
                    format!("{id}_{index}")
                } else {
                    id.clone()
                };
                let log = log_dir.join(format!("{}-{job}.out", sanitize(name)));
                by_node.insert(node, record.stages.len());
                record.stages.push(SubmittedStage {
                    label: plan.graph[node].label.clone(),
                    key: plan.graph[node].key.hex(),
                    job,
                    log,
                });
                job_of.insert(node, id.clone());
            }
            record.jobs.push(id);
        }
        record.save(run.cache)?;
        let seconds = started.elapsed().as_secs_f64();
        run.printer.status(&format!(
            "submitted {} stages as {} Slurm job(s) in {seconds:.2}s",
            record.stages.len(),
            record.jobs.len()
        ));
        Ok(Submission {
            record,
            by_node,
            job_dir: Some(job_dir),
            seconds,
        })
    }

    /// Polls the submitted jobs until each finished, failed or was skipped.
    pub fn follow(&self, run: &RunEnv<'_>, submission: &Submission) -> RunSummary {
        let plan = run.plan;
        let record = &submission.record;
        let mut unfinished: BTreeMap<NodeIndex, usize> = submission.by_node.clone();
        let mut results: BTreeMap<NodeIndex, StageReport> = BTreeMap::new();
        let mut announced: HashSet<NodeIndex> = HashSet::new();
        let mut delay = POLL_FIRST;
        let mut stopped_by: Option<String> = None;
        let mut poll_errors = 0;
        while !unfinished.is_empty() {
            if run.cancel.is_cancelled() {
                let jobs = unfinished_jobs(record, &unfinished);
                if let Err(error) = queue::scancel(&jobs) {
                    run.printer.warn(&format!("{error:#}"));
                }
                run.printer
                    .status(&format!("cancelled Slurm job(s) {}", jobs.join(", ")));
                break;
            }
            let states = match queue::squeue(&record.jobs) {
                Ok(states) => {
                    poll_errors = 0;
                    states
                }
                Err(error) => {
                    poll_errors += 1;
                    run.printer
                        .warn(&format!("{error:#} (try {poll_errors} of 5)"));
                    if poll_errors >= 5 {
                        stopped_by = Some(format!("squeue kept failing: {error:#}"));
                        break;
                    }
                    sleep_unless_cancelled(delay, run);
                    continue;
                }
            };
            let unfinished_jobs = unfinished.values().map(|&i| record.stages[i].job.as_str());
            let states = JobStates::complete(states, unfinished_jobs);
            let mut changed = false;
            for (node, index) in unfinished.clone() {
                let submitted = &record.stages[index];
                let job_state = states.get(&submitted.job);
                let stage = &plan.graph[node];
                let report = match classify(run.cache, &stage.key, job_state) {
                    StageState::Pending => continue,
                    StageState::Running => {
                        if announced.insert(node) {
                            run.printer.status(&format!(
                                "running {} (job {})",
                                stage.label, submitted.job
                            ));
                        }
                        continue;
                    }
                    StageState::Done(manifest) => {
                        run.printer.status(&format!(
                            "✓ {} {:.1}s (job {})",
                            stage.label, manifest.wall_time_s, submitted.job
                        ));
                        StageReport::finished(
                            stage,
                            run.cache,
                            &manifest,
                            StageResult::Ran,
                            manifest.wall_time_s,
                        )
                    }
                    StageState::DependencyFailed => {
                        let reason = plan
                            .inputs_of(node)
                            .into_iter()
                            .find(|(_, input)| {
                                results
                                    .get(input)
                                    .is_some_and(|r| r.result != StageResult::Ran)
                            })
                            .map_or("an input's job failed".to_owned(), |(_, input)| {
                                format!("input `{}` failed", plan.graph[input].label)
                            });
                        StageReport::skipped(stage, &reason)
                    }
                    StageState::Failed(what) | StageState::Unknown(what) => {
                        let error = failure_message(submitted, &what);
                        run.printer
                            .status(&format!("✗ {} failed: {error}", stage.label));
                        if !run.options.keep_going && stopped_by.is_none() {
                            stopped_by = Some(stage.label.clone());
                        }
                        StageReport::failed(stage, 0.0, error)
                    }
                };
                changed = true;
                results.insert(
                    node,
                    StageReport {
                        job: Some(submitted.job.clone()),
                        ..report
                    },
                );
                unfinished.remove(&node);
            }
            if stopped_by.is_some() {
                break;
            }
            delay = if changed {
                POLL_FIRST
            } else {
                (delay * 3 / 2).min(POLL_MAX)
            };
            if !unfinished.is_empty() {
                sleep_unless_cancelled(delay, run);
            }
        }
        if let (true, Some(dir)) = (unfinished.is_empty(), &submission.job_dir) {
            if let Err(error) = std::fs::remove_dir_all(dir) {
                tracing::debug!("cannot remove the job files `{dir}`: {error}");
            }
        }
        let why_not = match (&stopped_by, run.cancel.is_cancelled()) {
            (_, true) => "interrupted".to_owned(),
            (Some(label), false) => {
                if let Err(error) = queue::scancel(&unfinished_jobs(record, &unfinished)) {
                    run.printer.warn(&format!("{error:#}"));
                }
                format!("the run stopped after `{label}` failed (its job was cancelled; -k keeps going)")
            }
            (None, false) => "the run stopped before it".to_owned(),
        };
        let stages = plan
            .topological()
            .into_iter()
            .map(|node| {
                if let Some(report) = results.remove(&node) {
                    return report;
                }
                let stage = &plan.graph[node];
                match (submission.by_node.get(&node), run.cache.lookup(&stage.key)) {
                    (None, Some(manifest)) => {
                        StageReport::finished(stage, run.cache, &manifest, StageResult::Cached, 0.0)
                    }
                    (Some(&index), Some(manifest)) => StageReport {
                        job: Some(record.stages[index].job.clone()),
                        ..StageReport::finished(
                            stage,
                            run.cache,
                            &manifest,
                            StageResult::Ran,
                            manifest.wall_time_s,
                        )
                    },
                    (None, None) => StageReport::failed(
                        stage,
                        0.0,
                        "its cache entry disappeared after planning".to_owned(),
                    ),
                    (Some(&index), None) => StageReport {
                        job: Some(record.stages[index].job.clone()),
                        ..StageReport::skipped(stage, &why_not)
                    },
                }
            })
            .collect();
        RunSummary {
            recipe: plan.recipe.name.clone(),
            stages,
            interrupted: run.cancel.is_cancelled(),
        }
    }
}

/// The jobs (arrays by their id) that still have unfinished stages.
fn unfinished_jobs(
    record: &SubmissionRecord,
    unfinished: &BTreeMap<NodeIndex, usize>,
) -> Vec<String> {
    let jobs: BTreeSet<&str> = unfinished
        .values()
        .map(|&i| top_job(&record.stages[i].job))
        .collect();
    jobs.into_iter().map(str::to_owned).collect()
}

/// After `--detach`: the cached stages, and the job of each submitted one.
fn detached_summary(run: &RunEnv<'_>, submission: &Submission) -> RunSummary {
    let plan = run.plan;
    let stages = plan
        .topological()
        .into_iter()
        .map(|node| {
            let stage = &plan.graph[node];
            match submission.by_node.get(&node) {
                Some(&index) => {
                    let submitted = &submission.record.stages[index];
                    StageReport {
                        result: StageResult::Submitted,
                        job: Some(submitted.job.clone()),
                        output: Some(submitted.log.clone()),
                        ..StageReport::skipped(stage, "")
                    }
                }
                None => match run.cache.lookup(&stage.key) {
                    Some(manifest) => {
                        StageReport::finished(stage, run.cache, &manifest, StageResult::Cached, 0.0)
                    }
                    None => StageReport::failed(
                        stage,
                        0.0,
                        "its cache entry disappeared after planning".to_owned(),
                    ),
                },
            }
        })
        .collect();
    RunSummary {
        recipe: plan.recipe.name.clone(),
        stages,
        interrupted: false,
    }
}

/// Where a submitted stage is, from the cache and its job's state.
pub enum StageState {
    Done(Box<Manifest>),
    Pending,
    Running,
    /// Slurm cancelled it because an input's job failed.
    DependencyFailed,
    /// Its job failed: Slurm's state and reason.
    Failed(String),
    /// Slurm no longer knows its job and it is not in the cache.
    Unknown(String),
}

pub fn classify(cache: &Cache, key: &CacheKey, job: Option<&JobState>) -> StageState {
    match job {
        Some(JobState::Pending) => StageState::Pending,
        Some(JobState::Running) => StageState::Running,
        _ => match (cache.lookup(key), job) {
            (Some(manifest), _) => StageState::Done(Box::new(manifest)),
            (None, Some(JobState::DependencyFailed)) => StageState::DependencyFailed,
            (None, Some(JobState::Failed { state, reason }))
                if reason.is_empty() || reason == "None" =>
            {
                StageState::Failed(state.clone())
            }
            (None, Some(JobState::Failed { state, reason })) => {
                StageState::Failed(format!("{state} ({reason})"))
            }
            (None, Some(JobState::Completed)) => StageState::Failed(
                "COMPLETED, but its cache entry is missing (is the cache on a shared filesystem?)"
                    .to_owned(),
            ),
            (None, _) => {
                StageState::Unknown("left the queue without producing its cache entry".to_owned())
            }
        },
    }
}

/// `Slurm job 12_3 FAILED (NonZeroExitCode); log: ...` and the log's last error line.
pub fn failure_message(submitted: &SubmittedStage, what: &str) -> String {
    let mut message = format!("Slurm job {} {what}; log: {}", submitted.job, submitted.log);
    if let Some(line) = last_error_line(&submitted.log) {
        message.push_str(&format!("\n  {line}"));
    }
    message
}

fn last_error_line(log: &Utf8Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| l.starts_with("error"))
        .map(|l| l.trim().to_owned())
}

fn sleep_unless_cancelled(delay: Duration, run: &RunEnv<'_>) {
    let until = Instant::now() + delay;
    while Instant::now() < until && !run.cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn current_exe() -> anyhow::Result<Utf8PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running hwrun binary")?;
    Utf8PathBuf::from_path_buf(exe)
        .map_err(|p| anyhow::anyhow!("the hwrun binary's path `{}` is not UTF-8", p.display()))
}
