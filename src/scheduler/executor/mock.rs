//! A mock executor for tests: runs whole DAGs without libtorch or any stage code. It records
//! the order in which stages ran and the inputs each saw, and fills each stage's outputs with a
//! placeholder file that says it is one (`device` in the manifest is `mock` too), so nothing it
//! produced can pass for a real result. Use it on a throw-away cache only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context;

use super::{Compute, Work};
use crate::scheduler::job::StageJob;
use crate::stage::{InputArtifact, StageOutcome};

/// The file each placeholder output holds.
pub const PLACEHOLDER_FILE: &str = "MOCK_PLACEHOLDER.txt";

/// One stage the mock ran.
#[derive(Debug, Clone, PartialEq)]
pub struct MockRun {
    pub stage: String,
    pub kind: String,
    /// Input name -> the producing stage's label, and the output it reads (if a named one).
    pub inputs: Vec<(String, String, Option<String>)>,
}

/// Records what it is asked to run; optionally fails chosen stages.
#[derive(Debug, Default)]
pub struct MockExecutor {
    runs: Mutex<Vec<MockRun>>,
    /// Labels of stages that fail instead of producing placeholders.
    failing: Vec<String>,
}

impl MockExecutor {
    pub fn new() -> MockExecutor {
        MockExecutor::default()
    }

    /// A mock where the stages labelled `labels` fail.
    pub fn failing(labels: &[&str]) -> MockExecutor {
        MockExecutor {
            failing: labels.iter().map(|s| s.to_string()).collect(),
            ..MockExecutor::default()
        }
    }

    /// The stages run so far, in order.
    pub fn runs(&self) -> Vec<MockRun> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The runs as text, one stage a line: `stage (kind) <- input=producer.output, ...`.
    pub fn transcript(&self) -> String {
        self.runs()
            .iter()
            .map(|run| {
                let inputs: Vec<String> = run
                    .inputs
                    .iter()
                    .map(|(name, stage, output)| match output {
                        Some(output) => format!("{name}={stage}.{output}"),
                        None => format!("{name}={stage}"),
                    })
                    .collect();
                if inputs.is_empty() {
                    format!("{} ({})\n", run.stage, run.kind)
                } else {
                    format!("{} ({}) <- {}\n", run.stage, run.kind, inputs.join(", "))
                }
            })
            .collect()
    }
}

