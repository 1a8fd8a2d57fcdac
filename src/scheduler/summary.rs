//! What a run did, stage by stage.

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::cache::{Cache, Manifest};
use crate::graph::PlannedStage;
use crate::stage::StageOutcome;

/// How one stage instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageResult {
    /// Found in the cache, nothing ran.
    Cached,
    /// Ran and was committed to the cache.
    Ran,
    /// Ran and failed; nothing was cached.
    Failed,
    /// Not run because an input failed or the run stopped first.
    Skipped,
    /// Handed to a cluster that runs it later (`--detach`).
    Submitted,
}

/// One stage instance in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub result: StageResult,
    pub seconds: f64,
    /// The entry's output directory (absent unless cached or ran).
    pub output: Option<Utf8PathBuf>,
    /// The readable link to it, `results/<recipe>/<stage>`, once made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Utf8PathBuf>,
    #[serde(flatten)]
    pub outcome: StageOutcome,
    pub error: Option<String>,
    /// The Slurm job (`123`, or `123_4` for an array task) that ran or runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub recipe: String,
    pub stages: Vec<StageReport>,
    pub interrupted: bool,
}

impl RunSummary {
    pub fn count(&self, result: StageResult) -> usize {
        self.stages.iter().filter(|s| s.result == result).count()
    }

    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self.count(StageResult::Failed) == 0
            && self.count(StageResult::Skipped) == 0
    }

    /// Files a person should open (reports), under `results/` when linked there.
    pub fn primary_files(&self) -> Vec<Utf8PathBuf> {
        self.stages
            .iter()
            .filter_map(|s| {
                Some(
                    s.results
                        .as_ref()
                        .or(s.output.as_ref())?
                        .join(s.outcome.primary.as_ref()?),
                )
            })
            .collect()
    }
}

impl StageReport {
    /// A stage that finished (ran or was found in the cache).
    pub fn finished(
        stage: &PlannedStage,
        cache: &Cache,
        manifest: &Manifest,
        result: StageResult,
        seconds: f64,
    ) -> StageReport {
        StageReport {
            result,
            seconds,
            output: Some(cache.output_dir(&stage.key)),
            outcome: manifest.outcome.clone(),
            ..StageReport::skipped(stage, "")
        }
    }

    /// A stage that ran and failed with `error`.
    pub fn failed(stage: &PlannedStage, seconds: f64, error: String) -> StageReport {
        StageReport {
            result: StageResult::Failed,
            seconds,
            error: Some(error),
            ..StageReport::skipped(stage, "")
        }
    }

    /// A stage that did not run, and why (empty: no reason to give).
    pub fn skipped(stage: &PlannedStage, reason: &str) -> StageReport {
        StageReport {
            name: stage.label.clone(),
            kind: stage.kind.kind().to_owned(),
            key: stage.key.hex(),
            result: StageResult::Skipped,
            seconds: 0.0,
            output: None,
            results: None,
            outcome: Default::default(),
            error: (!reason.is_empty()).then(|| reason.to_owned()),
            job: None,
        }
    }
}
