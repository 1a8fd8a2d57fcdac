//! `make bench`'s model table: every model family's training step (or forward pass) through
//! hwrun's real code, in fp32 and under bf16 autocast, against PyTorch eager fp32 and PyTorch's
//! best CPU configuration (bf16 autocast + channels-last + fused Adam + inference mode;
//! `benches/models.py`), all measured in this one run at the same thread count, plus the
//! machine's GEMM peak.
//!
//! hwrun's columns run what the stages run: the training methods' `step` (batch gather, input
//! scaling, forwards, losses, backwards, fused Adam, scalars read back) with weights laid out
//! channels-last by the optimizer, inside the autocast scope the training loop opens for
//! `precision = "bf16"`; sampling and features in inference mode. Rows:
//!
//! - GEMM: a 2048x2048 matmul (its rate is the machine's peak, against which the last column
//!   sets every row's achieved GFLOP/s: the matmul and convolution work of one step, counted by
//!   PyTorch's FLOP counter on the same model, over hwrun's faster time);
//! - DANN CNN step, batch 128 per domain, 3x28x28, Adam 1e-3;
//! - DCGAN 64x64 step, batch 128 (the tutorial's G and D, Adam 2e-4 betas (0.5, 0.999));
//! - WGAN-GP step at 64x64, batch 64: 5 critic updates with the gradient penalty + 1 generator
//!   update;
//! - ContextUnet DDPM step, n_feat 128, batch 256, 28x28;
//! - the course's face UNet, one forward pass at 256x256;
//! - FID features (2048-d) of `HWRUN_BENCH_FID_IMAGES` (default 200) random 64x64 images in
//!   batches of 50 (fp32 on both sides: FID numbers must match pytorch-fid's; hwrun's bf16
//!   column is empty).
//!
//! Times are milliseconds per step (lower is better); the ratio is the faster of PyTorch's two
//! configurations over the faster of hwrun's two (above 1 = hwrun faster): on a CPU without AMX
//! bf16 autocast can be slower than fp32 on both sides. On a CPU without AVX-512, where libtorch
//! emulates bf16 in reference kernels ([`cpu_has_fast_bf16`]), the bf16 cells are left out: hwrun's
//! bf16 column is empty and PyTorch's best configuration keeps fp32. `HWRUN_BENCH_STEPS` multiplies the timed steps.
//! `HWRUN_BENCH_ROWS` (comma-separated row names) limits the table to some rows. Every cell, hwrun's
//! as PyTorch's, runs in a fresh process of its own, so no cell inherits another's allocator state
//! or warm caches.
//! With CUDA, a second table measures the same rows on the GPU (PyTorch with `--device cuda`,
//! cuDNN benchmark mode on both sides); without it the GPU table is skipped with a note.

use std::process::Command;
use std::time::Instant;

use hwrun::accel::{cpu_has_fast_bf16, has_fast_bf16, inference, Precision};
use hwrun::data::Dataset;
use hwrun::diffusion::NoiseSchedule;
use hwrun::models::inception::{expected_entries, FidInception};
use hwrun::models::{
    Arch, ContextUnetConfig, DigitCnnConfig, FaceUnet, FaceUnetConfig, GanConfig, GanLoss,
    GanPreset,
};
use hwrun::training::dann::{DannForward, DannModel, DannPasses, DannTraining};
use hwrun::training::ddpm::{symmetric_normalisation, DdpmModel, DdpmTraining};
use hwrun::training::gan::{GanModel, GanSettings, GanTraining};
use hwrun::training::schedule::LAMBDA_GAMMA;
use hwrun::training::AdaptationData;
use hwrun::training::{
    threads, DeviceDataset, IndexStream, InputFormat, Normalisation, OptimizerSettings,
    StepProgress, TrainingMethod,
};
use rand::{Rng, SeedableRng};
use tch::{nn, Device, Kind, Tensor};

