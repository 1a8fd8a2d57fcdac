//! The headline use, end to end through the binary: a tiny quickstart (a few hundred generated
//! images, one epoch) through every domain-adaptation stage kind, then the report's table and
//! figures; and ADDA on the same kind of data.

use crate::common;

use std::path::Path;

use common::project::{stage, Project};

/// The quickstart shrunk through `--set` on its `[defaults]`, as a user would for a smoke run.
const TINY: &[&str] = &[
    "--set",
    "defaults.synthetic.n_train=300",
    "--set",
    "defaults.synthetic.n_val=100",
    "--set",
    "defaults.train_classifier.epochs=1",
    "--set",
    "defaults.train_dann.epochs=1",
    "--set",
    "defaults.features.max_per_domain=60",
    "--set",
    "defaults.tsne.max_points=120",
    "--set",
    "defaults.tsne.iterations=250",
    "--set",
    "defaults.train_ddpm.epochs=1",
    "--set",
    "defaults.train_ddpm.n_t=20",
    "--set",
    "ddim.steps=10",
    "--set",
    "defaults.sample_diffusion.per_class=10",
];

#[test]
fn tiny_quickstart_fills_the_table_and_draws_the_figures() {
    let project = Project::new();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/quickstart.toml");
    let mut args = vec!["--device", "cpu", recipe.to_str().unwrap()];
    args.extend_from_slice(TINY);
    let summary = project.run_json_ok(&args);
    let report_dir = Path::new(stage(&summary, "report")["output"].as_str().unwrap()).to_owned();

    let markdown = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    for row in [
        "Trained on source",
        "Adaptation (DANN)",
        "Trained on target",
    ] {
        let line = markdown
            .lines()
            .find(|l| l.starts_with(&format!("| {row} |")))
            .unwrap_or_else(|| panic!("no row `{row}`:\n{markdown}"));
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .skip(1)
            .collect();
        assert_eq!(cells.len(), 2, "{line}");
        for cell in cells {
            let accuracy: f64 = cell
                .parse()
                .unwrap_or_else(|_| panic!("`{cell}` is not a number in {line}"));
            assert!((0.0..=1.0).contains(&accuracy), "{line}");
        }
    }
    assert!(
        markdown.contains("| | MNIST-M -> SVHN | MNIST-M -> USPS |"),
        "{markdown}"
    );

    for figure in [
        "tsne_svhn-tsne_by_class.png",
        "tsne_svhn-tsne_by_domain.png",
        "tsne_usps-tsne_by_class.png",
        "dann_svhn-loss.png",
        "dann_svhn-accuracy.png",
    ] {
        let path = report_dir.join("figures").join(figure);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|_| panic!("missing figure {}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            path.display()
        );
        assert!(
            markdown.contains(&format!("figures/{figure}")),
            "report.md does not show {figure}"
        );
    }
    let html = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    assert!(html.contains("<th>Adaptation (DANN)</th>") && html.contains("data:image/png;base64,"));
    assert!(
        html.contains("Total parameters"),
        "the architecture printout is in the report"
    );

    let again = project.run_json_ok(&args);
    assert!(
        again["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["result"] == "cached"),
        "{again}"
    );
}

#[test]
fn adda_trains_and_evaluates() {
    let project = Project::new();
    let recipe = project.write(
        "adda.toml",
        r#"
name = "adda"
seed = 1
[defaults.synthetic]
n_train = 200
n_val = 100
[stages.svhn]
kind = "synthetic"
domain = "svhn"
[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
[stages.adda]
kind = "train_adda"
inputs = { source = "svhn.train", target = "mnistm.train", val = "mnistm.val" }
pretrain_epochs = 1
epochs = 1
[stages.adda_on_mnistm]
kind = "evaluate"
inputs = { model = "adda", data = "mnistm.val" }
"#,
    );
    let summary = project.run_json_ok(&["--device", "cpu", recipe.to_str().unwrap()]);
    let accuracy = stage(&summary, "adda_on_mnistm")["metrics"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    let output = Path::new(stage(&summary, "adda")["output"].as_str().unwrap()).to_owned();
    for file in [
        "model.safetensors",
        "model.json",
        "history.json",
        "architecture.txt",
    ] {
        assert!(output.join(file).exists(), "ADDA wrote no {file}");
    }
}
