//! The reliability suite (issue 14): bad recipes are refused at plan time with a location,
//! corrupt cache entries are never reused, special files in outputs fail the stage, `gc` leaves
//! what a running process reads, a moved cache still hits, `plan` writes nothing, a full disk
//! leaves no debris, `--json` is honoured everywhere, results get readable paths.
//!
//! Fault injection with SIGKILLs of `hwrun` and of the worker is in `reliability_faults.rs`,
//! the property test of recipe parsing in `reliability_proptest.rs`. Run all three with
//! `cargo test --release --test 'reliability*'`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::project::{ran, stderr, Project};
use serde_json::Value;

/// Two command stages and a report; `{runs}` is replaced by a log every stage appends to.
const PIPELINE: &str = r#"
name = "pipeline"
seed = 3

[stages.prepare]
kind = "command"
shell = "echo prepare >> {runs}; mkdir -p {out}/sub; echo data > {out}/sub/data.txt; echo more > {out}/b.txt"

[stages.evaluate]
kind = "command"
inputs = { data = "prepare" }
shell = "echo evaluate >> {runs}; cat {data}/sub/data.txt > /dev/null; echo '{{\"accuracy\": 0.5}}' > {out}/metrics.json"

[stages.report]
kind = "report"
inputs = { evaluate = "evaluate" }
"#;

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn entries(project: &Project) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(project.cache().join("entries"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn flip_byte(path: &Path) {
    make_writable(path.parent().unwrap());
    make_writable(path);
    let mut bytes = std::fs::read(path).unwrap();
    if bytes.is_empty() {
        bytes.push(0);
    } else {
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
    }
    std::fs::write(path, bytes).unwrap();
}

fn fsck_problems(project: &Project) -> Vec<Value> {
    let (_, json) = project.run_json(&["fsck"]);
    json["problems"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("fsck --json printed {json}"))
}

// --- 5. plan rejects what would fail later -------------------------------------------------------

/// Bad recipes: (what, recipe text, extra arguments, a fragment the error must contain).
fn bad_recipes() -> Vec<(&'static str, String, Vec<&'static str>, &'static str)> {
    let producer = "[stages.src]\nkind = \"command\"\nshell = \"echo src >> {runs}; mkdir {out}/train {out}/val\"\noutputs = [\"train\", \"val\"]\n";
    let consumer = |reference: &str| {
        format!("name = \"bad\"\n{producer}\n[stages.use]\nkind = \"command\"\ninputs = {{ d = \"{reference}\" }}\nshell = \"echo use >> {{runs}}\"\n")
    };
    let digits: Vec<String> = (0..10).map(|i| format!("\"{i}\"")).collect();
    let axes: String = (0..8)
        .map(|i| format!("\"src.env.V{i}\" = [{}]\n", digits.join(", ")))
        .collect();
    vec![
        ("unknown output name", consumer("src.trian"), vec![], "did you mean `train`?"),
        ("output reference with a path", consumer("src.../../etc"), vec![], "names a path, not a stage output"),
        ("10^8-variant sweep", format!("name = \"bad\"\n{producer}\n[sweep]\n{axes}"), vec![], "100000000 variants"),
        ("empty stage name", "name = \"bad\"\n[stages.\"\"]\nkind = \"command\"\nshell = \"echo x >> {runs}\"\n".to_owned(), vec![], "non-empty name"),
        ("empty recipe name", format!("name = \"\"\n{producer}"), vec![], "must not be empty"),
        ("undeclared variable", format!("name = \"bad\"\n[vars]\nroot = \"x\"\n{producer}"), vec!["--set", "vars.rot=1"], "declares no variable `rot`"),
        ("extends of a missing file", format!("name = \"bad\"\nextends = \"missing.toml\"\n{producer}"), vec![], "which this recipe extends"),
        (
            "download without a checksum",
            "name = \"bad\"\n[stages.get]\nkind = \"download\"\nsource = \"https://example.invalid/x.bin\"\n".to_owned(),
            vec![],
            "checksum",
        ),
        (
            "download with a path as filename",
            "name = \"bad\"\n[stages.get]\nkind = \"download\"\nsource = \"https://example.invalid/x.bin\"\nmd5 = \"d53e105ee54ea40749a09fcbcd1e9432\"\nfilename = \"../x.bin\"\n".to_owned(),
            vec![],
            "not a plain file name",
        ),
        ("unknown stage kind", "name = \"bad\"\n[stages.a]\nkind = \"comand\"\n".to_owned(), vec![], "did you mean `command`?"),
        ("a recipe name with an escape sequence", format!("name = \"bad\\u001b]0;owned\\u0007\"\n{producer}"), vec![], "control character U+001B"),
        ("a recipe name with a bidi override", format!("name = \"bad\\u202egnp.exe\"\n{producer}"), vec![], "control character U+202E"),
        ("a 300-character recipe name", format!("name = \"{}\"\n{producer}", "n".repeat(300)), vec![], "300 characters"),
        ("an executor hwrun does not have", format!("name = \"bad\"\n[run]\nexecutor = \"kubernetes\"\n{producer}"), vec![], "`local` or `slurm`"),
        ("a misspelt key of [run]", format!("name = \"bad\"\n[run]\nretires = 2\n{producer}"), vec![], "did you mean `retries`?"),
        ("defaults of a misspelt kind", format!("name = \"bad\"\n[defaults.comand]\nshell = \"x\"\n{producer}"), vec![], "did you mean `command`?"),
        (
            "a large variable used many times",
            format!(
                "name = \"bad\"\n[vars]\nbig = \"{}\"\n[stages.a]\nkind = \"command\"\nargs = [{}]\n",
                "x".repeat(900_000),
                vec!["\"${big}\""; 3000].join(", ")
            ),
            vec![],
            "longer than 16 MiB",
        ),
        (
            "a sweep planning 10^6 stages",
            format!(
                "name = \"bad\"\n{}[sweep]\n\"s0.env.A\" = [{}]\n",
                (0..20).map(|i| format!("[stages.s{i}]\nkind = \"command\"\nshell = \"echo s >> {{runs}}\"\n")).collect::<String>(),
                (0..60_000).map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ")
            ),
            vec![],
            "stage instances",
        ),
        ("bad stage name", "name = \"bad\"\n[stages.\"a/b\"]\nkind = \"command\"\n".to_owned(), vec![], "stage names may only contain"),
    ]
}

/// Checks one bad recipe: `plan` exits 2 with a `-->` location, and `run --json` exits 2 with
/// the error as a located JSON object on stdout, having run nothing.
fn assert_refused(project: &Project, what: &str, recipe: &str, extra: &[&str], fragment: &str) {
    let mut args = vec!["plan", recipe];
    args.extend_from_slice(extra);
    let output = project.hwrun(&args);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: `hwrun plan` must exit 2:\n{err}"
    );
    assert!(err.contains("-->"), "{what}: no location in\n{err}");
    assert!(
        err.contains(fragment),
        "{what}: `{fragment}` missing from\n{err}"
    );
    args[0] = "run";
    let (code, json) = project.run_json(&args);
    assert_eq!(code, Some(2), "{what}");
    assert_eq!(json["exit_code"], 2, "{what}: {json}");
    assert!(
        json["location"]["line"].as_u64().is_some(),
        "{what}: {json}"
    );
    assert!(
        json["error"].as_str().unwrap().contains(fragment)
            || json["help"].as_str().unwrap_or("").contains(fragment),
        "{what}: {json}"
    );
    assert!(
        project.runs().is_empty(),
        "{what}: a stage ran: {:?}",
        project.runs()
    );
}

#[test]
fn bad_recipes_exit_2_at_their_line_and_run_nothing() {
    let project = Project::new();
    for (what, text, extra, fragment) in bad_recipes() {
        let recipe = project.write_logged_recipe("bad.toml", &text);
        assert_refused(&project, what, &recipe, &extra, fragment);
    }
}

/// Value ranges of the training stages: planned today, so they fail (or do the wrong thing)
/// only when run.
#[test]
fn training_values_out_of_range_exit_2_at_their_line() {
    let project = Project::new();
    let base = "name = \"bad\"\n[stages.data]\nkind = \"synthetic\"\ndomain = \"mnistm\"\nn_train = 64\nn_val = 16\n[stages.train]\nkind = \"train_classifier\"\ninputs = { train = \"data.train\", val = \"data.val\" }\n";
    for (what, line, fragment) in [
        ("epochs = 0", "epochs = 0", "epochs"),
        ("batch_size = 0", "batch_size = 0", "batch_size"),
        ("lr = nan", "optimizer = { lr = nan }", "lr"),
        ("lr = -1", "optimizer = { lr = -1.0 }", "lr"),
    ] {
        let recipe = project.write_logged_recipe("bad.toml", &format!("{base}{line}\n"));
        assert_refused(&project, what, &recipe, &[], fragment);
    }
    let huge = base.replace("n_train = 64", "n_train = 9223372036854775807");
    let recipe = project.write_logged_recipe("bad.toml", &huge);
    assert_refused(&project, "n_train = i64::MAX", &recipe, &[], "n_train");
}

// --- 1. corrupt entries are detected, quarantined and rerun ---------------------------------------

#[test]
fn every_flipped_byte_is_detected_and_rerun_never_reused() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    project.run_json_ok(&[&recipe]);
    // Every file of every entry: outputs, log, manifest and its hash.
    let targets: Vec<PathBuf> = entries(&project)
        .iter()
        .flat_map(|dir| files_under(dir).into_iter().map(move |f| dir.join(f)))
        .collect();
    assert!(targets.len() >= 10, "{targets:?}");
    for target in targets {
        let entry = target
            .ancestors()
            .find(|a| a.parent().is_some_and(|p| p.ends_with("entries")))
            .unwrap()
            .to_owned();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap()).unwrap();
        let stage = manifest["stage"].as_str().unwrap().to_owned();
        flip_byte(&target);
        let output = project.hwrun(&["--json", &recipe]);
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{target:?}: {}",
            stderr(&output)
        );
        assert!(
            ran(&summary).contains(&stage),
            "flipping {target:?} must rerun `{stage}`: {summary}"
        );
        let name = target.file_name().unwrap().to_str().unwrap();
        let err = stderr(&output);
        assert!(
            err.contains("corrupt") && err.contains(name),
            "the warning must name `{name}`:\n{err}"
        );
    }
    assert!(fsck_problems(&project).is_empty(), "after the reruns");
    let quarantined = std::fs::read_dir(project.cache().join("quarantine"))
        .unwrap()
        .count();
    assert!(
        quarantined >= 10,
        "corrupt entries are kept aside: {quarantined}"
    );
}

