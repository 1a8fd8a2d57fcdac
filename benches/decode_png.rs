//! Course-layout reading speed: hwrun's parallel PNG reader against the torchvision-style PIL
//! loop (`benches/decode_png_pil.py`) on the same 50,000 28x28 RGB PNGs plus `train.csv`.
//!
//! The images (procedural MNIST-M digits, so they compress like real ones) are written once to
//! `target/bench-data/decode_png` and reused by later runs. Each reader runs once to warm the page
//! cache, then is timed; the output gives both times, the ratio (goal: hwrun >= 3x faster) and a
//! pixel-sum cross-check. Needs `VIRTUAL_ENV` pointing at the venv with Pillow and numpy.
//!
//! Run: `cargo bench --bench decode_png`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;

use hwrun::data::formats::{load_course, ReadOptions, CSV_HEADER};
use hwrun::data::synthetic::{generate_range, DigitDomain};
use hwrun::data::Dataset;

const N: usize = 50_000;
const SIDE: u32 = 28;
const COMPLETE_MARKER: &str = "complete";

fn data_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/decode_png")
}

/// Writes `data/{i:05}.png` and `train.csv` unless a previous run finished doing so.
fn ensure_images(root: &Utf8Path) -> anyhow::Result<()> {
    if root.join(COMPLETE_MARKER).exists() {
        return Ok(());
    }
    let started = Instant::now();
    let images = root.join("data");
    std::fs::create_dir_all(&images)?;
    let digits = generate_range(DigitDomain::Mnistm, 0..N, 0);
    (0..N)
        .into_par_iter()
        .try_for_each(|i| -> anyhow::Result<()> {
            let chw = digits.image(i);
            let plane = (SIDE * SIDE) as usize;
            let hwc: Vec<u8> = (0..plane)
                .flat_map(|p| [chw[p], chw[plane + p], chw[2 * plane + p]])
                .collect();
            let image = image::RgbImage::from_raw(SIDE, SIDE, hwc)
                .ok_or_else(|| anyhow::anyhow!("bad buffer"))?;
            image.save(images.join(format!("{i:05}.png")))?;
            Ok(())
        })?;
    let rows: String = (0..N)
        .map(|i| format!("{i:05}.png,{}\n", digits.labels[i]))
        .collect();
    std::fs::write(root.join("train.csv"), format!("{CSV_HEADER}\n{rows}"))?;
    std::fs::write(root.join(COMPLETE_MARKER), "")?;
    println!("wrote {N} PNGs to {root} in {:.1?}", started.elapsed());
    Ok(())
}

fn time_hwrun(root: &Utf8Path) -> anyhow::Result<(Duration, Dataset)> {
    let read = || {
        load_course(
            &root.join("train.csv"),
            &root.join("data"),
            Dataset::digit_classes(),
            "mnistm",
            &ReadOptions::default(),
        )
    };
    read()?;
    let started = Instant::now();
    let dataset = read()?;
    Ok((started.elapsed(), dataset))
}

/// Runs the PIL loop twice (the first warms caches) and returns its own timing of the second.
fn time_pil(root: &Utf8Path) -> anyhow::Result<(Duration, String)> {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .ok_or_else(|| anyhow::anyhow!("set VIRTUAL_ENV to the torch venv"))?;
    let python = PathBuf::from(venv).join("bin/python");
    let script = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/decode_png_pil.py");
    let mut last = String::new();
    for _ in 0..2 {
        let output = Command::new(&python)
            .arg(&script)
            .arg(root.join("data"))
            .arg(root.join("train.csv"))
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "PIL baseline failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        last = String::from_utf8(output.stdout)?;
    }
    let mut lines = last.lines();
    let seconds: f64 = lines.next().unwrap_or_default().trim().parse()?;
    Ok((
        Duration::from_secs_f64(seconds),
        lines.next().unwrap_or_default().to_owned(),
    ))
}

fn main() -> anyhow::Result<()> {
    let root = data_dir();
    ensure_images(&root)?;
    let (hwrun, dataset) = time_hwrun(&root)?;
    let (pil, pil_check) = time_pil(&root)?;
    let sum: u64 = dataset.images.iter().map(|&v| v as u64).sum();
    println!(
        "decode_png: {N} x 28x28 RGB PNGs + train.csv, {} threads",
        rayon::current_num_threads()
    );
    println!("  hwrun course reader: {:>8.3} s", hwrun.as_secs_f64());
    println!("  PIL + numpy loop:    {:>8.3} s", pil.as_secs_f64());
    println!(
        "  ratio:               {:>8.2}x (goal >= 3x)",
        pil.as_secs_f64() / hwrun.as_secs_f64()
    );
    let same = pil_check == format!("{sum} {}", dataset.len());
    println!(
        "  pixel sums:          hwrun {sum} {}, PIL {pil_check} ({})",
        dataset.len(),
        if same { "equal" } else { "DIFFERENT" }
    );
    Ok(())
}