const GEMM_N: i64 = 2048;
const AT: StepProgress = StepProgress {
    epoch: 1,
    step: 1,
    p: 0.5,
};

/// Timed steps and warm-up steps of one row.
#[derive(Clone, Copy)]
struct Steps {
    timed: usize,
    warmup: usize,
}

/// Waits for the device's queued kernels (CUDA runs them asynchronously).
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Mean milliseconds per call of `step` on `device` after the warm-up.
fn time_ms(device: Device, steps: Steps, mut step: impl FnMut()) -> f64 {
    for _ in 0..steps.warmup {
        step();
    }
    synchronize(device);
    let start = Instant::now();
    for _ in 0..steps.timed {
        step();
    }
    synchronize(device);
    start.elapsed().as_secs_f64() * 1e3 / steps.timed as f64
}

/// A training method's step as the training loop takes it at `precision`.
fn training_ms(
    method: &mut dyn TrainingMethod,
    precision: Precision,
    device: Device,
    steps: Steps,
) -> f64 {
    time_ms(device, steps, || {
        let _autocast = precision.autocast(device).expect("autocast");
        let scalars = method.step(AT).expect("step runs");
        assert!(scalars.iter().all(|(_, v)| v.is_finite()), "{scalars:?}");
    })
}

/// One PyTorch cell: milliseconds per step and, from the eager run, the step's GFLOP.
struct PytorchCell {
    ms: f64,
    gflop: Option<f64>,
}

/// `benches/models.py ROW CONFIG`'s cell, or `None` with the reason on stderr.
fn pytorch_cell(
    row: &str,
    config: &str,
    device: Device,
    threads: i32,
    steps: Steps,
    images: usize,
) -> Option<PytorchCell> {
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|venv| std::path::PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/models.py");
    let output = Command::new(&python)
        .args([script, row, config, "--threads", &threads.to_string()])
        .args(["--device", if device.is_cuda() { "cuda" } else { "cpu" }])
        .args([
            "--steps",
            &steps.timed.to_string(),
            "--warmup",
            &steps.warmup.to_string(),
        ])
        .args(["--images", &images.to_string()])
        .output();
    match output {
        Ok(o) if o.status.success() => {
            let json = serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()?;
            Some(PytorchCell {
                ms: json["ms"].as_f64()?,
                gflop: json["gflop"].as_f64(),
            })
        }
        Ok(o) => {
            eprintln!(
                "PyTorch {row} {config} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!(
                "cannot run {}: {e} (set VIRTUAL_ENV to the torch venv)",
                python.display()
            );
            None
        }
    }
}

fn random_dataset(n: usize, size: usize, classes: bool, seed: u64) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let images: Vec<u8> = (0..n * 3 * size * size).map(|_| rng.random()).collect();
    let (labels, names) = if classes {
        (
            (0..n).map(|_| rng.random_range(0..10)).collect(),
            Dataset::digit_classes(),
        )
    } else {
        (vec![-1; n], Vec::new())
    };
    Dataset::new(images, [n, 3, size, size], labels, names, "random").expect("valid dataset")
}

fn device_dataset(
    dataset: &Dataset,
    norm: &Normalisation,
    size: i64,
    device: Device,
) -> DeviceDataset {
    DeviceDataset::new(
        dataset,
        norm,
        InputFormat {
            channels: 3,
            image_size: size,
        },
        device,
    )
    .expect("data converts")
}

fn dann(device: Device) -> DannTraining {
    tch::manual_seed(0);
    let config = DigitCnnConfig {
        arch: Arch::Mnist,
        channels: 3,
        image_size: 28,
        classes: 10,
    };
    let vs = nn::VarStore::new(device);
    let model = DannModel::new(&vs.root(), config).expect("model builds");
    let (n, batch) = (4096, 128);
    let domain = |seed| {
        let dataset = random_dataset(n, 28, true, seed);
        device_dataset(&dataset, &Normalisation::of(&dataset), 28, device)
    };
    let data = AdaptationData {
        source: domain(1),
        target: domain(2),
        source_order: IndexStream::new(n, batch, 1, device),
        target_order: IndexStream::new(n, batch, 2, device),
    };
    DannTraining::new(
        vs,
        model,
        OptimizerSettings::adam(1e-3, [0.9, 0.999]),
        (
            LAMBDA_GAMMA,
            DannPasses {
                forward: DannForward::PerDomain,
                target_through_label_head: false,
                target_information_weight: 0.0,
            },
        ),
        data,
        None,
    )
}

