//! End-to-end runs of the `hwrun` binary on small recipes of `command` stages: caching,
//! overrides, sweeps, errors that point at the recipe, crashes and concurrent processes.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::project::{ran, stage, stderr, Project};
use serde_json::Value;

/// prepare -> train -> evaluate -> report, plus an independent branch.
const PIPELINE: &str = r#"
name = "pipeline"
seed = 1

[defaults.command]
env = { RUNS = "{runs}" }

[stages.prepare]
kind = "command"
shell = "echo prepare >> $RUNS; echo data > {out}/data.txt"

[stages.train]
kind = "command"
inputs = { data = "prepare" }
shell = "echo train >> $RUNS; cat {data}/data.txt > {out}/model.txt; echo $LR >> {out}/model.txt"
env = { RUNS = "{runs}", LR = "0.001" }

[stages.evaluate]
kind = "command"
inputs = { model = "train" }
shell = "echo evaluate >> $RUNS; echo '{{\"accuracy\": 0.5}}' > {out}/metrics.json"

[stages.other]
kind = "command"
shell = "echo other >> $RUNS; touch {out}/x"

[stages.report]
kind = "report"
inputs = { evaluate = "evaluate", other = "other" }
"#;

#[test]
fn second_run_runs_nothing() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    let recipe = recipe.as_str();
    let first = project.run_json_ok(&[recipe]);
    assert_eq!(
        ran(&first),
        ["evaluate", "other", "prepare", "report", "train"]
    );
    let second = project.run_json_ok(&[recipe]);
    assert!(ran(&second).is_empty(), "{second}");
    assert_eq!(project.runs().len(), 4, "each command ran exactly once");
}

#[test]
fn set_reruns_the_stage_and_its_dependents_and_switching_back_is_cached() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    let recipe = recipe.as_str();
    project.run_json_ok(&[recipe]);
    let changed = project.run_json_ok(&[recipe, "--set", "train.env.LR=0.01"]);
    assert_eq!(ran(&changed), ["evaluate", "report", "train"]);
    let back = project.run_json_ok(&[recipe]);
    assert!(
        ran(&back).is_empty(),
        "switching back must be instant: {back}"
    );
    let again = project.run_json_ok(&[recipe, "--set", "train.env.LR=0.01"]);
    assert!(ran(&again).is_empty());
}

#[test]
fn plan_explains_why_a_stage_reruns() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    let recipe = recipe.as_str();
    project.run_json_ok(&[recipe]);
    let output = project.hwrun(&["plan", "--json", recipe, "--set", "train.env.LR=0.01"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let row = |name: &str| stage(&plan, name).clone();
    assert_eq!(row("prepare")["status"], "cached");
    assert_eq!(row("train")["status"], "run");
    assert_eq!(
        row("train")["reasons"][0],
        "parameter `train.env.LR` changed \"0.001\" -> \"0.01\""
    );
    assert_eq!(row("evaluate")["reasons"][0], "input `train` will rerun");
    for field in ["name", "kind", "key", "status", "reasons"] {
        assert!(
            row("report").get(field).is_some(),
            "plan rows have `{field}`"
        );
    }
}

#[test]
fn cycle_is_reported_with_every_stage_and_the_line() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "cycle.toml",
        "name = \"c\"\n[stages.a]\nkind = \"command\"\nargs = [\"true\"]\ninputs = { x = \"c\" }\n\
         [stages.b]\nkind = \"command\"\nargs = [\"true\"]\ninputs = { x = \"a\" }\n\
         [stages.c]\nkind = \"command\"\nargs = [\"true\"]\ninputs = { x = \"b\" }\n",
    );
    let output = project.hwrun(&[recipe.as_str()]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("circular dependency `a -> c -> b -> a`"),
        "{text}"
    );
    assert!(text.contains("cycle.toml:5:"), "{text}");
}

#[test]
fn unknown_key_points_at_the_line_and_suggests() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "typo.toml",
        "name = \"t\"\n[stages.a]\nkind = \"command\"\nargz = [\"true\"]\n",
    );
    let output = project.hwrun(&[recipe.as_str()]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("unknown field `argz`"), "{text}");
    assert!(text.contains("typo.toml:4:1"), "{text}");
    assert!(text.contains("4 | argz"), "{text}");
}

#[test]
fn missing_input_points_at_the_reference() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("missing.toml",
        "name = \"m\"\n[stages.prepare]\nkind = \"command\"\nargs = [\"true\"]\n[stages.b]\nkind = \"command\"\nargs = [\"true\"]\ninputs = { x = \"prepair\" }\n",
    );
    let output = project.hwrun(&[recipe.as_str()]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("refers to unknown stage `prepair`"), "{text}");
    assert!(text.contains("missing.toml:8:"), "{text}");
    assert!(text.contains("did you mean `prepare`?"), "{text}");
}

#[test]
fn unknown_stage_kind_suggests_the_closest() {
    let project = Project::new();
    let recipe =
        project.write_logged_recipe("k.toml", "name = \"k\"\n[stages.a]\nkind = \"comand\"\n");
    let text = stderr(&project.hwrun(&[recipe.as_str()]));
    assert!(
        text.contains("unknown kind `comand`") && text.contains("did you mean `command`?"),
        "{text}"
    );
}