#[test]
fn a_missing_manifest_never_blocks_a_commit() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    project.run_json_ok(&[&recipe]);
    for dir in entries(&project) {
        make_writable(&dir);
        std::fs::remove_file(dir.join("manifest.json")).unwrap();
    }
    for _ in 0..2 {
        let summary = project.run_json_ok(&[&recipe]);
        assert!(fsck_problems(&project).is_empty(), "{summary}");
    }
    assert_eq!(
        project.runs().len(),
        4,
        "each stage reran once: {:?}",
        project.runs()
    );
}

#[test]
fn a_changed_metric_is_found_by_fsck_and_repaired() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    project.run_json_ok(&[&recipe]);
    let manifest = entries(&project)
        .into_iter()
        .map(|d| d.join("manifest.json"))
        .find(|m| std::fs::read_to_string(m).unwrap().contains("\"accuracy\""))
        .unwrap();
    make_writable(manifest.parent().unwrap());
    make_writable(&manifest);
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"accuracy\": 0.5", "\"accuracy\": 0.9");
    std::fs::write(&manifest, text).unwrap();
    let output = project.hwrun(&["fsck"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("manifest"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let repaired = project.hwrun(&["fsck", "--repair"]);
    assert!(String::from_utf8_lossy(&repaired.stdout).contains("quarantine"));
    assert!(fsck_problems(&project).is_empty());
    // The report's key depends on the evaluation's key, not its content: only `evaluate` reruns.
    let summary = project.run_json_ok(&[&recipe]);
    assert_eq!(ran(&summary), ["evaluate"]);
}

// --- 4. outputs are plain files and directories ---------------------------------------------------

#[test]
fn special_files_and_escaping_links_in_outputs_fail_the_stage_quickly() {
    let project = Project::new();
    for (what, shell, fragment) in [
        (
            "a link to /dev/zero",
            "ln -s /dev/zero {out}/zero",
            "symbolic link",
        ),
        ("a FIFO", "mkfifo {out}/pipe", "FIFO"),
        (
            "a link out of the cache",
            "ln -s /etc/passwd {out}/passwd",
            "outside the output directory",
        ),
        (
            "a relative link out of the output",
            "ln -s ../../../../etc/passwd {out}/passwd",
            "outside the output directory",
        ),
    ] {
        let text =
            format!("name = \"special\"\n[stages.s]\nkind = \"command\"\nshell = \"{shell}\"\n");
        let recipe = project.write_logged_recipe("s.toml", &text);
        let started = Instant::now();
        let output = project.hwrun(&[&recipe]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{what}: {all}");
        assert!(
            all.contains(fragment),
            "{what}: `{fragment}` missing:\n{all}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(entries(&project).is_empty(), "{what} was cached");
    }
    let inside = "name = \"inside\"\n[stages.s]\nkind = \"command\"\nshell = \"echo x > {out}/a; ln -s a {out}/b\"\n";
    let recipe = project.write_logged_recipe("i.toml", inside);
    project.run_json_ok(&[&recipe]);
    assert!(
        project.run_json_ok(&[&recipe])["stages"][0]["result"] == "cached",
        "a link inside the output is fine"
    );
}

// --- 3. readers hold entries ----------------------------------------------------------------------

#[test]
fn gc_during_a_run_keeps_the_entries_it_reads() {
    let project = Project::new();
    let marker = project.path().join("slow-started");
    let text = format!(
        "name = \"long\"\n[stages.a]\nkind = \"command\"\nshell = \"echo a > {{out}}/data\"\n\
         [stages.b]\nkind = \"command\"\ninputs = {{ a = \"a\" }}\nshell = \"touch {}; sleep 2; cat {{a}}/data > {{out}}/copy\"\n",
        marker.display()
    );
    let recipe = project.write_logged_recipe("long.toml", &text);
    let other = project.write_logged_recipe(
        "other.toml",
        "name = \"other\"\n[stages.x]\nkind = \"command\"\nshell = \"true\"\n",
    );
    let child = project
        .command(&["--quiet", &recipe])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(marker.exists(), "stage b never started");
    let gc = project.hwrun(&["gc", &other]);
    let gc_out = String::from_utf8_lossy(&gc.stdout).into_owned();
    assert!(
        gc_out.contains("reads it"),
        "gc must say what it kept: {gc_out}"
    );
    let run = child.wait_with_output().unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "the running pipeline lost its input:\n{}",
        stderr(&run)
    );
    // Once the run is over its entries are fair game.
    let gc = project.hwrun(&["--json", "gc", &other]);
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["removed"], 2, "{report}");
}

// --- 4 (issue 13). relocatable entries -------------------------------------------------------------

#[test]
fn a_moved_cache_directory_runs_nothing() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    project.run_json_ok(&[&recipe]);
    let moved = project.path().join("elsewhere/cache2");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(project.cache(), &moved).unwrap();
    let output = project
        .command(&["--json", &recipe])
        .env("HWRUN_CACHE", &moved)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(ran(&summary).is_empty(), "{summary}");
    for dir in std::fs::read_dir(moved.join("entries")).unwrap().flatten() {
        let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
        assert!(
            !manifest.contains(project.cache().to_str().unwrap()),
            "the cache's path is in {manifest}"
        );
    }
}

// --- 10. results under readable paths; plan writes nothing ----------------------------------------

#[test]
fn plan_dag_and_compare_create_nothing() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    for args in [
        &["plan", recipe.as_str()][..],
        &["dag", &recipe],
        &["compare", &recipe],
        &["--json", "plan", &recipe],
    ] {
        let output = project.hwrun(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let left: Vec<PathBuf> = files_under(project.path());
    assert_eq!(
        left,
        [PathBuf::from("r.toml")],
        "plan/dag/compare wrote files"
    );
    assert!(!project.cache().exists());
}

#[test]
fn results_link_each_stage_and_the_report_is_the_last_line() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    let output = project.hwrun(&[&recipe]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let results = project.path().join("results/pipeline");
    for stage in ["prepare", "evaluate", "report"] {
        let link = results.join(stage);
        let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        assert!(
            target.starts_with(project.cache().canonicalize().unwrap().join("entries")),
            "{target:?}"
        );
        assert!(
            stdout.contains(&format!("results/pipeline/{stage}")),
            "{stdout}"
        );
    }
    assert!(results.join("prepare/sub/data.txt").is_file());
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(format!("report: {}", results.join("report/index.html").display()).as_str())
    );
    // A sweep's variants each get their own folder.
    let sweep = format!("{PIPELINE}\n[sweep]\n\"evaluate.env.X\" = [\"1\", \"2\"]\n");
    let recipe = project.write_logged_recipe("s.toml", &sweep);
    project.run_json_ok(&[&recipe]);
    let names: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().filter(|n| n.starts_with("evaluate[")).count() == 2,
        "{names:?}"
    );
    // --results-dir moves them.
    let output = project.hwrun(&["--results-dir", "out/res", &recipe]);
    assert_eq!(output.status.code(), Some(0));
    assert!(project.path().join("out/res/pipeline/prepare").exists());
}

