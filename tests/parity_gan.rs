//! hwrun's GAN networks and losses against PyTorch (`tests/oracles/parity_gan.py`, the DCGAN tutorial's
//! networks): the same weights (hwrun's, exchanged through safetensors) and the same batch.
//!
//! - one discriminator step and one generator step of the tutorial DCGAN (64x64, narrow widths
//!   to stay fast): D outputs, the generated images, both losses and every gradient to 1e-5;
//! - the WGAN-GP gradient penalty and its gradient in the critic's weights, against
//!   `torch.autograd.grad(create_graph=True)`;
//! - spectral norm after k training-mode passes: `weight_u`, `weight_v`, sigma of every layer
//!   and the output, against `torch.nn.utils.spectral_norm`.

use crate::common;

use camino::{Utf8Path, Utf8PathBuf};
use hwrun::models::{GanConfig, GanLoss, GanPreset};
use hwrun::training::checkpoint::named_variables;
use hwrun::training::gan::{
    discriminator_loss, generator_loss, gradient_penalty, GanModel, GanSettings,
};
use hwrun::training::OptimizerSettings;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;
const ORACLE: &str = include_str!("oracles/parity_gan.py");

fn workdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn config(loss: GanLoss, image_size: i64, spectral_norm: bool) -> GanConfig {
    GanConfig {
        preset: GanPreset::Dcgan,
        loss,
        image_size,
        channels: 3,
        z_dim: 16,
        ngf: 8,
        ndf: 8,
        spectral_norm,
        classes: 0,
    }
}

fn settings(loss: GanLoss) -> GanSettings {
    let adam = OptimizerSettings::adam(2e-4, [0.5, 0.999]);
    GanSettings {
        loss,
        n_critic: 1,
        gp_lambda: 10.0,
        label_smoothing: 0.0,
        generator: adam,
        discriminator: adam,
    }
}

fn write(dir: &Utf8Path, file: &str, tensors: &[(String, Tensor)]) {
    Tensor::write_safetensors(tensors, dir.join(file)).unwrap();
}

fn weights(dir: &Utf8Path, stores: &[&nn::VarStore]) {
    write(dir, "weights.safetensors", &named_variables(stores));
}

/// Every trainable variable's gradient; one the loss does not reach (the penalty does not reach
/// the critic's last LayerNorm bias) is written as zeros, as the oracle counts it.
fn grads(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let grad = |t: &Tensor| {
        if t.grad().defined() {
            t.grad().copy()
        } else {
            t.zeros_like()
        }
    };
    named_variables(&[vs])
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (format!("grad.{n}"), grad(&t)))
        .collect()
}

