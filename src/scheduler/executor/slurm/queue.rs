//! Talking to Slurm's command-line tools: `sbatch`, one batched `squeue` (or `sacct`) for the
//! state of every job, `scancel`. No value is ever passed through a shell.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};

use anyhow::{bail, Context};

/// A Slurm job's state as hwrun cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Completed,
    /// Cancelled by Slurm because a dependency failed (`--kill-on-invalid-dep`).
    DependencyFailed,
    /// Failed, cancelled, timed out, out of memory, node failure...: Slurm's state and reason.
    Failed {
        state: String,
        reason: String,
    },
}

impl JobState {
    /// From squeue's `%T` and `%r` (or sacct's State).
    pub fn parse(state: &str, reason: &str) -> JobState {
        // sacct writes `CANCELLED by 0`.
        let state = state.split_whitespace().next().unwrap_or_default();
        match state {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
            | "RESIZING" | "SUSPENDED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => JobState::Pending,
            "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "CANCELLED" if reason == "DependencyNeverSatisfied" => JobState::DependencyFailed,
            other => JobState::Failed {
                state: other.to_owned(),
                reason: reason.to_owned(),
            },
        }
    }
}

fn run(tool: &str, args: &[String]) -> anyhow::Result<Output> {
    Command::new(tool).args(args).output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "cannot run `{tool}`: it is not on PATH. Run hwrun on a Slurm login node (or load its Slurm module), or use `--executor local`"
            )
        } else {
            anyhow::anyhow!("cannot run `{tool}`: {error}")
        }
    })
}

fn said(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr
    }
}

/// Submits a batch job; returns its id. `args` are sbatch's options, then the script and its
/// arguments.
pub fn sbatch(args: &[String]) -> anyhow::Result<String> {
    let mut full = vec!["--parsable".to_owned()];
    full.extend_from_slice(args);
    let output = run("sbatch", &full)?;
    if !output.status.success() {
        bail!("sbatch failed ({}): {}", output.status, said(&output));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch printed `{}` instead of a job id",
        stdout.trim()
    );
    Ok(id)
}

/// The state of every task of the given jobs that Slurm still knows, by `id` or `id_index`, in
/// one `squeue` call. Jobs Slurm has forgotten (older than `MinJobAge`) are absent.
pub fn squeue(job_ids: &[String]) -> anyhow::Result<HashMap<String, JobState>> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let args = [
        "--noheader".to_owned(),
        "--array".to_owned(),
        "--states=all".to_owned(),
        "--format=%i|%T|%r".to_owned(),
        format!("--jobs={}", job_ids.join(",")),
    ];
    let output = run("squeue", &args)?;
    if !output.status.success() {
        let message = said(&output);
        // Asked only about jobs Slurm has forgotten.
        if message.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        bail!("squeue failed ({}): {message}", output.status);
    }
    Ok(parse_lines(&String::from_utf8_lossy(&output.stdout)))
}

/// Where each job of a submission stands: [`squeue`]'s answer, completed by one [`sacct`] call for
/// the jobs squeue has already forgotten (finished longer than `MinJobAge` ago).
pub struct JobStates {
    queued: HashMap<String, JobState>,
    accounted: Option<HashMap<String, JobState>>,
}

impl JobStates {
    /// `queued` is what [`squeue`] said; `jobs` are the ids (`id` or `id_index`) that
    /// [`JobStates::get`] will be asked about.
    pub fn complete<'a>(
        queued: HashMap<String, JobState>,
        jobs: impl IntoIterator<Item = &'a str>,
    ) -> JobStates {
        let forgotten: Vec<String> = jobs
            .into_iter()
            .filter(|job| !queued.contains_key(*job))
            .map(|job| top_job(job).to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let accounted = if forgotten.is_empty() {
            None
        } else {
            sacct(&forgotten)
        };
        JobStates { queued, accounted }
    }

    pub fn get(&self, job: &str) -> Option<&JobState> {
        self.queued
            .get(job)
            .or_else(|| self.accounted.as_ref()?.get(job))
    }
}

/// `123` of `123_4`.
pub fn top_job(job: &str) -> &str {
    job.split('_').next().unwrap_or(job)
}

/// Like [`squeue`] from the accounting database, for jobs squeue has forgotten; `None` when the
/// cluster keeps no accounting.
pub fn sacct(job_ids: &[String]) -> Option<HashMap<String, JobState>> {
    if job_ids.is_empty() {
        return Some(HashMap::new());
    }
    let args = [
        "--noheader".to_owned(),
        "--parsable2".to_owned(),
        "--allocations".to_owned(),
        "--format=JobID,State,Reason".to_owned(),
        format!("--jobs={}", job_ids.join(",")),
    ];
    let output = run("sacct", &args).ok()?;
    output
        .status
        .success()
        .then(|| parse_lines(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_lines(text: &str) -> HashMap<String, JobState> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split('|');
            let id = fields.next()?.trim();
            let state = fields.next()?.trim();
            let reason = fields.next().unwrap_or_default().trim();
            (!id.is_empty()).then(|| (id.to_owned(), JobState::parse(state, reason)))
        })
        .collect()
}

/// Cancels jobs (whole arrays when given array ids).
pub fn scancel(job_ids: &[String]) -> anyhow::Result<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let output = run("scancel", job_ids).context("cannot cancel the submitted jobs")?;
    // A job that finished meanwhile needs no cancelling.
    if !output.status.success()
        && !said(&output)
            .lines()
            .all(|l| l.contains("already completing or completed"))
    {
        bail!("scancel failed ({}): {}", output.status, said(&output));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_states() {
        let states = parse_lines(
            "1|COMPLETED|None\n2_0|RUNNING|None\n2_1|PENDING|Dependency\n3|CANCELLED|DependencyNeverSatisfied\n4|FAILED|NonZeroExitCode\n",
        );
        assert_eq!(states["1"], JobState::Completed);
        assert_eq!(states["2_0"], JobState::Running);
        assert_eq!(states["2_1"], JobState::Pending);
        assert_eq!(states["3"], JobState::DependencyFailed);
        assert_eq!(
            states["4"],
            JobState::Failed {
                state: "FAILED".into(),
                reason: "NonZeroExitCode".into()
            }
        );
        assert_eq!(
            JobState::parse("CANCELLED by 0", ""),
            JobState::Failed {
                state: "CANCELLED".into(),
                reason: String::new()
            }
        );
    }
}
