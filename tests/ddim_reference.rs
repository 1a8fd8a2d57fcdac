//! hwrun's DDIM sampler, slerp and PNG writer against PyTorch implementations of the same
//! formulas (`tests/oracles/ddim_reference.py`): with a fixed analytic noise model and the same starting
//! noise and injected noise, the full 50-step chains (both timestep conventions, eta 0 and 0.5)
//! agree to 1e-5 (relative to the outputs' magnitude when it exceeds 1); the schedule (torch's linspace and cumprod in f64) agrees exactly; slerp agrees
//! with the formula; the PNG bytes equal torchvision's `save_image`.

use crate::common;

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use hwrun::diffusion::interpolate::{alphas, slerp};
use hwrun::diffusion::{Convention, Ddim, NoiseSchedule};
use hwrun::viz::grid::save_png;
use tch::{Device, Kind, Tensor};

const ORACLE: &str = include_str!("oracles/ddim_reference.py");

fn eps_model(x: &Tensor, t: usize) -> Tensor {
    (x * 0.7 + t as f64 / 1000.0).tanh()
}

#[test]
fn ddim_chains_slerp_and_png_rounding_match_pytorch() {
    tch::manual_seed(5);
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let options = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([2, 3, 8, 8], options);
    let z = Tensor::randn([50, 2, 3, 8, 8], options);
    let (z0, z1) = (
        Tensor::randn([3, 8, 8], options),
        Tensor::randn([3, 8, 8], options),
    );
    let image = Tensor::rand([3, 5, 7], options);
    save_png(&image, &dir.join("rust.png")).unwrap();
    let inputs = [
        ("x", &x),
        ("z", &z),
        ("z0", &z0),
        ("z1", &z1),
        ("image", &image),
    ];
    Tensor::write_safetensors(&inputs, dir.join("inputs.safetensors")).unwrap();
    let printed = common::run_python(
        &format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}"),
        &[dir.as_str()],
    );
    let report: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    eprintln!("{report}");
    assert_eq!(report["png_max_diff"].as_i64(), Some(0), "{report}");
    let python: BTreeMap<String, Tensor> = Tensor::read_safetensors(dir.join("python.safetensors"))
        .unwrap()
        .into_iter()
        .collect();

    let schedule = NoiseSchedule::linear(1000, 1e-4, 2e-2);
    assert!(
        Tensor::from_slice(schedule.betas()).equal(&python["betas"]),
        "betas differ from torch.linspace"
    );
    let ab_diff = (Tensor::from_slice(schedule.alpha_bar()) - &python["alpha_bar"])
        .abs()
        .max()
        .double_value(&[]);
    assert!(ab_diff < 1e-15, "alpha_bar differs by {ab_diff}");

    for (convention, name) in [(Convention::Offset, "offset"), (Convention::Zero, "zero")] {
        let ddim = Ddim::new(&schedule, 50, convention, convention.clips_x0()).unwrap();
        for eta in [0.0, 0.5] {
            let ours = ddim
                .sample(&x, eta, eps_model, |k| z.get(k as i64))
                .unwrap();
            let theirs = &python[&format!("{name}_{eta:?}")];
            // Without the clamp the chain's values reach tens, so f32 rounding is relative.
            let scale = theirs.abs().max().double_value(&[]).max(1.0);
            let diff = (&ours - theirs).abs().max().double_value(&[]);
            eprintln!("{name} eta {eta}: max |diff| {diff:e}, max |x| {scale:.2}");
            assert!(
                diff < 1e-5 * scale,
                "{name} eta {eta}: {diff} at scale {scale}"
            );
        }
    }
    let ours = Tensor::stack(
        &alphas(11)
            .iter()
            .map(|&a| slerp(&z0, &z1, a))
            .collect::<Vec<_>>(),
        0,
    );
    let diff = (&ours - &python["slerp"]).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "slerp differs by {diff}");
}
