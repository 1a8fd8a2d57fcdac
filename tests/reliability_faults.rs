//! Fault injection (issue 14): SIGKILLs of `hwrun` and of its `hwrun-torch` worker at random
//! moments of a tiny training pipeline. After every kill no worker survives (it dies with its
//! parent), `fsck` is clean, and at the end a rerun succeeds and redoes exactly what was killed.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::project::{ran, stderr, Project};
use serde_json::Value;

/// Data, a training long enough to be killed in, and an evaluation.
const TINY: &str = r#"
name = "tiny"
seed = 5

[stages.data]
kind = "synthetic"
domain = "mnistm"
n_train = 256
n_val = 64

[stages.train]
kind = "train_classifier"
inputs = { train = "data.train", val = "data.val" }
epochs = 3
batch_size = 32

[stages.eval]
kind = "evaluate"
inputs = { model = "train", data = "data.val" }
"#;

/// Live `hwrun-torch` processes whose environment names `cache` (the workers of this test).
fn workers_using(cache: &Path) -> Vec<i32> {
    let needle = format!("HWRUN_CACHE={}", cache.display());
    proc_pids()
        .into_iter()
        .filter(|&pid| is_worker(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Workers whose parent is `parent`.
fn workers_of(parent: u32) -> Vec<i32> {
    proc_pids()
        .into_iter()
        .filter(|&pid| is_worker(pid) && parent_of(pid) == Some(parent as i32))
        .collect()
}

fn proc_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn is_worker(pid: i32) -> bool {
    // A zombie has no exe link any more: it computes nothing.
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.to_string_lossy().ends_with("hwrun-torch"))
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn kill(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits until `condition` holds, up to `limit`; returns how long it took, if it did.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn start(project: &Project, recipe: &str) -> Child {
    project
        .command(&["--quiet", recipe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A tiny deterministic generator, so a failing sequence of kills can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn fsck_clean(project: &Project) {
    let (code, json) = project.run_json(&["fsck"]);
    assert_eq!(code, Some(0), "fsck: {json}");
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(0), "{json}");
}

#[test]
fn a_killed_hwrun_takes_its_worker_along() {
    let project = Project::new();
    let recipe = project.write("tiny.toml", TINY);
    let recipe = recipe.to_str().unwrap();
    let mut child = start(&project, recipe);
    let hwrun = child.id();
    let appeared = wait_until(Duration::from_secs(60), || !workers_of(hwrun).is_empty());
    assert!(appeared.is_some(), "no worker started");
    std::thread::sleep(Duration::from_millis(300));
    let workers = workers_of(hwrun);
    kill(hwrun as i32);
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(5), || {
        workers.iter().all(|&pid| !is_worker(pid))
    });
    let gone = gone.unwrap_or_else(|| panic!("workers {workers:?} outlived the killed hwrun"));
    eprintln!("worker gone {gone:?} after its hwrun was killed");
    assert!(gone < Duration::from_secs(2), "{gone:?}");
    assert!(workers_using(&project.cache()).is_empty());
}

/// The pids written into `file`, one per line, once there are `count` of them.
fn pids_in(file: &Path, count: usize) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(file).ok()?;
    let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (pids.len() >= count).then_some(pids)
}

fn alive(pid: i32) -> bool {
    // A zombie has released everything; only a process that still runs counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Runs a recipe of one `command` stage whose `shell` writes `count` pids into `{pids}`, and
/// waits until it has; returns hwrun's process and those pids.
fn start_command_stage(project: &Project, shell: &str, count: usize) -> (Child, Vec<i32>) {
    let pids = project.path().join("pids");
    let shell = shell.replace("{pids}", &pids.display().to_string());
    let recipe = project.write(
        "cmd.toml",
        &format!("name = \"cmd\"\n[stages.train]\nkind = \"command\"\nshell = \"{shell}\"\n"),
    );
    let child = start(project, recipe.to_str().unwrap());
    let started = wait_until(Duration::from_secs(30), || pids_in(&pids, count).is_some());
    assert!(started.is_some(), "the command stage never started");
    (child, pids_in(&pids, count).unwrap())
}

#[test]
fn a_killed_hwrun_takes_its_command_program_along() {
    let project = Project::new();
    // A student's training script, as the shell hands over to it.
    let (mut child, pids) = start_command_stage(&project, "echo $$ >> {pids}; exec sleep 60", 1);
    let program = pids[0];
    std::thread::sleep(Duration::from_millis(100));
    kill(child.id() as i32);
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(5), || !alive(program));
    if gone.is_none() {
        kill(program);
    }
    assert!(
        gone.is_some(),
        "the command's program outlived the killed hwrun"
    );
}

#[test]
fn a_cancelled_command_stage_is_killed_with_everything_it_started() {
    let project = Project::new();
    let (mut child, programs) = start_command_stage(
        &project,
        "sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait",
        2,
    );
    // Ctrl-C: hwrun cancels the stage and kills the command's process group.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let gone = wait_until(Duration::from_secs(5), || {
        programs.iter().all(|&pid| !alive(pid))
    });
    assert!(gone.is_some(), "{programs:?} outlived the cancelled stage");
}

#[test]
fn a_worker_killed_mid_stage_fails_its_stage_and_leaves_no_entry() {
    let project = Project::new();
    // Long enough that the kill lands inside the training.
    let recipe = project.write("long.toml", &TINY.replace("epochs = 3", "epochs = 200"));
    let recipe = recipe.to_str().unwrap();
    let child = project
        .command(&["--quiet", recipe])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let hwrun = child.id();
    // The first epoch's checkpoint shows the training worker is at work.
    let training_worker = || {
        workers_of(hwrun).into_iter().find(|_| {
            project
                .cache()
                .join("checkpoints")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        })
    };
    let appeared = wait_until(Duration::from_secs(120), || training_worker().is_some());
    assert!(appeared.is_some(), "the training never started");
    kill(training_worker().unwrap());
    let output = child.wait_with_output().unwrap();
    // Under --quiet the run's table and its error are the result, on stdout.
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "hwrun succeeded although its training worker was killed"
    );
    assert!(printed.contains("the worker process died"), "{printed}");
    fsck_clean(&project);
    let plan = project.run_json_ok(&["plan", recipe]);
    let train = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "train")
        .unwrap();
    assert_eq!(train["status"], "run", "{plan}");
}

