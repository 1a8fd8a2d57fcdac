//! Same recipe + same seed = the same numbers: two CPU runs of `train_dann` on generated digits
//! (MNIST-M -> USPS, so the greyscale 16x16 conversion is exercised too) must write byte-identical
//! weights and histories. One test per binary, because libtorch's generator is process-global
//! and a concurrently running test would draw from it.

use std::collections::BTreeMap;

use camino::Utf8Path;

use crate::common;
use common::stage::{artifact, temp_root};
use hwrun::data::synthetic::{generate, DigitDomain};
use hwrun::stage::checked_params;
use hwrun::stage::{Stage, StageContext};
use hwrun::stages::train_dann::{TrainDannParams, TrainDannStage};

fn train(root: &Utf8Path, out: &str) -> (Vec<u8>, String, BTreeMap<String, f64>) {
    let inputs = BTreeMap::from([
        ("source".to_owned(), artifact(root.join("source"))),
        ("target".to_owned(), artifact(root.join("target"))),
    ]);
    let mut ctx = StageContext::new("dann", root.join(out), inputs, 5);
    let text = "epochs = 2\nbatch_size = 32\noptimizer = { kind = \"adam\", lr = 1e-3 }";
    let params: TrainDannParams =
        checked_params::<TrainDannStage>(&toml::from_str(text).unwrap()).unwrap();
    let outcome = TrainDannStage::run(params, &mut ctx).unwrap();
    let weights = std::fs::read(root.join(out).join("model.safetensors")).unwrap();
    let history = std::fs::read_to_string(root.join(out).join("history.json")).unwrap();
    (weights, history, outcome.metrics)
}

#[test]
fn two_cpu_runs_with_the_same_seed_are_bit_identical() {
    let (_dir, root) = temp_root();
    generate(DigitDomain::Mnistm, 160, 1)
        .save(&root.join("source"))
        .unwrap();
    generate(DigitDomain::Usps, 128, 2)
        .save(&root.join("target"))
        .unwrap();
    let first = train(&root, "a");
    let second = train(&root, "b");
    assert_eq!(first.1, second.1, "histories differ");
    assert_eq!(first.2, second.2, "metrics differ");
    assert!(first.0 == second.0, "weights differ");
}
