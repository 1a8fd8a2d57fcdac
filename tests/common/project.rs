//! A scratch project for end-to-end tests: a temp directory with recipes and a cache, and the
//! `hwrun` binary run in it, like a user at a terminal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// Writes a file (a recipe, a script) into the project and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a recipe whose `{runs}` placeholders become the path of the project's run log, a
    /// file each stage appends a line to, so a test can count which stages really ran.
    pub fn write_logged_recipe(&self, name: &str, text: &str) -> String {
        let log = self.runs_log();
        let text = text.replace("{runs}", log.to_str().expect("temp paths are UTF-8"));
        let path = self.write(name, &text);
        path.to_str().expect("temp paths are UTF-8").to_owned()
    }

    fn runs_log(&self) -> PathBuf {
        self.path().join("runs.log")
    }

    /// The run log's lines, one per stage execution, in the order they ran.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.runs_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `hwrun <args>` in the project directory with the project's cache.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hwrun"));
        command
            .args(args)
            .current_dir(self.path())
            .env("HWRUN_CACHE", self.cache())
            .env_remove("RUST_LOG");
        command
    }

    pub fn hwrun(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("hwrun runs")
    }

    /// `hwrun --json <args>`: the exit code and the JSON on stdout, whatever the outcome.
    pub fn run_json(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.hwrun(&all);
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "hwrun {args:?} printed no JSON ({err}):\n{}",
                stderr(&output)
            )
        });
        (output.status.code(), json)
    }

    /// `hwrun --json <args>`, which must succeed.
    pub fn run_json_ok(&self, args: &[&str]) -> Value {
        let (code, json) = self.run_json(args);
        assert_eq!(code, Some(0), "hwrun {args:?} failed: {json}");
        json
    }
}

/// Stage `name`'s row in a run summary or a plan.
pub fn stage<'a>(json: &'a Value, name: &str) -> &'a Value {
    let rows = json.get("stages").unwrap_or(json);
    rows.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage `{name}` in {json}"))
}

/// Names of the stages a summary says ran, sorted.
pub fn ran(summary: &Value) -> Vec<String> {
    let mut names: Vec<String> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["result"] == "ran")
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
