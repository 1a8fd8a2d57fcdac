//! A long training killed mid-way resumes from its last checkpoint: `hwrun` (and its worker) are
//! killed with SIGKILL after epoch 2 of 4 of a training stage (`train_dann`, and `train_ddpm` with
//! a moving average of its weights, which the state must carry too), the rerun logs
//! `resumed at epoch 2`, and its final weights equal an uninterrupted run's byte for byte.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::project::{stage, Project};

const DANN_RECIPE: &str = r#"
name = "resume"
seed = 3

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 1200
n_val = 100

[stages.usps]
kind = "synthetic"
domain = "usps"
n_train = 1200
n_val = 100

[stages.dann]
kind = "train_dann"
inputs = { source = "mnistm.train", target = "usps.train" }
epochs = 4
batch_size = 32
optimizer = { kind = "adam", lr = 1e-3 }
"#;

const DDPM_RECIPE: &str = r#"
name = "resume_ddpm"
seed = 5

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 600
n_val = 10

[stages.ddpm]
kind = "train_ddpm"
inputs = { train = "mnistm.train" }
model = { n_feat = 16 }
n_t = 20
ema_decay = 0.9
epochs = 4
batch_size = 32
optimizer = { kind = "adam", lr = 1e-3, schedule = "linear" }
"#;

fn weights(summary: &serde_json::Value, name: &str) -> (PathBuf, Vec<u8>) {
    let output = PathBuf::from(stage(summary, name)["output"].as_str().unwrap());
    let bytes = std::fs::read(output.join("model.safetensors")).unwrap();
    (output, bytes)
}

/// The epoch of the newest checkpoint of training phase `phase` in `cache`, if any.
fn checkpointed_epoch(cache: &Path, phase: &str) -> Option<u64> {
    for entry in std::fs::read_dir(cache.join("checkpoints")).ok()?.flatten() {
        let progress = entry.path().join(phase).join("progress.json");
        if let Ok(bytes) = std::fs::read(&progress) {
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                return json["epoch"].as_u64();
            }
        }
    }
    None
}

#[test]
fn a_killed_training_resumes_and_ends_with_the_same_weights() {
    kill_after_epoch_2_and_resume(DANN_RECIPE, "dann", "dann");
}

#[test]
fn a_killed_ddpm_training_resumes_and_ends_with_the_same_weights() {
    kill_after_epoch_2_and_resume(DDPM_RECIPE, "ddpm", "ddpm");
}

/// Runs `recipe` once uninterrupted, once killed after epoch 2 of 4 of stage `name` (training
/// phase `phase`) and rerun, and compares the final weights.
fn kill_after_epoch_2_and_resume(recipe_text: &str, name: &str, phase: &str) {
    let uninterrupted = Project::new();
    let recipe = uninterrupted.write("resume.toml", recipe_text);
    let (_, expected) = weights(
        &uninterrupted.run_json_ok(&["--device", "cpu", recipe.to_str().unwrap()]),
        name,
    );

    let project = Project::new();
    let recipe = project.write("resume.toml", recipe_text);
    let mut child = project
        .command(&["--quiet", "--device", "cpu", recipe.to_str().unwrap()])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let epoch = loop {
        if let Some(epoch) = checkpointed_epoch(&project.cache(), phase) {
            if epoch >= 2 {
                break epoch;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of epoch 2 appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "hwrun ended before epoch 2 was checkpointed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // The whole process group: hwrun and its worker.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success(), "kill failed");
    child.wait().unwrap();
    assert!(
        epoch < 4,
        "the run finished (epoch {epoch}) before it could be killed; make the recipe slower"
    );

    let summary = project.run_json_ok(&["--device", "cpu", recipe.to_str().unwrap()]);
    let (output, resumed) = weights(&summary, name);
    let log = std::fs::read_to_string(output.parent().unwrap().join("log.txt")).unwrap();
    assert!(log.contains(&format!("resumed at epoch {epoch}")), "{log}");
    assert!(
        resumed == expected,
        "resumed weights differ from the uninterrupted run's"
    );
    assert!(
        checkpointed_epoch(&project.cache(), phase).is_none(),
        "the checkpoint is removed once the entry is committed"
    );
}