fn gan(loss: GanLoss, device: Device) -> GanTraining {
    tch::manual_seed(0);
    let (n, batch) = (512, if loss == GanLoss::WganGp { 64 } else { 128 });
    let config = GanConfig {
        preset: GanPreset::Dcgan,
        loss,
        image_size: 64,
        channels: 3,
        z_dim: 100,
        ngf: 64,
        ndf: 64,
        spectral_norm: false,
        classes: 0,
    };
    let model = GanModel::new(config, device).expect("model builds");
    let norm = Normalisation {
        domain: "random".into(),
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
    };
    let data = device_dataset(&random_dataset(n, 64, false, 1), &norm, 64, device);
    let adam = match loss {
        GanLoss::WganGp => OptimizerSettings::adam(1e-4, [0.0, 0.9]),
        _ => OptimizerSettings::adam(2e-4, [0.5, 0.999]),
    };
    let settings = GanSettings {
        loss,
        n_critic: 5,
        gp_lambda: 10.0,
        label_smoothing: 0.0,
        generator: adam,
        discriminator: adam,
    };
    GanTraining::new(model, settings, data, IndexStream::new(n, batch, 1, device))
}

fn ddpm(device: Device) -> DdpmTraining {
    tch::manual_seed(0);
    let (n, batch) = (4096, 256);
    let config = ContextUnetConfig {
        channels: 3,
        n_feat: 128,
        image_size: 28,
        classes: 10,
    };
    let data = device_dataset(
        &random_dataset(n, 28, true, 1),
        &symmetric_normalisation("random", 3),
        28,
        device,
    );
    let model = DdpmModel::new(config, None, device).expect("model builds");
    DdpmTraining::new(
        model,
        OptimizerSettings::adam(1e-4, [0.9, 0.999]),
        data,
        IndexStream::new(n, batch, 1, device),
        NoiseSchedule::linear(400, 1e-4, 0.02),
        0.1,
        2.0,
        0,
    )
}

fn face_unet_ms(precision: Precision, device: Device, steps: Steps) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let unet = FaceUnet::new(&vs.root(), FaceUnetConfig::COURSE).expect("model builds");
    hwrun::accel::memory_format::vars_to_channels_last(&vs).expect("channels-last");
    let x = Tensor::randn([1, 3, 256, 256], (Kind::Float, device));
    let t = Tensor::from_slice(&[981.0f32]).to_device(device);
    time_ms(device, steps, || {
        let _autocast = precision.autocast(device).expect("autocast");
        let _ = inference(|| unet.forward(&x, &t).sum(Kind::Float).double_value(&[]));
    })
}

/// hwrun's FID features of `images` random images, with random weights of the right shapes.
fn fid_ms(images: usize, device: Device, steps: Steps) -> f64 {
    tch::manual_seed(0);
    // Random weights of the right names and shapes (positive variances for the batch norms).
    let weights = expected_entries()
        .into_iter()
        .map(|(name, shape)| {
            let t = Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu));
            let t = if name.ends_with("running_var") || name.ends_with("bn.weight") {
                t + 0.5
            } else {
                (t - 0.5) * 0.1
            };
            (name, t)
        })
        .collect();
    let model =
        FidInception::from_tensors(weights, "random weights", device).expect("model builds");
    let data = Tensor::randint(256, [images as i64, 3, 64, 64], (Kind::Uint8, device));
    time_ms(device, steps, || {
        for start in (0..images as i64).step_by(50) {
            let batch = data.narrow(0, start, 50.min(images as i64 - start));
            let _ = model.fid_features(&batch, 2048).expect("features");
        }
    })
}

