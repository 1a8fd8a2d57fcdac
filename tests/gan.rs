//! GANs end to end through the binary: a tiny ACGAN `train_gan` on synthetic MNIST-M digits,
//! `sample` twice with different chunk sizes (the images must not change), the report, and a
//! rerun that is fully cached.

use crate::common;

use std::path::{Path, PathBuf};

use common::project::{stage, Project};

const RECIPE: &str = r#"
name = "gan"
seed = 3

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 160
n_val = 10

[stages.gan]
kind = "train_gan"
inputs = { train = "digits.train" }
loss = "acgan"
model = { image_size = 28, z_dim = 16, ngf = 8, ndf = 8 }
epochs = 2
batch_size = 32

[stages.samples]
kind = "sample"
inputs = { model = "gan" }
per_class = 12
batch_size = 50

[stages.samples_again]
kind = "sample"
inputs = { model = "gan" }
per_class = 12
batch_size = 7

[stages.report]
kind = "report"
title = "tiny GAN"
inputs = { gan = "gan", samples = "samples" }
"#;

fn output(summary: &serde_json::Value, name: &str) -> PathBuf {
    PathBuf::from(stage(summary, name)["output"].as_str().unwrap())
}

fn png(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
    bytes
}

#[test]
fn train_sample_report_and_rerun_cached() {
    let project = Project::new();
    let recipe = project.write("gan.toml", RECIPE);
    let args = ["--device", "cpu", recipe.to_str().unwrap()];
    let summary = project.run_json_ok(&args);

    let gan = output(&summary, "gan");
    for file in [
        "progress/epoch_001.png",
        "progress/epoch_002.png",
        "progress_strip.png",
        "d_outputs.png",
    ] {
        png(&gan.join(file));
    }
    let meta = std::fs::read_to_string(gan.join("model.json")).unwrap();
    assert!(
        meta.contains("\"family\": \"gan\"") && meta.contains("\"loss\": \"acgan\""),
        "{meta}"
    );
    let history = std::fs::read_to_string(gan.join("history.json")).unwrap();
    for key in ["g_loss", "d_loss", "d_real", "d_fake", "class_acc"] {
        assert!(history.contains(key), "{key} missing from {history}");
    }

    let (samples, again) = (
        output(&summary, "samples"),
        output(&summary, "samples_again"),
    );
    png(&samples.join("grid.png"));
    for class in 0..10 {
        for index in [0, 11] {
            let name = format!("images/{class}_{index:03}.png");
            assert_eq!(
                png(&samples.join(&name)),
                png(&again.join(&name)),
                "{name} depends on the chunk size"
            );
        }
    }
    assert!(!samples.join("images/0_012.png").exists());
    assert!(
        samples.join("dataset").is_dir(),
        "the samples are also a dataset"
    );

    let report = output(&summary, "report");
    let markdown = std::fs::read_to_string(report.join("report.md")).unwrap();
    for figure in [
        "gan-progress_epoch_002.png",
        "gan-progress_strip.png",
        "gan-d_outputs.png",
        "samples-grid.png",
        "gan-loss.png",
        "gan-accuracy.png",
    ] {
        png(&report.join("figures").join(figure));
        assert!(
            markdown.contains(&format!("figures/{figure}")),
            "report.md does not show {figure}:\n{markdown}"
        );
    }
    assert!(markdown.contains("progress"), "{markdown}");

    let rerun = project.run_json_ok(&args);
    assert!(
        rerun["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["result"] == "cached"),
        "{rerun}"
    );
}