#[test]
fn random_kills_of_hwrun_and_the_worker_leave_a_consistent_cache() {
    let project = Project::new();
    let recipe = project.write("tiny.toml", TINY);
    let recipe = recipe.to_str().unwrap();
    let mut rng = Lcg(14);
    let started = Instant::now();
    let mut kills = 0;
    let mut slowest_exit = Duration::ZERO;
    for round in 0..20 {
        let mut child = start(&project, recipe);
        let hwrun = child.id();
        let worker = wait_until(Duration::from_secs(60), || {
            !workers_of(hwrun).is_empty() || child.try_wait().unwrap().is_some()
        });
        assert!(worker.is_some(), "round {round}: no worker started");
        // Right as the worker starts (the race the pid check closes), or some way into its work.
        let delay = if round % 5 == 0 {
            rng.below(20)
        } else {
            rng.below(600)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let workers = workers_of(hwrun);
        let kill_worker = round % 2 == 1 && !workers.is_empty();
        if kill_worker {
            kill(workers[0]);
        } else {
            kill(hwrun as i32);
        }
        kills += 1;
        let status = child.wait().unwrap();
        if kill_worker && status.success() {
            // The kill landed after the worker had reported its stage (the shorter stages of
            // late rounds end within the delay): then everything must really be done.
            let plan = project.run_json_ok(&["plan", recipe]);
            let pending: Vec<&Value> = plan
                .as_array()
                .unwrap()
                .iter()
                .filter(|row| row["status"] == "run")
                .collect();
            assert!(
                pending.is_empty(),
                "round {round}: hwrun succeeded with stages still to run: {pending:?}"
            );
        }
        let gone = wait_until(Duration::from_secs(5), || {
            workers_using(&project.cache()).is_empty()
        });
        let gone = gone.unwrap_or_else(|| {
            panic!(
                "round {round}: workers survived: {:?}",
                workers_using(&project.cache())
            )
        });
        slowest_exit = slowest_exit.max(gone);
        fsck_clean(&project);
    }
    eprintln!(
        "{kills} kills in {:?}; slowest worker exit after a kill: {slowest_exit:?}",
        started.elapsed()
    );
    assert!(kills >= 20);
    // The rerun does exactly what the plan says is missing, and finishes.
    let plan = project.run_json_ok(&["plan", recipe]);
    let missing: BTreeSet<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["status"] == "run")
        .map(|row| row["name"].as_str().unwrap().to_owned())
        .collect();
    let output = project.hwrun(&["--json", recipe]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the rerun failed:\n{}",
        stderr(&output)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        ran(&summary).into_iter().collect::<BTreeSet<_>>(),
        missing,
        "{summary}"
    );
    fsck_clean(&project);
    assert!(workers_using(&project.cache()).is_empty());
}
