// TEMPORARY diagnostic (to be deleted)
use hwrun::data::synthetic::{generate, DigitDomain};
use hwrun::models::{Arch, DigitCnnConfig};
use hwrun::training::dann::{dann_step, DannBatch, DannModel};
use hwrun::training::schedule::dann_lambda;
use hwrun::training::{DomainData, IndexStream, InputFormat, Normalisation, OptimizerKind, OptimizerSpec};
use tch::{nn, Device, Kind};

#[test]
fn diag() {
    let mode = std::env::var("DIAG").unwrap_or_default();
    let steps: usize = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(92);
    tch::manual_seed(0);
    tch::set_num_threads(2);
    let s = generate(DigitDomain::Mnistm, 3000, 1);
    let t = generate(DigitDomain::Svhn, 3000, 2);
    let f = InputFormat { channels: 3, image_size: 28 };
    let sd = DomainData::new(&s, &Normalisation::of(&s), f, Device::Cpu).unwrap();
    let td = DomainData::new(&t, &Normalisation::of(&t), f, Device::Cpu).unwrap();
    let mut so = IndexStream::new(3000, 128, 1, Device::Cpu);
    let mut to = IndexStream::new(3000, 128, 2, Device::Cpu);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = DannModel::new(&vs.root(), DigitCnnConfig { arch: Arch::Mnist, channels: 3, image_size: 28, classes: 10 }).unwrap();
    let spec = OptimizerSpec { kind: OptimizerKind::Adam, lr: 1e-3, momentum: 0.9, beta1: 0.9, weight_decay: 0.0 };
    let mut opt = spec.build(&vs).unwrap();
    for i in 0..steps {
        let p = i as f64 / steps as f64;
        let lambda = match mode.as_str() { "zero" => 0.0, _ => dann_lambda(p) };
        let si = so.next_batch();
        let ti = to.next_batch();
        let b = DannBatch { source: sd.images(&si), labels: sd.labels_at(&si), target: td.images(&ti) };
        let st = dann_step(&model, &mut opt, &b, lambda);
        if i % 4 == 0 {
            let fs = tch::no_grad(|| model.cnn.features(&b.source));
            let ft = tch::no_grad(|| model.cnn.features(&b.target));
            println!("{i:3} lam {lambda:.3} {:?} acc {:.3} |fs| {:.2} |ft| {:.2} zero_s {:.3}", st.losses.iter().map(|(_, v)| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(), st.correct / st.seen,
                fs.norm().double_value(&[]) / 128f64.sqrt(), ft.norm().double_value(&[]) / 128f64.sqrt(), fs.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]));
        }
    }
}
