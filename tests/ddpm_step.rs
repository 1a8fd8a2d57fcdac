//! One DDPM training step against PyTorch (`tests/oracles/ddpm_step.py`, TeaPearce's ContextUnet written
//! from its description): the same weights, batch, timesteps, noise and class-drop mask; the
//! loss and every weight and batch-norm statistic after one Adam step agree to 1e-5.

use crate::common;

use camino::Utf8PathBuf;
use hwrun::diffusion::NoiseSchedule;
use hwrun::models::{ContextUnet, ContextUnetConfig};
use hwrun::training::checkpoint::named_variables;
use hwrun::training::ddpm::ddpm_loss;
use hwrun::training::{Optimizer, OptimizerSettings};
use tch::{nn, Device, Kind, Tensor};

const ORACLE: &str = include_str!("oracles/ddpm_step.py");

#[test]
fn one_training_step_matches_pytorch() {
    tch::manual_seed(21);
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let (n_feat, n_t, b) = (16, 50, 8);
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ContextUnetConfig {
        channels: 3,
        n_feat,
        image_size: 28,
        classes: 10,
    };
    let net = ContextUnet::new(&vs.root(), config).unwrap();
    Tensor::write_safetensors(&named_variables(&[&vs]), dir.join("weights.safetensors")).unwrap();
    let options = (Kind::Float, Device::Cpu);
    let x0 = Tensor::rand([b, 3, 28, 28], options) * 2.0 - 1.0;
    let labels = Tensor::randint(10, [b], (Kind::Int64, Device::Cpu));
    let t = Tensor::randint_low(1, n_t + 1, [b], (Kind::Int64, Device::Cpu));
    let noise = Tensor::randn([b, 3, 28, 28], options);
    let drop = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let batch = [
        ("x0", &x0),
        ("labels", &labels),
        ("t", &t),
        ("noise", &noise),
        ("drop", &drop),
    ];
    Tensor::write_safetensors(&batch, dir.join("batch.safetensors")).unwrap();

    let schedule = NoiseSchedule::linear(n_t as usize, 1e-4, 0.02);
    let mut optimizer = Optimizer::new(OptimizerSettings::adam(1e-3, [0.9, 0.999]), &[&vs]);
    let loss = ddpm_loss(&net, &schedule, &x0, &labels, &t, &noise, &drop);
    optimizer.backward_step(&loss, 0.0).unwrap();
    let mut out: Vec<(String, Tensor)> = vec![("loss".into(), loss.detach().reshape([1]))];
    out.extend(
        named_variables(&[&vs])
            .into_iter()
            .map(|(n, v)| (format!("after.{n}"), v.detach().contiguous())),
    );
    Tensor::write_safetensors(&out, dir.join("rust.safetensors")).unwrap();

    let printed = common::run_python(
        &format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}"),
        &[dir.as_str(), &n_feat.to_string(), &n_t.to_string()],
    );
    let report: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    eprintln!("{report}");
    assert_eq!(report["count"].as_u64(), Some(vs.variables().len() as u64));
    assert!(report["loss"].as_f64().unwrap() < 1e-5, "{report}");
    assert!(report["weights"].as_f64().unwrap() < 1e-5, "{report}");
}
