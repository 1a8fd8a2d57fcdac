//! Helpers shared by the integration tests.

pub mod http_server;
pub mod project;
pub mod stage;

use std::path::PathBuf;
use std::process::Command;

/// The Python interpreter of the torch venv (`make test` exports `VIRTUAL_ENV`), which carries
/// the reference implementations: torch, numpy, scipy, scikit-learn, safetensors.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV").expect(
        "VIRTUAL_ENV is not set: run the tests through `make test`, which creates the venv",
    );
    PathBuf::from(venv).join("bin").join("python")
}

/// Runs a Python snippet with the venv interpreter and returns its stdout; panics with stderr on
/// failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("cannot start the venv's python");
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python printed non-UTF-8")
}