impl Compute for MockExecutor {
    fn compute(
        &self,
        job: &StageJob,
        inputs: BTreeMap<String, InputArtifact>,
        work: &Work<'_>,
    ) -> anyhow::Result<(StageOutcome, String)> {
        let seen = job
            .inputs
            .iter()
            .map(|i| {
                let artifact = inputs
                    .get(&i.name)
                    .with_context(|| format!("input `{}` was not resolved", i.name))?;
                anyhow::ensure!(
                    artifact.dir.exists(),
                    "input `{}` points at missing `{}`",
                    i.name,
                    artifact.dir
                );
                Ok((i.name.clone(), artifact.stage.clone(), i.output.clone()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(MockRun {
                stage: job.label.clone(),
                kind: job.kind.clone(),
                inputs: seen,
            });
        anyhow::ensure!(
            !self.failing.contains(&job.label),
            "mock failure of `{}`",
            job.label
        );
        let text = format!(
            "placeholder written by hwrun's mock executor for stage `{}` (kind `{}`); nothing was computed\n",
            job.label, job.kind
        );
        let dirs = std::iter::once(work.out_dir.clone())
            .chain(job.outputs.iter().map(|o| work.out_dir.join(o)));
        for dir in dirs {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{dir}`"))?;
            std::fs::write(dir.join(PLACEHOLDER_FILE), &text)
                .with_context(|| format!("cannot write into `{dir}`"))?;
        }
        let outcome = StageOutcome {
            summary: vec![format!("{}: placeholder (mock executor)", job.label)],
            ..Default::default()
        };
        Ok((outcome, "mock".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use camino::Utf8Path;

    use super::*;
    use crate::cache::file_hash::StatCache;
    use crate::cache::Cache;
    use crate::graph::{assess, Plan};
    use crate::output::{OutputMode, Printer};
    use crate::scheduler::{Executor, RunEnv, RunOptions, StageResult};
    use crate::stage::CancelToken;
    use crate::testing::load_recipe;
    use crate::worker::DeviceRequest;

    const QUICKSTART: &str = include_str!("../../../recipes/quickstart.toml");

    fn run(
        mock: &MockExecutor,
        text: &str,
        cache: &Cache,
        keep_going: bool,
    ) -> crate::scheduler::RunSummary {
        let recipe = load_recipe("test.toml", text, &[])
            .map_err(|e| e.error)
            .unwrap();
        let plan = Plan::build(recipe, &mut StatCache::default()).unwrap();
        let statuses = assess(&plan, cache);
        // One at a time, so the order is deterministic.
        let options = RunOptions {
            jobs: 1,
            keep_going,
            device: DeviceRequest::Cpu,
        };
        let printer = Printer::new(OutputMode::Quiet);
        let cancel = CancelToken::default();
        let env = RunEnv {
            plan: &plan,
            statuses: &statuses,
            cache,
            options: &options,
            printer: &printer,
            cancel: &cancel,
        };
        mock.execute(&env).unwrap()
    }

    fn cache() -> (tempfile::TempDir, Cache) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
        (tmp, cache)
    }

    /// The quickstart's whole DAG, in the order the pool runs it and with what each stage saw.
    /// After a deliberate change to the recipe or the scheduler, rewrite the snapshot with
    /// `HWRUN_UPDATE_SNAPSHOTS=1 cargo test --lib mock`.
    #[test]
    fn quickstart_dag_snapshot() {
        let (_tmp, cache) = cache();
        let mock = MockExecutor::new();
        let summary = run(&mock, QUICKSTART, &cache, false);
        assert!(summary.succeeded(), "{summary:?}");
        assert_eq!(summary.count(StageResult::Ran), 36);
        let snapshot_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/scheduler/executor/snapshots/quickstart.txt"
        );
        let transcript = mock.transcript();
        if std::env::var_os("HWRUN_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(snapshot_path, &transcript).unwrap();
        }
        let expected = std::fs::read_to_string(snapshot_path).unwrap();
        assert_eq!(
            transcript, expected,
            "the quickstart DAG changed; see the test's doc to update the snapshot"
        );
        // Every output is a declared placeholder, and a second run finds everything cached.
        let report = summary.stages.iter().find(|s| s.name == "report").unwrap();
        let placeholder =
            std::fs::read_to_string(report.output.as_ref().unwrap().join(PLACEHOLDER_FILE))
                .unwrap();
        assert!(
            placeholder.contains("nothing was computed"),
            "{placeholder}"
        );
        assert_eq!(
            cache
                .lookup(&crate::cache::CacheKey::from_hex(&report.key).unwrap())
                .unwrap()
                .device,
            "mock"
        );
        let again = MockExecutor::new();
        let second = run(&again, QUICKSTART, &cache, false);
        assert_eq!(second.count(StageResult::Cached), 36);
        assert!(again.runs().is_empty());
    }

    #[test]
    fn a_failure_skips_exactly_its_dependents() {
        let (_tmp, cache) = cache();
        let mock = MockExecutor::failing(&["dann_svhn"]);
        let summary = run(&mock, QUICKSTART, &cache, true);
        let result = |name: &str| {
            summary
                .stages
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .result
        };
        assert_eq!(result("dann_svhn"), StageResult::Failed);
        for dependent in ["dann_on_svhn", "features_svhn", "tsne_svhn", "report"] {
            assert_eq!(result(dependent), StageResult::Skipped, "{dependent}");
        }
        for independent in ["dann_usps", "dann_on_usps", "tsne_usps", "target_on_svhn"] {
            assert_eq!(result(independent), StageResult::Ran, "{independent}");
        }
        assert!(!mock.runs().iter().any(|r| r.stage == "report"));
    }
}