// --- 7. --json everywhere ----------------------------------------------------------------------------

#[test]
fn every_subcommand_speaks_json() {
    let project = Project::new();
    let recipe = project.write_logged_recipe("r.toml", PIPELINE);
    project.run_json_ok(&[&recipe]);
    let fsck = project.run_json_ok(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0), "{fsck}");
    assert!(fsck["entries"].as_u64() == Some(3), "{fsck}");
    let stages = project.run_json_ok(&["stages"]);
    assert!(
        stages
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"] == "command"),
        "{stages}"
    );
    let dag = project.run_json_ok(&["dag", &recipe]);
    assert_eq!(
        (
            dag["nodes"].as_array().unwrap().len(),
            dag["edges"].as_array().unwrap().len()
        ),
        (3, 2),
        "{dag}"
    );
    let gc = project.run_json_ok(&["gc", &recipe]);
    assert_eq!(gc["removed"], 0, "{gc}");
    let version = project.run_json_ok(&["--version"]);
    assert!(
        version["hwrun"].is_string() && version["libtorch"].is_string(),
        "{version}"
    );
    let (code, error) = project.run_json(&["plan", "missing.toml"]);
    assert_eq!(
        (code, error["exit_code"].as_i64()),
        (Some(2), Some(2)),
        "{error}"
    );
    assert!(
        error["error"].as_str().unwrap().contains("missing.toml"),
        "{error}"
    );
    let (code, error) = project.run_json(&["plan", "--no-such-flag"]);
    assert_eq!(
        (code, error["exit_code"].as_i64()),
        (Some(2), Some(2)),
        "{error}"
    );
}