fn gemm_ms(kind: Kind, device: Device, steps: Steps) -> f64 {
    tch::manual_seed(0);
    let a = Tensor::randn([GEMM_N, GEMM_N], (Kind::Float, device)).to_kind(kind);
    let b = Tensor::randn([GEMM_N, GEMM_N], (Kind::Float, device)).to_kind(kind);
    time_ms(device, steps, || {
        let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]);
    })
}

struct Row {
    name: String,
    hwrun_fp32: f64,
    hwrun_bf16: Option<f64>,
    pytorch_eager: Option<f64>,
    pytorch_best: Option<f64>,
    /// The floating-point work of one step (PyTorch's FLOP counter on the same model).
    gflop: Option<f64>,
}

/// The faster of two times, either of which may be missing.
fn fastest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.into_iter().chain(b).reduce(f64::min)
}

impl Row {
    fn hwrun_best(&self) -> f64 {
        self.hwrun_bf16
            .map_or(self.hwrun_fp32, |bf16| bf16.min(self.hwrun_fp32))
    }

    fn hwrun_best_is_bf16(&self) -> bool {
        self.hwrun_bf16.is_some_and(|bf16| bf16 < self.hwrun_fp32)
    }

    /// hwrun's achieved rate at its faster precision.
    fn hwrun_gflops(&self) -> Option<f64> {
        self.gflop.map(|gflop| gflop / (self.hwrun_best() * 1e-3))
    }

    /// PyTorch's faster configuration: its "best" one is not faster on every CPU (bf16 needs
    /// AMX or large GEMMs to beat fp32).
    fn pytorch_fastest(&self) -> Option<f64> {
        fastest(self.pytorch_eager, self.pytorch_best)
    }
}

fn device_name(device: Device) -> &'static str {
    if device.is_cuda() {
        "CUDA"
    } else {
        "CPU"
    }
}

/// The GEMM row's rates, fp32 and bf16: the machine's peak for the other rows' GFLOP/s.
struct GemmPeak {
    fp32: f64,
    bf16: Option<f64>,
}

impl GemmPeak {
    fn of(rows: &[Row]) -> Option<GemmPeak> {
        let gemm = rows.iter().find(|r| r.name.starts_with("GEMM"))?;
        let rate = |ms: f64| 2.0 * (GEMM_N as f64).powi(3) / (ms * 1e-3) / 1e9;
        Some(GemmPeak {
            fp32: rate(gemm.hwrun_fp32),
            bf16: gemm.hwrun_bf16.map(rate),
        })
    }

    /// The peak of the precision `row` ran fastest at.
    fn for_row(&self, row: &Row) -> f64 {
        match self.bf16 {
            Some(bf16) if row.hwrun_best_is_bf16() => bf16,
            _ => self.fp32,
        }
    }
}

fn print_table(rows: &[Row], threads: i32, device: Device) {
    let cell = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"));
    let on = device_name(device);
    let peak = GemmPeak::of(rows);
    println!("\n{on}: ms per step ({threads} CPU threads; lower is better)\n");
    println!("| row | hwrun fp32 | hwrun bf16 | PyTorch eager fp32 | PyTorch best {on} config | PyTorch's faster / hwrun's faster | hwrun GFLOP/s (of GEMM peak) |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        let ratio = row.pytorch_fastest().map_or_else(
            || "n/a".to_owned(),
            |p| format!("**{:.2}x**", p / row.hwrun_best()),
        );
        let rate = match (row.hwrun_gflops(), &peak) {
            (Some(rate), Some(peak)) => {
                format!("{rate:.0} ({:.0} %)", 100.0 * rate / peak.for_row(row))
            }
            (Some(rate), None) => format!("{rate:.0}"),
            (None, _) => "n/a".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {ratio} | {rate} |",
            row.name,
            cell(Some(row.hwrun_fp32)),
            cell(row.hwrun_bf16),
            cell(row.pytorch_eager),
            cell(row.pytorch_best),
        );
    }
    if let Some(peak) = peak {
        let bf16 = peak
            .bf16
            .map_or_else(|| "n/a".to_owned(), |rate| format!("{rate:.0} GFLOP/s"));
        println!(
            "\nGEMM peak (hwrun, {on}): fp32 {:.0} GFLOP/s, bf16 {bf16}; a row's GFLOP/s is its \
             matmul and convolution work (PyTorch's FLOP counter on the same step) over hwrun's \
             faster time",
            peak.fp32
        );
    }
}

