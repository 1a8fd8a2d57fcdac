//! What was submitted, kept in the cache (`slurm/submissions/<recipe>.json`) so that
//! `hwrun status` can follow a detached run, and the job files the jobs read.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::scheduler::job::StageJob;
use crate::worker::DeviceRequest;

/// One submission of a recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub recipe: String,
    pub run_id: String,
    pub submitted_unix: u64,
    /// The jobs as sbatch numbered them (an array by its job id), in submission order.
    pub jobs: Vec<String>,
    pub stages: Vec<SubmittedStage>,
}

/// A stage instance and the job (or array task) that runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedStage {
    pub label: String,
    /// Its cache key, hex.
    pub key: String,
    /// `123` for a job, `123_4` for a task of an array.
    pub job: String,
    /// The job's stdout and stderr.
    pub log: Utf8PathBuf,
}

/// What a job reads on its node: which cache, and the stage (or, for an array, the stage per
/// `SLURM_ARRAY_TASK_ID`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFile {
    pub cache: Utf8PathBuf,
    pub device: DeviceRequest,
    /// How many times a failed stage is tried again inside its job.
    pub retries: u32,
    pub tasks: Vec<StageJob>,
}

impl SubmissionRecord {
    pub fn new(recipe: &str, run_id: String) -> SubmissionRecord {
        SubmissionRecord {
            recipe: recipe.to_owned(),
            run_id,
            submitted_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            jobs: Vec::new(),
            stages: Vec::new(),
        }
    }

    /// The last submission of `recipe` into `cache`, if any.
    pub fn load(cache: &Cache, recipe: &str) -> anyhow::Result<Option<SubmissionRecord>> {
        let path = record_path(cache, recipe);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).with_context(|| {
                    format!("malformed submission record `{path}`")
                })?))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("cannot read `{path}`")),
        }
    }

    /// Writes the record atomically (a rename), replacing the previous submission's.
    pub fn save(&self, cache: &Cache) -> anyhow::Result<()> {
        let path = record_path(cache, &self.recipe);
        write_json(&path, self)
    }

    pub fn stage_by_key(&self, key: &str) -> Option<&SubmittedStage> {
        self.stages.iter().find(|s| s.key == key)
    }
}

fn record_path(cache: &Cache, recipe: &str) -> Utf8PathBuf {
    cache
        .root()
        .join("slurm")
        .join("submissions")
        .join(format!("{}.json", sanitize(recipe)))
}

/// Writes `value` as JSON to `path` through a temporary file and a rename.
pub fn write_json(path: &Utf8Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{parent}`"))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write `{tmp}`"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{path}`"))
}

/// A name safe as one path component, and in Slurm's `--output` pattern (no `%`).
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