// --- 8. full disk, double SIGTERM ----------------------------------------------------------------------

/// Mounts a 2 MB tmpfs at `dir` (root only); `None` with the reason otherwise.
fn small_tmpfs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    let output = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn a_full_disk_fails_the_stage_naming_the_file_and_leaves_no_debris() {
    let project = Project::new();
    let disk = project.path().join("disk");
    if let Err(reason) = small_tmpfs(&disk) {
        eprintln!("skipping the full-disk test: {reason}");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let cache = disk.join("cache");
    // `fill` fills the disk from outside the cache and succeeds, so hwrun's own writes fail:
    // its manifest, then the ref and the stat cache of the run.
    let text = format!(
        "name = \"full\"\n[stages.small]\nkind = \"command\"\nshell = \"echo ok > {{out}}/a\"\n\
         [stages.fill]\nkind = \"command\"\ninputs = {{ s = \"small\" }}\nshell = \"head -c 4000000 /dev/zero > {}; true\"\n",
        disk.join("filler").display()
    );
    let recipe = project.write_logged_recipe("full.toml", &text);
    let output = project
        .command(&[&recipe])
        .env("HWRUN_CACHE", &cache)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("No space left"), "{all}");
    let failure = all
        .lines()
        .find(|l| l.contains("error: stage `fill` failed"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        failure.contains(cache.to_str().unwrap()),
        "the out-of-space error must name the file: {failure}"
    );
    let debris: Vec<PathBuf> = files_under(&cache.join("refs"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(debris.is_empty(), "temporary files left: {debris:?}");
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "a staging directory was left"
    );
    std::fs::remove_file(disk.join("filler")).unwrap();
    let fsck = project
        .command(&["--json", "fsck"])
        .env("HWRUN_CACHE", &cache)
        .output()
        .unwrap();
    let fsck: Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0), "{fsck}");
}