/// What to measure: the rows, the step multiplier and the FID image count.
struct Selection {
    rows: Option<Vec<String>>,
    scale: usize,
    images: usize,
}

impl Selection {
    fn from_env() -> Selection {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default)
        };
        Selection {
            rows: std::env::var("HWRUN_BENCH_ROWS")
                .ok()
                .map(|rows| rows.split(',').map(str::to_owned).collect()),
            scale: number("HWRUN_BENCH_STEPS", 1),
            images: number("HWRUN_BENCH_FID_IMAGES", 200),
        }
    }

    fn wants(&self, row: &str) -> bool {
        self.rows
            .as_ref()
            .is_none_or(|rows| rows.iter().any(|r| r == row))
    }

    fn steps(&self, timed: usize, warmup: usize) -> Steps {
        Steps {
            timed: timed * self.scale,
            warmup,
        }
    }
}

/// A row of the table: its key (`HWRUN_BENCH_ROWS`, `benches/models.py`'s row argument), its
/// label, its timed and warm-up steps, and whether hwrun has a bf16 column.
struct RowSpec {
    key: &'static str,
    label: &'static str,
    timed: usize,
    warmup: usize,
    bf16: bool,
}

const ROWS: [RowSpec; 7] = [
    RowSpec {
        key: "gemm",
        label: "GEMM 2048x2048",
        timed: 10,
        warmup: 2,
        bf16: true,
    },
    RowSpec {
        key: "dann",
        label: "DANN CNN step, batch 128 per domain",
        timed: 20,
        warmup: 3,
        bf16: true,
    },
    RowSpec {
        key: "dcgan",
        label: "DCGAN 64x64 step, batch 128",
        timed: 3,
        warmup: 2,
        bf16: true,
    },
    RowSpec {
        key: "wgan_gp",
        label: "WGAN-GP step (5 critic + 1 G), 64x64, batch 64",
        timed: 4,
        warmup: 1,
        bf16: true,
    },
    RowSpec {
        key: "ddpm",
        label: "ContextUnet DDPM step, n_feat 128, batch 256",
        timed: 3,
        warmup: 2,
        bf16: true,
    },
    RowSpec {
        key: "face_unet",
        label: "face UNet forward, 256x256",
        timed: 1,
        warmup: 1,
        bf16: true,
    },
    RowSpec {
        key: "fid",
        label: "FID features of {images} images",
        timed: 1,
        warmup: 1,
        bf16: false,
    },
];

/// One cell of hwrun's columns, measured in a child process of its own
/// ([`CELL_VARIABLE`]), as each of PyTorch's cells is: no cell inherits another's allocator
/// state, thread pool or warm caches.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cell {
    row: String,
    precision: Precision,
    cuda: bool,
    timed: usize,
    warmup: usize,
    images: usize,
}

/// Set (to a JSON [`Cell`]) in the child that measures one cell.
const CELL_VARIABLE: &str = "HWRUN_BENCH_CELL";

