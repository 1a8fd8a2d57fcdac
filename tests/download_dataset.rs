//! A `download` stage feeding a `dataset` stage, end to end through the `hwrun` binary: the
//! scripted HTTP server of `common::http_server` serves a `.tar.gz` of MNIST-style IDX files built
//! here per the IDX spec (big-endian magic 0x00000803 / 0x00000801, sizes, u8 pixels and labels),
//! the download stage checks its pinned SHA-256 and unpacks it, the dataset stage reads it.
//!
//! Checked: the summary lines (N, shape, per-class counts) in `--json` and human output, the
//! pixels and labels that reach the saved datasets, a second run that runs nothing and sends no
//! request, and a wrong checksum that fails with both digests and leaves no cache entry.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};

use camino::Utf8PathBuf;
use common::http_server::{send_full, sha256_hex, Server};
use common::project::{stage, Project};
use hwrun::data::Dataset;
use serde_json::Value;

/// MNIST's image side.
const SIDE: usize = 28;
/// Images in the `train` and `t10k` IDX files.
const N_TRAIN: usize = 42;
const N_TEST: usize = 18;
/// The folder the archive unpacks to, which the dataset stage names as `subdir`.
const ARCHIVE_DIR: &str = "mnist";

/// Train labels cycle through 0..9, so 0 and 1 get one image more than the rest.
fn train_label(i: usize) -> u8 {
    (i % 10) as u8
}

/// Test labels are only 0, 3 and 6, so the other classes count zero.
fn test_label(i: usize) -> u8 {
    (i % 3 * 3) as u8
}

/// A deterministic 28x28 image, different for every index and split.
fn pixels(i: usize, salt: usize) -> Vec<u8> {
    (0..SIDE * SIDE)
        .map(|p| ((p * 7 + i * 13 + salt * 101) % 256) as u8)
        .collect()
}