fn zero_grads(vs: &nn::VarStore) {
    for (_, t) in vs.variables() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// Runs the oracle in `mode` and checks every reported difference except `grad_count`.
fn compare(mode: &str, dir: &Utf8Path, parameters: usize) {
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
    for (key, value) in diffs.as_object().unwrap() {
        if key != "grad_count" {
            let diff = value.as_f64().unwrap();
            assert!(
                diff <= TOLERANCE,
                "{mode}: {key} differs by {diff} ({diffs})"
            );
        }
    }
}

fn images(n: i64, size: i64) -> Tensor {
    Tensor::rand([n, 3, size, size], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

fn scalar(t: &Tensor) -> Tensor {
    t.detach().reshape([1])
}

#[test]
fn a_dcgan_discriminator_and_generator_step_match_the_tutorial() {
    tch::manual_seed(21);
    let (_guard, dir) = workdir();
    let model = GanModel::new(config(GanLoss::Dcgan, 64, false), Device::Cpu).unwrap();
    weights(&dir, &[&model.generator_vs, &model.discriminator_vs]);
    let b = 8;
    let (real, noise, noise2) = (
        images(b, 64),
        model.noise(b, Device::Cpu),
        model.noise(b, Device::Cpu),
    );
    let batch = [
        ("real".to_owned(), real.shallow_clone()),
        ("noise".into(), noise.shallow_clone()),
        ("noise2".into(), noise2.shallow_clone()),
    ];
    write(&dir, "batch.safetensors", &batch);
    let labels = Tensor::zeros([b], (Kind::Int64, Device::Cpu));
    let alpha = Tensor::zeros([b, 1, 1, 1], (Kind::Float, Device::Cpu));

    let fake = tch::no_grad(|| model.generator.forward_t(&noise, None, true));
    let on_real = tch::no_grad(|| model.discriminator.forward_t(&real, true).adversarial);
    let on_fake = tch::no_grad(|| model.discriminator.forward_t(&fake, true).adversarial);
    let d = discriminator_loss(
        &model,
        &settings(GanLoss::Dcgan),
        &real,
        &labels,
        &fake,
        &labels,
        &alpha,
    );
    d.loss.backward();
    let mut out = grads(&model.discriminator_vs);
    zero_grads(&model.discriminator_vs);
    let fake2 = model.generator.forward_t(&noise2, None, true);
    let g_loss = generator_loss(&model, GanLoss::Dcgan, &fake2, &labels);
    g_loss.backward();
    out.extend(grads(&model.generator_vs));
    out.extend([
        ("d_real".to_owned(), on_real),
        ("d_fake".into(), on_fake),
        ("fake".into(), fake),
        ("d_loss".into(), scalar(&d.loss)),
        ("g_loss".into(), scalar(&g_loss)),
    ]);
    write(&dir, "rust.safetensors", &out);
    let count = model.generator_vs.trainable_variables().len()
        + model.discriminator_vs.trainable_variables().len();
    compare("dcgan", &dir, count);
}

#[test]
fn the_wgan_gp_penalty_and_its_gradient_match_autograd() {
    tch::manual_seed(22);
    let (_guard, dir) = workdir();
    let model = GanModel::new(config(GanLoss::WganGp, 32, false), Device::Cpu).unwrap();
    weights(&dir, &[&model.discriminator_vs]);
    let b = 6;
    let (real, fake) = (images(b, 32), images(b, 32));
    let alpha = Tensor::rand([b, 1, 1, 1], (Kind::Float, Device::Cpu));
    write(
        &dir,
        "batch.safetensors",
        &[
            ("real".to_owned(), real.shallow_clone()),
            ("fake".into(), fake.shallow_clone()),
            ("alpha".into(), alpha.shallow_clone()),
        ],
    );
    let gp = gradient_penalty(&model.discriminator, &real, &fake, &alpha);
    gp.backward();
    let mut out = grads(&model.discriminator_vs);
    out.push(("gp".into(), scalar(&gp)));
    write(&dir, "rust.safetensors", &out);
    compare(
        "wgan",
        &dir,
        model.discriminator_vs.trainable_variables().len(),
    );
}

#[test]
fn spectral_norm_power_iterations_match_torch() {
    tch::manual_seed(23);
    let (_guard, dir) = workdir();
    let model = GanModel::new(config(GanLoss::Dcgan, 28, true), Device::Cpu).unwrap();
    weights(&dir, &[&model.discriminator_vs]);
    let k = 3;
    let real = images(4, 28);
    write(
        &dir,
        "batch.safetensors",
        &[
            ("real".to_owned(), real.shallow_clone()),
            ("k".into(), Tensor::from_slice(&[k])),
        ],
    );
    let mut last = None;
    for _ in 0..k {
        last = Some(tch::no_grad(|| {
            model.discriminator.forward_t(&real, true).adversarial
        }));
    }
    let vars = model.discriminator_vs.variables();
    let mut out = vec![("out".to_owned(), last.unwrap())];
    for index in [0, 2, 5] {
        let var = |what: &str| vars[&format!("discriminator.main.{index}.weight_{what}")].detach();
        let (w, u, v) = (var("orig"), var("u"), var("v"));
        let sigma = tch::no_grad(|| u.dot(&w.reshape([w.size()[0], -1]).mv(&v)));
        out.extend([
            (format!("u.{index}"), u),
            (format!("v.{index}"), v),
            (format!("sigma.{index}"), sigma.reshape([1])),
        ]);
    }
    write(&dir, "rust.safetensors", &out);
    compare("sn", &dir, 0);
}