impl Cell {
    fn device(&self) -> Device {
        if self.cuda {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }

    /// The cell's milliseconds, in this process.
    fn measure(&self) -> f64 {
        let (device, precision) = (self.device(), self.precision);
        let steps = Steps {
            timed: self.timed,
            warmup: self.warmup,
        };
        let train = |method: &mut dyn TrainingMethod| training_ms(method, precision, device, steps);
        match self.row.as_str() {
            "gemm" => {
                let kind = match precision {
                    Precision::Fp32 => Kind::Float,
                    Precision::Bf16 => Kind::BFloat16,
                };
                gemm_ms(kind, device, steps)
            }
            "dann" => train(&mut dann(device)),
            "dcgan" => train(&mut gan(GanLoss::Dcgan, device)),
            "wgan_gp" => train(&mut gan(GanLoss::WganGp, device)),
            "ddpm" => train(&mut ddpm(device)),
            "face_unet" => face_unet_ms(precision, device, steps),
            "fid" => fid_ms(self.images, device, steps),
            other => panic!("no bench row {other}"),
        }
    }

    /// The cell's milliseconds, measured by a child process running this bench binary.
    fn measure_in_child(&self) -> Option<f64> {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let spec = serde_json::to_string(self).expect("cell serialises");
        let output = Command::new(exe).env(CELL_VARIABLE, spec).output();
        match output {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().parse().ok(),
            Ok(o) => {
                eprintln!(
                    "hwrun {} {:?} failed: {}",
                    self.row,
                    self.precision,
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("cannot start the bench binary for a cell: {e}");
                None
            }
        }
    }
}

/// Every selected row on `device`, hwrun's columns and PyTorch's, each cell in its own process.
fn measure(device: Device, threads: i32, selection: &Selection) -> Vec<Row> {
    let images = selection.images;
    let mut rows = Vec::new();
    for spec in ROWS.iter().filter(|spec| selection.wants(spec.key)) {
        let steps = selection.steps(spec.timed, spec.warmup);
        let hwrun = |precision| {
            Cell {
                row: spec.key.to_owned(),
                precision,
                cuda: device.is_cuda(),
                timed: steps.timed,
                warmup: steps.warmup,
                images,
            }
            .measure_in_child()
        };
        let Some(fp32) = hwrun(Precision::Fp32) else {
            continue;
        };
        let bf16 = if spec.bf16 && has_fast_bf16(device) {
            hwrun(Precision::Bf16)
        } else {
            None
        };
        let name = spec.label.replace("{images}", &images.to_string());
        let pytorch_eager = pytorch_cell(spec.key, "eager", device, threads, steps, images);
        let pytorch_best = pytorch_cell(spec.key, "best", device, threads, steps, images);
        println!("  {name} measured");
        rows.push(Row {
            name,
            hwrun_fp32: fp32,
            hwrun_bf16: bf16,
            gflop: pytorch_eager.as_ref().and_then(|cell| cell.gflop),
            pytorch_eager: pytorch_eager.map(|cell| cell.ms),
            pytorch_best: pytorch_best.map(|cell| cell.ms),
        });
    }
    rows
}

fn main() {
    threads::use_physical_cores();
    if let Ok(spec) = std::env::var(CELL_VARIABLE) {
        let cell: Cell = serde_json::from_str(&spec).expect("a JSON cell");
        if cell.cuda {
            // The training stages' CUDA setting (hwrun-torch's worker turns it on the same way).
            hwrun::accel::set_cudnn_benchmark(true).expect("cuDNN benchmark mode");
        }
        println!("{}", cell.measure());
        return;
    }
    let selection = Selection::from_env();
    let threads = tch::get_num_threads();
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    } else {
        println!("(no CUDA device: the GPU table is skipped)");
    }
    if !cpu_has_fast_bf16() {
        println!(
            "(no AVX-512 on this CPU: libtorch emulates bf16, so the CPU table has no hwrun bf16 \
             column and PyTorch's best configuration is fp32 channels-last + fused Adam)"
        );
    }
    for device in devices {
        println!(
            "models: hwrun vs PyTorch, {threads} threads, {}",
            device_name(device)
        );
        let rows = measure(device, threads, &selection);
        print_table(&rows, threads, device);
    }
}
