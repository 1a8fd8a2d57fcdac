//! DCGAN training throughput: one training step (a discriminator update on a real and a fake
//! batch, then a generator update) of the PyTorch tutorial's DCGAN at 64x64, batch 128, z 100,
//! ngf = ndf = 64, Adam 2e-4 betas (0.5, 0.999), through hwrun's real step code
//! (`GanTraining::step`: index batch, u8 -> [-1, 1], forwards, BCE losses, backwards, optimizer
//! steps, the scalars read back) against the same model and loop in PyTorch Python
//! (`benches/gan_step.py`) at the same thread count. Prints the rates and their ratio (goal:
//! hwrun >= 1.0x).
//!
//! `HWRUN_BENCH_STEPS` sets the timed steps (default 5: a step is several seconds on 2 cores).

use std::process::Command;
use std::time::Instant;

use hwrun::data::Dataset;
use hwrun::models::{GanConfig, GanLoss, GanPreset};
use hwrun::training::gan::{GanModel, GanSettings, GanTraining};
use hwrun::training::threads;
use hwrun::training::{
    DomainData, IndexStream, InputFormat, Normalisation, OptimizerSettings, StepProgress,
    TrainingMethod,
};
use rand::{Rng, SeedableRng};
use tch::Device;

const BATCH: usize = 128;
const IMAGES: usize = 512;
const WARMUP: usize = 2;

fn training() -> GanTraining {
    tch::manual_seed(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let images: Vec<u8> = (0..IMAGES * 3 * 64 * 64).map(|_| rng.random()).collect();
    let dataset = Dataset::new(
        images,
        [IMAGES, 3, 64, 64],
        vec![-1; IMAGES],
        Vec::new(),
        "random",
    )
    .expect("valid dataset");
    let config = GanConfig {
        preset: GanPreset::Dcgan,
        loss: GanLoss::Dcgan,
        image_size: 64,
        channels: 3,
        z_dim: 100,
        ngf: 64,
        ndf: 64,
        spectral_norm: false,
        classes: 0,
    };
    let model = GanModel::new(config, Device::Cpu).expect("model builds");
    let norm = Normalisation {
        domain: "random".into(),
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
    };
    let data = DomainData::new(
        &dataset,
        &norm,
        InputFormat {
            channels: 3,
            image_size: 64,
        },
        Device::Cpu,
    )
    .expect("data converts");
    let adam = OptimizerSettings::adam(2e-4, [0.5, 0.999]);
    let settings = GanSettings {
        loss: GanLoss::Dcgan,
        n_critic: 1,
        gp_lambda: 10.0,
        label_smoothing: 0.0,
        generator: adam,
        discriminator: adam,
    };
    GanTraining::new(
        model,
        settings,
        data,
        IndexStream::new(IMAGES, BATCH, 1, Device::Cpu),
    )
}

fn hwrun_steps_per_sec(steps: usize) -> f64 {
    let mut training = training();
    let at = StepProgress {
        epoch: 1,
        step: 1,
        p: 0.5,
    };
    for _ in 0..WARMUP {
        training.step(at).expect("step runs");
    }
    let start = Instant::now();
    for i in 0..steps {
        let scalars = training.step(at).expect("step runs");
        assert!(scalars[0].1.is_finite(), "loss diverged at step {i}");
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn pytorch_steps_per_sec(steps: usize, threads: usize) -> Option<f64> {
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|venv| std::path::PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/gan_step.py");
    let output = Command::new(&python)
        .args([
            script,
            "--threads",
            &threads.to_string(),
            "--steps",
            &steps.to_string(),
            "--warmup",
            &WARMUP.to_string(),
        ])
        .output()
        .ok()?;
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
        .unwrap_or(5);
    threads::use_physical_cores();
    let threads = tch::get_num_threads() as usize;
    println!("gan_step: DCGAN 64x64, batch {BATCH}, z 100, ngf = ndf = 64, Adam, {threads} threads, {steps} steps");
    let hwrun = hwrun_steps_per_sec(steps);
    println!("  hwrun (tch)     {hwrun:8.3} steps/s");
    match pytorch_steps_per_sec(steps, threads) {
        Some(pytorch) => {
            println!("  PyTorch Python  {pytorch:8.3} steps/s");
            println!(
                "  ratio hwrun / PyTorch = {:.3}x (goal >= 1.0x)",
                hwrun / pytorch
            );
        }
        None => println!("  PyTorch reference unavailable (set VIRTUAL_ENV to the torch venv)"),
    }
}
