//! What a run did, stage by stage.

use camino::Utf8PathBuf;
use serde::Serialize;

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
        !self.interrupted && self.count(StageResult::Failed) == 0 && self.count(StageResult::Skipped) == 0
    }

    /// Files a person should open (reports), under `results/` when linked there.
    pub fn primary_files(&self) -> Vec<Utf8PathBuf> {
        self.stages
            .iter()
            .filter_map(|s| Some(s.results.as_ref().or(s.output.as_ref())?.join(s.outcome.primary.as_ref()?)))
            .collect()
    }
}