#[test]
fn a_double_sigterm_still_prints_the_summary_and_cleans_up() {
    let project = Project::new();
    let marker = project.path().join("started");
    let text = format!(
        "name = \"slow\"\n[stages.s]\nkind = \"command\"\nshell = \"touch {}; sleep 30\"\n",
        marker.display()
    );
    let recipe = project.write_logged_recipe("slow.toml", &text);
    let child = project
        .command(&[&recipe])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id() as i32;
    for _ in 0..2 {
        unsafe { libc::kill(pid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("0 ran"),
        "no summary:\n{stdout}\n{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_dir(project.cache().join("tmp"))
            .unwrap()
            .count(),
        0,
        "a staging directory was left"
    );
}

// --- 6. dataset rows --------------------------------------------------------------------------------

#[test]
fn dataset_rows_outside_root_and_empty_datasets_fail_naming_the_line() {
    let project = Project::new();
    let root = project.path().join("digits");
    std::fs::create_dir_all(root.join("data")).unwrap();
    image::GrayImage::new(4, 4)
        .save(root.join("data/00000.png"))
        .unwrap();
    image::GrayImage::new(4, 4)
        .save(project.path().join("outside.png"))
        .unwrap();
    std::fs::write(
        root.join("val.csv"),
        "\u{feff}image_name,label\n00000.png,1\n",
    )
    .unwrap();
    let text = format!("name = \"d\"\n[stages.d]\nkind = \"dataset\"\nformat = \"course\"\nroot = \"{}\"\ndomain = \"x\"\n", root.display());
    let recipe = project.write_logged_recipe("d.toml", &text);
    for (csv, fragment) in [
        (
            "image_name,label\n00000.png,1\n../outside.png,2\n",
            "line 3",
        ),
        ("image_name,label\n", "has no images"),
    ] {
        std::fs::write(root.join("train.csv"), csv).unwrap();
        let output = project.hwrun(&[&recipe]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{all}");
        assert!(all.contains(fragment), "`{fragment}` missing:\n{all}");
    }
    std::fs::write(
        root.join("train.csv"),
        "\u{feff}image_name,label\n00000.png,1\n",
    )
    .unwrap();
    project.run_json_ok(&[&recipe]);
}

// --- 4 (issue 13). locks on a shared filesystem ------------------------------------------------------

/// A lock header as another node's hwrun writes it.
fn foreign_lock(host: &str, pid: u32, heartbeat_ms: u128) -> String {
    format!(
        "hwrun-lock 1\nhost {host}\npid {pid:>10}\nstart {:>20}\nheartbeat {heartbeat_ms:>39}\n",
        1
    )
}

#[test]
fn a_run_in_another_pid_namespace_of_this_host_keeps_its_lock() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "slow.toml",
        "name = \"slow\"\n[stages.s]\nkind = \"command\"\nshell = \"echo s >> {runs}; sleep 3; touch {out}/x\"\n",
    );
    // A container beside this one: the same hostname, its own PID namespace.
    let mut contained = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            env!("CARGO_BIN_EXE_hwrun"),
            "--quiet",
        ])
        .arg(&recipe)
        .current_dir(project.path())
        .env("HWRUN_CACHE", project.cache())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let started = Instant::now();
    while project.runs().is_empty() {
        if let Some(status) = contained.try_wait().unwrap() {
            let mut reason = String::new();
            use std::io::Read;
            contained
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut reason)
                .unwrap();
            println!("SKIPPED: no PID namespace for the test ({status}): {reason}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the contained run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let summary = project.run_json_ok(&[&recipe]);
    assert!(contained.wait().unwrap().success());
    assert_eq!(
        project.runs(),
        ["s"],
        "the stage ran once, in the container: {summary}"
    );
    assert!(
        ran(&summary).is_empty(),
        "the second run waited and reused it: {summary}"
    );
}

#[test]
fn a_lock_of_a_dead_node_is_taken_over_after_its_heartbeat_expires() {
    let project = Project::new();
    let recipe = project.write_logged_recipe(
        "one.toml",
        "name = \"one\"\n[stages.s]\nkind = \"command\"\nshell = \"echo s >> {runs}\"\n",
    );
    let plan = project.run_json_ok(&["plan", &recipe]);
    let key = plan[0]["key"].as_str().unwrap().to_owned();
    std::fs::create_dir_all(project.cache().join("locks")).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    // A node that stopped heartbeating a moment ago holds the stage's lock.
    std::fs::write(
        project.cache().join(format!("locks/{key}.lock")),
        foreign_lock("node-that-died", 4242, now_ms),
    )
    .unwrap();
    let started = Instant::now();
    let output = project
        .command(&["--json", &recipe])
        .env("HWRUN_LOCK_STALE_SECS", "1.5")
        .output()
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        waited >= Duration::from_millis(1000),
        "took the live-looking lock over after {waited:?}"
    );
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert_eq!(project.runs(), ["s"]);
    assert!(
        !project.cache().join(format!("locks/{key}.lock")).exists(),
        "the lock is released"
    );
}

