//! DANN training throughput: steps per second at batch 128 per domain on 3x28x28 inputs (the
//! DANN paper's MNIST CNN, Adam), hwrun's real step code (`DannTrainer::step`: index batches,
//! u8 -> f32 normalisation, forward, GRL, losses, backward, optimizer step, loss read-back)
//! against the same model and loop in PyTorch Python (`benches/dann_steps.py`) at the same thread
//! count. Prints the rates and their ratios (goal: hwrun >= 1.0x).
//!
//! `HWRUN_BENCH_STEPS` sets the timed steps (default 50).

use std::process::Command;
use std::time::Instant;

use hwrun::data::Dataset;
use hwrun::models::{Arch, DigitCnnConfig};
use hwrun::training::dann::{DannData, DannModel, DannTraining};
use hwrun::training::schedule::LAMBDA_GAMMA;
use hwrun::training::threads;
use hwrun::training::{
    DomainData, IndexStream, InputFormat, Normalisation, OptimizerSettings, StepProgress,
    TrainingMethod,
};
use rand::{Rng, SeedableRng};
use tch::{nn, Device};

const BATCH: usize = 128;
const IMAGES: usize = 4096;
const WARMUP: usize = 5;

fn random_dataset(seed: u64) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let images: Vec<u8> = (0..IMAGES * 3 * 28 * 28).map(|_| rng.random()).collect();
    let labels: Vec<i64> = (0..IMAGES).map(|_| rng.random_range(0..10)).collect();
    Dataset::new(
        images,
        [IMAGES, 3, 28, 28],
        labels,
        Dataset::digit_classes(),
        "random",
    )
    .expect("valid dataset")
}

fn trainer() -> DannTraining {
    tch::manual_seed(0);
    let config = DigitCnnConfig {
        arch: Arch::Mnist,
        channels: 3,
        image_size: 28,
        classes: 10,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = DannModel::new(&vs.root(), config).expect("model builds");
    let format = InputFormat {
        channels: 3,
        image_size: 28,
    };
    let domain = |seed| {
        let dataset = random_dataset(seed);
        DomainData::new(&dataset, &Normalisation::of(&dataset), format, Device::Cpu)
            .expect("data converts")
    };
    let data = DannData {
        source: domain(1),
        target: domain(2),
        source_order: IndexStream::new(IMAGES, BATCH, 1, Device::Cpu),
        target_order: IndexStream::new(IMAGES, BATCH, 2, Device::Cpu),
    };
    DannTraining::new(
        vs,
        model,
        OptimizerSettings::adam(1e-3, [0.9, 0.999]),
        LAMBDA_GAMMA,
        data,
        None,
    )
}

fn hwrun_steps_per_sec(steps: usize) -> f64 {
    let mut trainer = trainer();
    let at = StepProgress {
        epoch: 1,
        step: 1,
        p: 0.5,
    };
    for _ in 0..WARMUP {
        trainer.step(at).expect("step runs");
    }
    let start = Instant::now();
    for i in 0..steps {
        let scalars = trainer.step(at).expect("step runs");
        assert!(scalars[0].1.is_finite(), "loss diverged at step {i}");
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn pytorch_steps_per_sec(steps: usize, threads: usize, channels_last: bool) -> Option<f64> {
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|venv| std::path::PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/dann_steps.py");
    let mut command = Command::new(&python);
    command.args([
        script,
        "--threads",
        &threads.to_string(),
        "--steps",
        &steps.to_string(),
        "--warmup",
        &WARMUP.to_string(),
    ]);
    if channels_last {
        command.arg("--channels-last");
    }
    let output = command.output().ok()?;
    if !output.status.success() {
        eprintln!(
            "PyTorch reference failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    report["steps_per_sec"].as_f64()
}

fn main() {
    let steps = std::env::var("HWRUN_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    threads::use_physical_cores();
    let threads = tch::get_num_threads() as usize;
    println!("dann_steps: batch {BATCH} per domain, 3x28x28, mnist CNN, Adam, {threads} threads, {steps} steps");
    let hwrun = hwrun_steps_per_sec(steps);
    println!("  hwrun (tch)     {hwrun:8.2} steps/s");
    // hwrun feeds its batches channels-last; PyTorch is timed with its default layout (what a
    // port would do) and with the same channels-last layout (same kernels, for the overhead).
    match pytorch_steps_per_sec(steps, threads, false) {
        Some(pytorch) => {
            println!("  PyTorch Python  {pytorch:8.2} steps/s (default NCHW layout)");
            println!(
                "  ratio hwrun / PyTorch = {:.3}x (goal >= 1.0x)",
                hwrun / pytorch
            );
        }
        None => println!("  PyTorch reference unavailable (set VIRTUAL_ENV to the torch venv)"),
    }
    if let Some(pytorch) = pytorch_steps_per_sec(steps, threads, true) {
        println!("  PyTorch Python  {pytorch:8.2} steps/s (channels-last, like hwrun)");
        println!(
            "  ratio hwrun / PyTorch channels-last = {:.3}x",
            hwrun / pytorch
        );
    }
}