/// Waits until `path` exists or the time is up.
fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn kill_9_in_the_middle_of_a_stage_leaves_no_valid_entry() {
    let project = Project::new();
    let started = project.path().join("started");
    let recipe = project.write_logged_recipe("slow.toml",
        &format!(
            "name = \"slow\"\n[stages.slow]\nkind = \"command\"\nshell = \"echo partial > {{out}}/result.txt; touch {}; sleep 10; echo done >> {{out}}/result.txt\"\n",
            started.display()
        ),
    );
    let recipe = recipe.as_str();
    let mut child = project
        .command(&["--quiet", recipe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(&started, Duration::from_secs(20)),
        "the stage never started"
    );
    // SIGKILL the whole process group would also kill `sleep`; killing hwrun alone is the harder case.
    child.kill().unwrap();
    child.wait().unwrap();
    let entries = std::fs::read_dir(project.path().join("cache/entries"))
        .unwrap()
        .count();
    assert_eq!(entries, 0, "a killed stage must not leave an entry");
    let plan = project.hwrun(&["plan", "--json", recipe]);
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan[0]["status"], "run");
    let fsck = project.hwrun(&["fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn two_processes_on_one_cache_run_each_stage_once() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("shared.toml",
        "name = \"shared\"\n[defaults.command]\nenv = { RUNS = \"{runs}\" }\n\
         [stages.a]\nkind = \"command\"\nshell = \"echo a >> $RUNS; sleep 1; touch {out}/a\"\n\
         [stages.b]\nkind = \"command\"\ninputs = { a = \"a\" }\nshell = \"echo b >> $RUNS; sleep 1; touch {out}/b\"\n\
         [stages.c]\nkind = \"command\"\nshell = \"echo c >> $RUNS; sleep 1; touch {out}/c\"\n",
    );
    let recipe = recipe.as_str();
    let children: Vec<_> = (0..2)
        .map(|_| {
            project
                .command(&["--quiet", recipe])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let mut runs = project.runs();
    runs.sort();
    assert_eq!(
        runs,
        ["a", "b", "c"],
        "every stage ran exactly once across both processes"
    );
}

#[test]
fn sweep_shares_upstream_stages_and_compare_shows_every_variant() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "sweep.toml",
        r#"
name = "sweep"
[defaults.command]
env = { RUNS = "{runs}" }
[stages.prepare]
kind = "command"
shell = "echo prepare >> $RUNS; touch {out}/data"
[stages.train]
kind = "command"
inputs = { data = "prepare" }
shell = "echo train >> $RUNS; echo \"{{\\\"lr\\\": $LR}}\" > {out}/metrics.json"
env = { RUNS = "{runs}", LR = "0.1" }
[sweep]
"train.env.LR" = ["0.001", "0.01"]
"#,
    );
    let recipe = recipe.as_str();
    let summary = project.run_json_ok(&[recipe]);
    assert_eq!(ran(&summary).len(), 3, "one prepare, two trains: {summary}");
    let mut runs = project.runs();
    runs.sort();
    assert_eq!(runs, ["prepare", "train", "train"]);
    let output = project.hwrun(&["compare", "--md", recipe]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("| train.env.LR | train.lr |"), "{table}");
    assert!(
        table.contains("| 0.001 | 0.0010 |") && table.contains("| 0.01 | 0.0100 |"),
        "{table}"
    );
    let csv = project.hwrun(&["compare", "--csv", recipe]);
    assert!(String::from_utf8_lossy(&csv.stdout).contains("train.env.LR,train.lr"));
}

#[test]
fn gc_keeps_what_a_recipe_reaches() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    let recipe = recipe.as_str();
    project.run_json_ok(&[recipe]);
    project.run_json_ok(&[recipe, "--set", "train.env.LR=0.5"]);
    let output = project.hwrun(&["gc", recipe]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("removed 3 entries"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(ran(&project.run_json_ok(&[recipe])).is_empty());
}

#[test]
fn failing_stage_is_not_cached_and_keep_going_runs_the_rest() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "fail.toml",
        "name = \"f\"\n[stages.bad]\nkind = \"command\"\nshell = \"echo nope >&2; exit 4\"\n\
         [stages.after]\nkind = \"command\"\ninputs = { x = \"bad\" }\nargs = [\"true\"]\n\
         [stages.independent]\nkind = \"command\"\nshell = \"touch {out}/ok\"\n",
    );
    let recipe = recipe.as_str();
    let (code, summary) = project.run_json(&["--keep-going", recipe]);
    assert_eq!(code, Some(1));
    assert_eq!(stage(&summary, "bad")["result"], "failed");
    assert_eq!(stage(&summary, "after")["result"], "skipped");
    assert_eq!(stage(&summary, "independent")["result"], "ran");
    let error = stage(&summary, "bad")["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("exit code 4") && error.contains("nope"),
        "{error}"
    );
}

#[test]
fn version_names_libtorch_and_cuda() {
    let output = Project::new().hwrun(&["--version"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("hwrun ") && text.contains("libtorch 2.13.0") && text.contains("CUDA:"),
        "{text}"
    );
}
