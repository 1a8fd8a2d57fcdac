//! The CI sweep's shell steps (`scripts/ci-sweep.sh`, what `.github/workflows/sweep.yml` runs)
//! run locally twice on one cache, as two CI runs with the cache restored would: the first runs
//! the sweep and writes the comparison to the job summary, the second runs no stage.
//! A tiny learning-rate sweep stands in for `recipes/sweep_lr.toml` to stay fast.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::project::Project;

const TINY_SWEEP: &str = r#"
name = "tiny_lr"
seed = 0
[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 256
n_val = 128
[stages.train]
kind = "train_classifier"
inputs = { train = "digits.train", val = "digits.val" }
model = { arch = "mnist" }
epochs = 1
batch_size = 64
optimizer = { kind = "adam", lr = 1e-3 }
[stages.eval]
kind = "evaluate"
inputs = { model = "train", data = "digits.val" }
[sweep]
"train.optimizer.lr" = [1e-3, 1e-2]
"#;

fn ci_step(project: &Project, summary: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ci-sweep.sh");
    let output = Command::new(script)
        .arg("tiny_lr.toml")
        .current_dir(project.path())
        .env("HWRUN", env!("CARGO_BIN_EXE_hwrun"))
        .env("HWRUN_CACHE", project.cache())
        .env("GITHUB_STEP_SUMMARY", summary)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ci-sweep.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_ci_sweep_runs_once_then_finds_everything_cached() {
    let project = Project::new();
    project.write("tiny_lr.toml", TINY_SWEEP);
    let summary = project.path().join("step-summary.md");

    let first = ci_step(&project, &summary);
    assert!(
        first.contains("5 ran, 0 cached"),
        "data, two trainings, two evaluations:\n{first}"
    );
    assert!(first.contains("removed 0 entries"), "{first}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("## `tiny_lr.toml`"), "{markdown}");
    let header = markdown
        .lines()
        .find(|l| l.starts_with("| train.optimizer.lr"))
        .unwrap_or_else(|| panic!("{markdown}"));
    // Near chance, two learning rates can tie on accuracy; the training loss always differs.
    assert!(
        header.contains("train.train_loss"),
        "the metrics that differ are shown: {header}"
    );
    assert_eq!(
        markdown.lines().filter(|l| l.starts_with("| 0.0")).count(),
        2,
        "one row per learning rate:\n{markdown}"
    );

    let second = ci_step(&project, &summary);
    assert!(second.contains("0 ran, 5 cached"), "{second}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(
        markdown.matches("## `tiny_lr.toml`").count(),
        2,
        "each run appends its table"
    );
}
