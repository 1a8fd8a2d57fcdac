//! hwrun's digit CNN and training steps against PyTorch: the same weights (exchanged through
//! safetensors, written by Rust, loaded with `safetensors.torch.load_file`), the same batch, one
//! step; logits, loss and every weight gradient must agree to 1e-5. The PyTorch side is
//! `tests/oracles/parity_pytorch.py`, run with the venv's python.
//!
//! The steps run through hwrun's real step functions with an SGD optimizer at learning rate 0,
//! so the weights stay put and the gradients stay readable after the step. The `dann_bn` preset
//! (batch norm, dropout) is compared in eval mode, whose output does not depend on dropout's
//! random draws, plus the running statistics one training-mode pass leaves in the batch-norm
//! layers that come before any dropout.

use crate::common;

use camino::{Utf8Path, Utf8PathBuf};
use hwrun::models::{Arch, DigitCnn, DigitCnnConfig};
use hwrun::training::checkpoint::named_variables;
use hwrun::training::classifier::supervised_step;
use hwrun::training::dann::{dann_step, DannBatch, DannForward, DannModel, DannPasses};
use hwrun::training::{Optimizer, OptimizerSettings};
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;
const ORACLE: &str = include_str!("oracles/parity_pytorch.py");

fn config() -> DigitCnnConfig {
    DigitCnnConfig {
        arch: Arch::Mnist,
        channels: 3,
        image_size: 28,
        classes: 10,
    }
}

/// Batch-norm layers whose training-mode statistics do not depend on dropout's draws.
const BN_BEFORE_DROPOUT: [&str; 2] = ["feature.bn1", "feature.bn2"];

/// An optimizer that leaves the weights alone but runs the real step code.
fn frozen_optimizer(vs: &nn::VarStore) -> Optimizer {
    Optimizer::new(OptimizerSettings::sgd(0.0, 0.0), &[vs])
}

fn workdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Writes every variable of `vs` (weights and batch-norm buffers) for the oracle to load.
fn write_weights(dir: &Utf8Path, vs: &nn::VarStore) {
    Tensor::write_safetensors(&named_variables(&[vs]), dir.join("weights.safetensors")).unwrap();
}

/// Writes `logits`, `loss`, `grad.<name>` for every trainable variable of `vs` and `extra`.
fn write_rust_side(
    dir: &Utf8Path,
    vs: &nn::VarStore,
    logits: &Tensor,
    loss: f64,
    extra: Vec<(String, Tensor)>,
) {
    let mut out: Vec<(String, Tensor)> = vec![
        ("logits".into(), logits.detach()),
        ("loss".into(), Tensor::from_slice(&[loss as f32])),
    ];
    let trainable = named_variables(&[vs])
        .into_iter()
        .filter(|(_, t)| t.requires_grad());
    out.extend(trainable.map(|(name, t)| (format!("grad.{name}"), t.grad().contiguous())));
    out.extend(extra);
    Tensor::write_safetensors(&out, dir.join("rust.safetensors")).unwrap();
}

/// Runs the oracle and checks every reported difference.
fn compare(mode: &str, dir: &Utf8Path, parameters: usize) {
    let keys: &[&str] = if mode == "bn" {
        &["logits", "loss", "grad_max", "stats"]
    } else {
        &["logits", "loss", "grad_max"]
    };
    let report = common::run_python(
        &format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}"),
        &[mode, dir.as_str()],
    );
    let diffs: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    eprintln!("{mode}: {diffs}");
    assert_eq!(
        diffs["grad_count"].as_u64(),
        Some(parameters as u64),
        "{diffs}"
    );
    for &key in keys {
        let diff = diffs[key].as_f64().unwrap();
        assert!(
            diff <= TOLERANCE,
            "{mode}: {key} differs by {diff} ({diffs})"
        );
    }
}

fn images(n: i64) -> Tensor {
    Tensor::randn([n, 3, 28, 28], (Kind::Float, Device::Cpu))
}

