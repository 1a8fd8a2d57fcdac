//! Diffusion throughput, hwrun against PyTorch Python (`benches/diffusion.py`) at the same thread
//! count: a ContextUnet DDPM training step (n_feat 128, batch 256, 3x28x28, Adam; hwrun's real
//! `DdpmTraining::step`: batch gather and scaling, t / noise / class-drop draws, forward,
//! MSE, backward, Adam step, loss read-back) and one forward pass of the course's face UNet
//! at 256x256 (full size, random weights). Prints the rates and their ratios (goal >= 1.0x).
//!
//! `HWRUN_BENCH_STEPS` sets the timed training steps (default 5), `HWRUN_BENCH_FACE_ITERS` the
//! timed face UNet passes (default 1).

use std::process::Command;
use std::time::Instant;

use hwrun::data::Dataset;
use hwrun::diffusion::NoiseSchedule;
use hwrun::models::{ContextUnetConfig, FaceUnet, FaceUnetConfig};
use hwrun::training::batches::IndexStream;
use hwrun::training::ddpm::{symmetric_normalisation, DdpmModel, DdpmTraining};
use hwrun::training::threads;
use hwrun::training::{DomainData, InputFormat, OptimizerSettings, StepProgress, TrainingMethod};
use rand::{Rng, SeedableRng};
use tch::{nn, Device, Kind, Tensor};

const BATCH: usize = 256;
const IMAGES: usize = 4096;
const WARMUP: usize = 2;

fn training() -> DdpmTraining {
    tch::manual_seed(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let images: Vec<u8> = (0..IMAGES * 3 * 28 * 28).map(|_| rng.random()).collect();
    let labels: Vec<i64> = (0..IMAGES).map(|_| rng.random_range(0..10)).collect();
    let dataset = Dataset::new(
        images,
        [IMAGES, 3, 28, 28],
        labels,
        Dataset::digit_classes(),
        "random",
    )
    .expect("valid dataset");
    let config = ContextUnetConfig {
        channels: 3,
        n_feat: 128,
        image_size: 28,
        classes: 10,
    };
    let format = InputFormat {
        channels: 3,
        image_size: 28,
    };
    let data = DomainData::new(
        &dataset,
        &symmetric_normalisation("random", 3),
        format,
        Device::Cpu,
    )
    .expect("data converts");
    let model = DdpmModel::new(config, None, Device::Cpu).expect("model builds");
    let order = IndexStream::new(IMAGES, BATCH, 1, Device::Cpu);
    DdpmTraining::new(
        model,
        OptimizerSettings::adam(1e-4, [0.9, 0.999]),
        data,
        order,
        NoiseSchedule::linear(400, 1e-4, 0.02),
        0.1,
        2.0,
        0,
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
    for _ in 0..steps {
        let scalars = training.step(at).expect("step runs");
        assert!(scalars[0].1.is_finite());
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn hwrun_face_seconds(iterations: usize) -> f64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let unet = FaceUnet::new(&vs.root(), FaceUnetConfig::COURSE).expect("model builds");
    let x = Tensor::randn([1, 3, 256, 256], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[981.0f32]);
    tch::no_grad(|| {
        let start = Instant::now();
        for _ in 0..iterations {
            let _ = unet.forward(&x, &t);
        }
        start.elapsed().as_secs_f64() / iterations as f64
    })
}

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (steps, face_iters) = (
        env("HWRUN_BENCH_STEPS", 5),
        env("HWRUN_BENCH_FACE_ITERS", 1),
    );
    threads::use_physical_cores();
    let threads = tch::get_num_threads() as usize;
    println!("diffusion: ContextUnet n_feat 128 step at batch {BATCH} ({steps} steps), face UNet 256x256 forward ({face_iters}x), {threads} threads");
    let hwrun_rate = hwrun_steps_per_sec(steps);
    let hwrun_face = hwrun_face_seconds(face_iters);
    println!(
        "  hwrun (tch)     {hwrun_rate:8.3} ContextUnet steps/s, face UNet {hwrun_face:7.2} s/pass"
    );
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/diffusion.py");
    let output = Command::new(&python)
        .args([
            script,
            "--threads",
            &threads.to_string(),
            "--steps",
            &steps.to_string(),
            "--warmup",
            &WARMUP.to_string(),
            "--face-iters",
            &face_iters.to_string(),
        ])
        .output();
    let report = output
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    match report {
        Some(report) => {
            let rate = report["ctx_steps_per_sec"].as_f64().unwrap_or(f64::NAN);
            let face = report["face_seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  PyTorch Python  {rate:8.3} ContextUnet steps/s, face UNet {face:7.2} s/pass"
            );
            println!("  ratio hwrun / PyTorch: ContextUnet step {:.3}x, face UNet forward {:.3}x (goal >= 1.0x)", hwrun_rate / rate, face / hwrun_face);
        }
        None => println!("  PyTorch reference unavailable (set VIRTUAL_ENV to the torch venv)"),
    }
}
