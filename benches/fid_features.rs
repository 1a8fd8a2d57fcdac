//! FID feature extraction speed: 2048-d features of N 64x64 PNGs on the CPU, hwrun (parallel
//! decoding, then batches of 50 through the folded, channels-last network under `no_grad`)
//! against pytorch-fid's `get_activations` (`benches/fid_features.py`) with the same random
//! weights, images and thread count. Both are timed from the file list to the features; the
//! features must agree (max difference printed). Prints the rates and their ratio (goal >= 1.5x).
//!
//! `HWRUN_BENCH_FID_IMAGES` sets N (default 200: the 10,000 take about an hour per
//! side on a 2-core machine).

use std::process::Command;
use std::time::Instant;

use camino::Utf8PathBuf;
use hwrun::data::formats::npz::read_npz;
use hwrun::metrics::inception_features::{
    featurise_all, load_image_set, FeatureKind, ImageSetError,
};
use hwrun::models::inception::FidInception;
use hwrun::training::threads;
use tch::{Device, Kind, Tensor};

const BATCH: usize = 50;

fn main() {
    let images: usize = std::env::var("HWRUN_BENCH_FID_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    threads::use_physical_cores();
    let threads = tch::get_num_threads();
    println!("fid_features: {images} 64x64 PNGs -> 2048-d FID features, batch {BATCH}, CPU, {threads} threads");
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("UTF-8 temp dir");
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|venv| std::path::PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fid_features.py");
    let output = Command::new(&python)
        .args([
            script,
            "--dir",
            dir.as_str(),
            "--images",
            &images.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output();
    let report: Option<serde_json::Value> = match output {
        Ok(output) if output.status.success() => serde_json::from_slice(&output.stdout).ok(),
        Ok(output) => {
            println!(
                "  pytorch-fid reference failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Err(err) => {
            println!(
                "  pytorch-fid reference unavailable ({err}); set VIRTUAL_ENV to the torch venv"
            );
            None
        }
    };
    let Some(pytorch_seconds) = report.and_then(|r| r["seconds"].as_f64()) else {
        return;
    };

    let model =
        FidInception::load(&dir.join("weights.safetensors"), Device::Cpu).expect("weights load");
    let start = Instant::now();
    let set = load_image_set(&dir.join("images"), indicatif::ProgressBar::hidden())
        .expect("images decode");
    let features = featurise_all(&model, &set, BATCH, FeatureKind::Fid { dims: 2048 }, |_| {
        Ok::<(), ImageSetError>(())
    })
    .expect("features");
    let hwrun_seconds = start.elapsed().as_secs_f64();

    let theirs = read_npz(&dir.join("features.npz"))
        .expect("reference features")
        .remove("features")
        .expect("features");
    let theirs =
        Tensor::from_slice(&theirs.data).view([theirs.shape[0] as i64, theirs.shape[1] as i64]);
    let diff = (features.to_kind(Kind::Double) - &theirs)
        .abs()
        .max()
        .double_value(&[]);
    let scale = theirs.abs().max().double_value(&[]);
    println!(
        "  hwrun        {:8.2} images/s ({hwrun_seconds:.1} s)",
        images as f64 / hwrun_seconds
    );
    println!(
        "  pytorch-fid  {:8.2} images/s ({pytorch_seconds:.1} s)",
        images as f64 / pytorch_seconds
    );
    println!(
        "  ratio hwrun / pytorch-fid = {:.2}x (goal >= 1.5x)",
        pytorch_seconds / hwrun_seconds
    );
    println!("  features max |difference| {diff:.2e} (largest feature {scale:.1})");
}