#[test]
fn classifier_logits_and_gradients_match_pytorch() {
    tch::manual_seed(11);
    let (_guard, dir) = workdir();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = DigitCnn::new(&vs.root(), config()).unwrap();
    let (x, y) = (
        images(16),
        Tensor::randint(10, [16], (Kind::Int64, Device::Cpu)),
    );
    Tensor::write_safetensors(
        &[("source", &x), ("labels", &y)],
        dir.join("batch.safetensors"),
    )
    .unwrap();
    write_weights(&dir, &vs);
    let logits = tch::no_grad(|| model.logits(&x, true));
    let stats = supervised_step(&model, &mut frozen_optimizer(&vs), &x, &y, 0.0).unwrap();
    write_rust_side(&dir, &vs, &logits, stats[0].1, vec![]);
    compare("classifier", &dir, vs.trainable_variables().len());
}

#[test]
fn dann_step_gradients_match_pytorch() {
    tch::manual_seed(12);
    let (_guard, dir) = workdir();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = DannModel::new(&vs.root(), config()).unwrap();
    let batch = DannBatch {
        source: images(12),
        labels: Tensor::randint(10, [12], (Kind::Int64, Device::Cpu)),
        target: images(12),
    };
    let lambda = 0.6;
    let tensors = [
        ("source", batch.source.shallow_clone()),
        ("labels", batch.labels.shallow_clone()),
        ("target", batch.target.shallow_clone()),
        ("lambda", Tensor::from_slice(&[lambda])),
    ];
    Tensor::write_safetensors(&tensors, dir.join("batch.safetensors")).unwrap();
    write_weights(&dir, &vs);
    let logits = tch::no_grad(|| model.cnn.logits(&batch.source, true));
    let stats = dann_step(
        &model,
        &mut frozen_optimizer(&vs),
        &batch,
        (
            lambda,
            DannPasses {
                forward: DannForward::Joint,
                target_through_label_head: false,
                target_information_weight: 0.0,
            },
        ),
        0.0,
    )
    .unwrap();
    write_rust_side(&dir, &vs, &logits, stats[0].1, vec![]);
    compare("dann", &dir, vs.trainable_variables().len());
}

/// Gives every batch-norm layer non-trivial affine weights and running statistics, so eval mode
/// is actually tested.
fn randomise_batch_norms(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let size = t.size();
            let noise = || Tensor::randn(size.as_slice(), (Kind::Float, Device::Cpu));
            match name.rsplit('.').next() {
                Some("running_mean") => t.copy_(&(noise() * 0.3)),
                Some("running_var") => t.copy_(&(noise().abs() + 0.5)),
                Some("num_batches_tracked") => t.copy_(&Tensor::from(3i64)),
                Some("weight") if name.contains(".bn") => t.copy_(&(noise() * 0.2 + 1.0)),
                Some("bias") if name.contains(".bn") => t.copy_(&(noise() * 0.2)),
                _ => {}
            }
        }
    });
}

#[test]
fn batch_norm_preset_matches_pytorch_in_eval_mode() {
    tch::manual_seed(13);
    let (_guard, dir) = workdir();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = DigitCnn::new(
        &vs.root(),
        DigitCnnConfig {
            arch: Arch::DannBn,
            ..config()
        },
    )
    .unwrap();
    randomise_batch_norms(&vs);
    let (x, y) = (
        images(16),
        Tensor::randint(10, [16], (Kind::Int64, Device::Cpu)),
    );
    Tensor::write_safetensors(
        &[("source", &x), ("labels", &y)],
        dir.join("batch.safetensors"),
    )
    .unwrap();
    write_weights(&dir, &vs);
    let logits = model.logits(&x, false);
    let loss = logits.cross_entropy_for_logits(&y);
    loss.backward();
    // One training-mode pass updates the running statistics (dropout only comes later).
    let _features = tch::no_grad(|| model.features(&x, true));
    let vars = vs.variables();
    let after = BN_BEFORE_DROPOUT
        .iter()
        .flat_map(|layer| {
            ["running_mean", "running_var", "num_batches_tracked"].map(|b| format!("{layer}.{b}"))
        })
        .map(|key| (format!("after.{key}"), vars[&key].copy()))
        .collect();
    write_rust_side(&dir, &vs, &logits, loss.double_value(&[]), after);
    compare("bn", &dir, vs.trainable_variables().len());
}