/// An IDX file: magic, then each dimension as a big-endian u32, then the u8 data.
fn idx(magic: u32, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for &dim in dims {
        bytes.extend_from_slice(&u32::try_from(dim).unwrap().to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// The images and labels IDX files of one split.
fn idx_pair(n: usize, salt: usize, label: fn(usize) -> u8) -> (Vec<u8>, Vec<u8>) {
    let images: Vec<u8> = (0..n).flat_map(|i| pixels(i, salt)).collect();
    let labels: Vec<u8> = (0..n).map(label).collect();
    (
        idx(0x0000_0803, &[n, SIDE, SIDE], &images),
        idx(0x0000_0801, &[n], &labels),
    )
}

/// `mnist.tar.gz` holding the four uncompressed IDX files under `mnist/`.
fn mnist_tar_gz() -> Vec<u8> {
    let (train_images, train_labels) = idx_pair(N_TRAIN, 0, train_label);
    let (test_images, test_labels) = idx_pair(N_TEST, 1, test_label);
    let files = [
        ("train-images-idx3-ubyte", train_images),
        ("train-labels-idx1-ubyte", train_labels),
        ("t10k-images-idx3-ubyte", test_images),
        ("t10k-labels-idx1-ubyte", test_labels),
    ];
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(
                &mut header,
                format!("{ARCHIVE_DIR}/{name}"),
                data.as_slice(),
            )
            .unwrap();
    }
    let mut gz = builder.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

/// The recipe: download (sha256 pinned, unpacked) -> dataset (format idx, from the `raw` input).
fn recipe(url: &str, sha256: &str) -> String {
    format!(
        r#"name = "mnist_http"
seed = 0

[stages.mnist_tgz]
kind = "download"
url = "{url}"
sha256 = "{sha256}"
unpack = true
retries = 0

[stages.mnist]
kind = "dataset"
format = "idx"
inputs = {{ raw = "mnist_tgz" }}
subdir = "{ARCHIVE_DIR}"
train = "train-images-idx3-ubyte"
train_labels = "train-labels-idx1-ubyte"
val = "t10k-images-idx3-ubyte"
val_labels = "t10k-labels-idx1-ubyte"
domain = "mnist"
"#
    )
}

const TRAIN_SUMMARY: &str =
    "train: mnist: 42 x [1, 28, 28] u8, 10 classes (0:5 1:5 2:4 3:4 4:4 5:4 6:4 7:4 8:4 9:4)";
const VAL_SUMMARY: &str =
    "val: mnist: 18 x [1, 28, 28] u8, 10 classes (0:6 1:0 2:0 3:6 4:0 5:0 6:6 7:0 8:0 9:0)";

/// A project holding the recipe, and `hwrun <args> <recipe>` run in it.
fn project(recipe_text: &str) -> (Project, PathBuf) {
    let project = Project::new();
    let recipe = project.write("mnist.toml", recipe_text);
    (project, recipe)
}

fn run_json(project: &Project, recipe: &Path) -> (Option<i32>, Value) {
    project.run_json(&[recipe.to_str().unwrap()])
}

/// `hwrun plan --json`: the status of stage `name`.
fn plan_status(project: &Project, recipe: &Path, name: &str) -> Value {
    let (code, plan) = project.run_json(&["plan", recipe.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    stage(&plan, name)["status"].clone()
}

fn results(summary: &Value) -> Vec<(String, String)> {
    let stages = summary["stages"].as_array().unwrap();
    let mut results: Vec<_> = stages
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    results.sort();
    results
}

fn pair(name: &str, result: &str) -> (String, String) {
    (name.to_owned(), result.to_owned())
}

/// How many entries the directory `dir` holds (none if it does not exist).
fn count_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The saved `val` dataset holds exactly the test split's pixels and labels.
fn assert_val_dataset_matches(summary: &Value) {
    let output = Utf8PathBuf::from(
        stage(summary, "mnist")["output"]
            .as_str()
            .expect("output dir"),
    );
    let val = Dataset::load(&output.join("val")).unwrap();
    assert_eq!(val.shape, [N_TEST, 1, SIDE, SIDE]);
    assert_eq!(
        val.labels,
        (0..N_TEST)
            .map(|i| i64::from(test_label(i)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        val.images,
        (0..N_TEST).flat_map(|i| pixels(i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn downloads_unpacks_and_reads_idx_then_second_run_is_cached_without_a_request() {
    let archive = mnist_tar_gz();
    let served = archive.clone();
    // Room for a second request, so a cache miss would show up in the count instead of an error.
    let server = Server::start(2, move |_, _, stream| send_full(stream, &served));
    let (project, recipe_path) =
        project(&recipe(&server.url("mnist.tar.gz"), &sha256_hex(&archive)));

    let (code, first) = run_json(&project, &recipe_path);
    assert_eq!(code, Some(0), "{first}");
    assert_eq!(
        results(&first),
        [pair("mnist", "ran"), pair("mnist_tgz", "ran")]
    );
    assert_eq!(
        stage(&first, "mnist")["summary"],
        serde_json::json!([TRAIN_SUMMARY, VAL_SUMMARY])
    );
    assert_eq!(stage(&first, "mnist")["metrics"]["train.n"], 42.0);
    let download_line = stage(&first, "mnist_tgz")["summary"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        download_line.contains("sha256 ok, unpacked 4 files"),
        "{download_line}"
    );
    assert_val_dataset_matches(&first);
    assert_eq!(server.heads().len(), 1);
    assert!(
        server.heads()[0].starts_with("GET /mnist.tar.gz "),
        "{:?}",
        server.heads()
    );

    let (code, second) = run_json(&project, &recipe_path);
    assert_eq!(code, Some(0), "{second}");
    assert_eq!(
        results(&second),
        [pair("mnist", "cached"), pair("mnist_tgz", "cached")]
    );
    assert_eq!(
        server.heads().len(),
        1,
        "a cached download sends no request"
    );

    let human = project.hwrun(&[recipe_path.to_str().unwrap()]);
    assert!(
        human.status.success(),
        "{}",
        String::from_utf8_lossy(&human.stderr)
    );
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(TRAIN_SUMMARY) && text.contains(VAL_SUMMARY),
        "{text}"
    );
    assert!(text.contains(&download_line), "{text}");
    assert_eq!(server.heads().len(), 1);
}

#[test]
fn wrong_sha256_fails_with_both_digests_and_caches_nothing() {
    let archive = mnist_tar_gz();
    let served = archive.clone();
    let server = Server::start(1, move |_, _, stream| send_full(stream, &served));
    let wrong = "0123456789abcdef".repeat(4);
    let (project, recipe_path) = project(&recipe(&server.url("mnist.tar.gz"), &wrong));

    let (code, summary) = run_json(&project, &recipe_path);
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(
        results(&summary),
        [pair("mnist", "skipped"), pair("mnist_tgz", "failed")]
    );
    let error = stage(&summary, "mnist_tgz")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains(&wrong) && error.contains(&sha256_hex(&archive)),
        "{error}"
    );
    assert_eq!(
        count_in(&project.cache().join("entries")),
        0,
        "a failed download must not leave an entry"
    );
    assert_eq!(
        count_in(&project.cache().join("tmp")),
        0,
        "nor its partial file"
    );
    assert_eq!(plan_status(&project, &recipe_path, "mnist_tgz"), "run");
}
