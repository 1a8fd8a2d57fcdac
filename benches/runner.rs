//! Runner overhead: the wall time of a no-op run of a cached 7-stage recipe (goal < 50 ms) and
//! of planning a 10,000-variant sweep (goal < 1 s), both as the user sees them: the `hwrun`
//! process from start to exit. Prints the median of several runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The binary under test: the shipped one (`make bench` sets `HWRUN_BIN` to the `dist` build),
/// else the one cargo built for this benchmark.
fn binary() -> String {
    std::env::var("HWRUN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hwrun").to_owned())
}

fn hwrun(dir: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let output = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("HWRUN_CACHE", dir.join("cache"))
        .output()
        .expect("hwrun runs");
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "hwrun {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Seven stages: a chain with a fan-out, ending in a report.
const SEVEN_STAGES: &str = r#"
name = "bench-noop"
[stages.a]
kind = "command"
shell = "echo a > {out}/a"
[stages.b]
kind = "command"
inputs = { a = "a" }
shell = "cat {a}/a > {out}/b"
[stages.c]
kind = "command"
inputs = { a = "a" }
shell = "cat {a}/a > {out}/c"
[stages.d]
kind = "command"
inputs = { b = "b", c = "c" }
shell = "echo d > {out}/d"
[stages.e]
kind = "command"
inputs = { d = "d" }
shell = "echo '{{\"score\": 1}}' > {out}/metrics.json"
[stages.f]
kind = "command"
inputs = { d = "d" }
shell = "echo f > {out}/f"
[stages.report]
kind = "report"
inputs = { e = "e", f = "f" }
"#;

fn sweep_recipe(per_axis: usize) -> String {
    let values = |scale: f64| {
        (0..per_axis)
            .map(|i| format!("\"{}\"", (i + 1) as f64 * scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
name = "bench-sweep"
[stages.data]
kind = "command"
shell = "echo data > {{out}}/d"
[stages.train]
kind = "command"
inputs = {{ data = "data" }}
args = ["train"]
env = {{ LR = "0.1", MOMENTUM = "0.9" }}
[stages.evaluate]
kind = "command"
inputs = {{ model = "train" }}
args = ["evaluate"]
[sweep]
"train.env.LR" = [{}]
"train.env.MOMENTUM" = [{}]
"#,
        values(1e-4),
        values(1e-2)
    )
}

fn main() {
    println!("binary: {}", binary());
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("noop.toml"), SEVEN_STAGES).unwrap();
    hwrun(dir.path(), &["--quiet", "noop.toml"]);
    let noop = median(
        (0..21)
            .map(|_| hwrun(dir.path(), &["--quiet", "noop.toml"]))
            .collect(),
    );
    println!(
        "no-op run of a cached 7-stage recipe: {:.1} ms (median of 21; goal < 50 ms)",
        noop.as_secs_f64() * 1e3
    );

    std::fs::write(dir.path().join("sweep.toml"), sweep_recipe(100)).unwrap();
    let plan = median(
        (0..5)
            .map(|_| hwrun(dir.path(), &["plan", "--quiet", "sweep.toml"]))
            .collect(),
    );
    println!("plan of a 10,000-variant sweep (20,001 stage instances): {:.0} ms (median of 5; goal < 1000 ms)", plan.as_secs_f64() * 1e3);
}
