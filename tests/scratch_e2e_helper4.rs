// TEMPORARY (helper 4): end-to-end quality check on generated digits; deleted before hand-off.
use std::collections::BTreeMap;
use camino::{Utf8Path, Utf8PathBuf};
use hwrun::data::synthetic::{generate, DigitDomain};
use hwrun::stages::{InputArtifact, Stage, StageContext};
use hwrun::stages::{evaluate::EvaluateStage, features::FeaturesStage, train_adda::TrainAddaStage, train_classifier::TrainClassifierStage, train_dann::TrainDannStage};

fn art(dir: Utf8PathBuf) -> InputArtifact {
    InputArtifact { dir, stage: "x".into(), kind: "x".into(), params: serde_json::Value::Null, outcome: Default::default() }
}
fn run<S: Stage>(root: &Utf8Path, out: &str, inputs: &[(&str, &str)], params: &str) -> hwrun::stages::StageOutcome {
    let inputs: BTreeMap<_, _> = inputs.iter().map(|(k, v)| (k.to_string(), art(root.join(v)))).collect();
    let mut ctx = StageContext::detached(out, root.join(out), inputs, 0);
    let t = std::time::Instant::now();
    let o = S::run(toml::from_str(params).unwrap(), &mut ctx).unwrap();
    eprintln!("{out} ({:.1}s): {:?}", t.elapsed().as_secs_f64(), o.summary);
    o
}

#[test]
fn scratch() {
    let root = Utf8PathBuf::from("/tmp/h4e2e_long");
    let _ = std::fs::remove_dir_all(&root);
    generate(DigitDomain::Mnistm, 6000, 1).save(&root.join("src")).unwrap();
    generate(DigitDomain::Mnistm, 500, 11).save(&root.join("src_val")).unwrap();
    generate(DigitDomain::Usps, 6000, 2).save(&root.join("tgt")).unwrap();
    generate(DigitDomain::Usps, 500, 12).save(&root.join("tgt_val")).unwrap();
    run::<TrainClassifierStage>(&root, "src_only", &[("train", "src"), ("val", "tgt_val")], "epochs = 8");
    run::<TrainDannStage>(&root, "dann", &[("source", "src"), ("target", "tgt"), ("val", "tgt_val")], "epochs = 8\noptimizer=\"adam\"\nlr=1e-3");
    run::<TrainDannStage>(&root, "dann_sgd", &[("source", "src"), ("target", "tgt"), ("val", "tgt_val")], "epochs = 8");
}