// --- issue 30. crafted files -------------------------------------------------------------------------

/// An `.npz` holding one array `name` whose `.npy` header is `header`, followed by `data`.
fn crafted_npz(path: &Path, name: &str, header: &str, data: &[u8]) {
    use std::io::Write;
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(data);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(format!("{name}.npy"), options).unwrap();
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
}

#[test]
fn crafted_npz_statistics_are_clear_errors_not_panics_or_gigabytes() {
    let project = Project::new();
    let good = project.path().join("good.npz");
    let f8 =
        |shape: &str| format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    crafted_npz(&good, "mu", &f8("(1,)"), &[0; 8]);
    let cases = [
        // 2**61 values: the byte count wraps to 0 in 64 bits.
        ("wrapping shape", f8("(2305843009213693952,)"), vec![]),
        // 4 MB of deflated zeros claiming 8 GB.
        ("zip bomb", f8("(1000000000,)"), vec![0; 4 << 20]),
    ];
    for (what, header, data) in cases {
        let bad = project.path().join("bad.npz");
        crafted_npz(&bad, "mu", &header, &data);
        let output = project.hwrun(&["fid", bad.to_str().unwrap(), good.to_str().unwrap()]);
        let err = stderr(&output);
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{what}: exit {:?}\n{err}",
            output.status.code()
        );
        assert!(
            err.contains("array `mu`") && err.contains("larger than"),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_pt_file_whose_dict_key_would_take_gigabytes_is_a_clear_error() {
    use std::io::Write;
    let project = Project::new();
    // memo[0] = None; three times memo[0] = (memo[0],) * 1000; then {memo[0]: None}: 6 KB of
    // pickle describing a dict key of 10^9 leaves.
    let mut pickle = b"\x80\x02Nq\x00".to_vec();
    for _ in 0..3 {
        pickle.push(b'(');
        pickle.extend(b"h\x00".repeat(1000));
        pickle.extend(b"tq\x000");
    }
    pickle.extend(b"}h\x00Ns.");
    let weights = project.path().join("bomb.pt");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&weights).unwrap());
    zip.start_file("archive/data.pkl", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&pickle).unwrap();
    zip.finish().unwrap();
    let images = project.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::new(8, 8)
        .save(images.join("a.png"))
        .unwrap();
    let started = Instant::now();
    let output = project.hwrun(&[
        "fid",
        "--weights",
        weights.to_str().unwrap(),
        images.to_str().unwrap(),
        images.to_str().unwrap(),
    ]);
    let err = stderr(&output);
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "exit {:?}\n{err}",
        output.status.code()
    );
    assert!(
        err.len() < 4000,
        "a short message, not the key: {} bytes",
        err.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
