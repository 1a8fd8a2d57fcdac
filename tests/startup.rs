//! The `hwrun` binary leaves libtorch to its `hwrun-torch` worker: loading libtorch takes most
//! of a second, which every `hwrun plan`, `status` and `stages` would otherwise pay.

use crate::common::project::Project;

#[test]
fn hwrun_plans_a_recipe_without_loading_libtorch() {
    // Only the `dist` profile's link-time optimisation drops the unused paths into libtorch;
    // `make test` and `make run` build in it, a quick `cargo test --release` does not.
    if !env!("CARGO_BIN_EXE_hwrun").contains("/dist/") {
        println!("SKIPPED: this hwrun is not a `dist` build (run `make test`)");
        return;
    }
    let project = Project::new();
    let recipe = project.write(
        "r.toml",
        "name = \"r\"\n[stages.a]\nkind = \"command\"\nshell = \"touch {out}/x\"\n",
    );
    // glibc's loader names every shared library it maps when LD_DEBUG=libs.
    let output = project
        .command(&["plan", recipe.to_str().unwrap()])
        .env("LD_DEBUG", "libs")
        .output()
        .expect("hwrun runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loader_log = String::from_utf8_lossy(&output.stderr);
    assert!(
        loader_log.contains("calling init:"),
        "the loader printed its trace (LD_DEBUG works here): {loader_log}"
    );
    let torch: Vec<&str> = loader_log
        .lines()
        .filter(|line| line.contains("calling init:") && line.contains("libtorch"))
        .collect();
    assert!(torch.is_empty(), "hwrun loaded libtorch: {torch:?}");
}
