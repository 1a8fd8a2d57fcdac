//! `precision = "bf16"` (autocast on fp32 master weights) trains a classifier as well as fp32:
//! the same recipe, data and seed reach validation accuracies within 3 points (1,000 validation images) of each other
//! on generated MNIST-M digits, and the bf16 run really computed in bf16 (its weights differ);
//! and hwrun tells a CPU with fast bf16 kernels from one without as libtorch does.

use std::collections::BTreeMap;

use camino::Utf8Path;

use crate::common;
use common::stage::{artifact, temp_root};
use hwrun::data::synthetic::{generate, DigitDomain};
use hwrun::stage::checked_params;
use hwrun::stage::{Stage, StageContext};
use hwrun::stages::train_classifier::{TrainClassifierParams, TrainClassifierStage};

/// Validation accuracy and weights of one training at `precision`.
fn train(root: &Utf8Path, precision: &str) -> (f64, Vec<u8>) {
    let inputs = BTreeMap::from([
        ("train".to_owned(), artifact(root.join("train"))),
        ("val".to_owned(), artifact(root.join("val"))),
    ]);
    let out = root.join(precision);
    let mut ctx = StageContext::new("classifier", out.clone(), inputs, 3);
    let text = format!(
        "epochs = 4\nbatch_size = 64\nprecision = \"{precision}\"\nmodel = {{ arch = \"dann_bn\" }}\noptimizer = {{ kind = \"adam\", lr = 3e-3 }}"
    );
    let params: TrainClassifierParams =
        checked_params::<TrainClassifierStage>(&toml::from_str(&text).unwrap()).unwrap();
    let outcome = TrainClassifierStage::run(params, &mut ctx).unwrap();
    let accuracy = outcome.metrics["val_acc"];
    (
        accuracy,
        std::fs::read(out.join("model.safetensors")).unwrap(),
    )
}

#[test]
fn bf16_training_reaches_the_fp32_accuracy() {
    let (_dir, root) = temp_root();
    generate(DigitDomain::Mnistm, 3000, 1)
        .save(&root.join("train"))
        .unwrap();
    generate(DigitDomain::Mnistm, 1000, 2)
        .save(&root.join("val"))
        .unwrap();
    let (fp32, fp32_weights) = train(&root, "fp32");
    let (bf16, bf16_weights) = train(&root, "bf16");
    eprintln!("validation accuracy: fp32 {fp32:.4}, bf16 {bf16:.4}");
    assert!(fp32 > 0.7, "the fp32 run did not learn: {fp32}");
    assert!((fp32 - bf16).abs() <= 0.03, "fp32 {fp32} vs bf16 {bf16}");
    assert!(
        fp32_weights != bf16_weights,
        "the bf16 run computed in fp32"
    );
}

#[test]
fn fast_bf16_detection_agrees_with_libtorch() {
    let libtorch = common::run_python(
        "import torch; print(torch.ops.mkldnn._is_mkldnn_bf16_supported())",
        &[],
    );
    assert_eq!(
        hwrun::accel::cpu_has_fast_bf16(),
        libtorch.trim() == "True",
        "libtorch's oneDNN check says {libtorch}"
    );
}
