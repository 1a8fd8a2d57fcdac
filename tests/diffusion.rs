//! The diffusion stages end to end through the binary: a tiny conditional DDPM on synthetic
//! digits (n_feat 16, n_t 20, one epoch), sampled with and without guidance (100 images per
//! class, the grids, the reverse-process strip), the samples scored by a digit classifier with
//! `evaluate`, and DDIM (eta grid, interpolation) on the same model; then bad input, among it
//! noise `.pt` files written by `torch.save`, one of the wrong shape.

use crate::common;

use std::path::Path;

use common::project::{stage, stderr, Project};
use common::run_python;

const RECIPE: &str = r#"name = "tiny_diffusion"
seed = 0

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 400
n_val = 100

[stages.classifier]
kind = "train_classifier"
inputs = { train = "digits.train", val = "digits.val" }
model = { arch = "dann_bn" }
epochs = 2
batch_size = 64

[stages.ddpm]
kind = "train_ddpm"
inputs = { train = "digits.train" }
model = { n_feat = 16 }
n_t = 20
epochs = 1
batch_size = 64
ema_decay = 0.9
optimizer = { lr = 1e-3 }

[stages.samples]
kind = "sample_diffusion"
inputs = { model = "ddpm" }
per_class = 100
guidance = [0.0, 2.0]

[stages.accuracy_w0]
kind = "evaluate"
inputs = { model = "classifier", data = "samples.w0" }

[stages.accuracy_w2]
kind = "evaluate"
inputs = { model = "classifier", data = "samples.w2" }

[stages.ddim]
kind = "ddim"
inputs = { model = "ddpm" }
steps = 10
n_noises = 4
eta = [0.0, 0.5]
batch = 22
"#;

#[test]
fn a_tiny_ddpm_samples_every_class_and_is_scored() {
    let project = Project::new();
    let recipe = project.write("tiny.toml", RECIPE);
    let summary = project.run_json_ok(&["--device", "cpu", recipe.to_str().unwrap()]);
    let samples = Path::new(stage(&summary, "samples")["output"].as_str().unwrap()).to_owned();
    for w in ["w0", "w2"] {
        let pngs = std::fs::read_dir(samples.join(w))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "png")
            })
            .count();
        assert_eq!(pngs, 1000, "{w}");
        assert!(samples.join(w).join("7_099.png").exists());
        assert!(samples.join(format!("grid_{w}.png")).exists());
    }
    let strip = image::open(samples.join("strip.png")).unwrap();
    assert_eq!(
        (strip.width(), strip.height()),
        (6 * 30 + 2, 32),
        "six 28x28 snapshots with torchvision padding"
    );
    for w in ["w0", "w2"] {
        let accuracy = stage(&summary, &format!("accuracy_{w}"))["metrics"]["accuracy"]
            .as_f64()
            .unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    }
    let ddim = Path::new(stage(&summary, "ddim")["output"].as_str().unwrap()).to_owned();
    let grid = image::open(ddim.join("eta_grid.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (4 * 30 + 2, 2 * 30 + 2));
    let interpolation = image::open(ddim.join("interpolation.png")).unwrap();
    assert_eq!(
        (interpolation.width(), interpolation.height()),
        (11 * 30 + 2, 2 * 30 + 2)
    );
    assert!(ddim.join("eta0/03.png").exists());

    // Bad input: a GT folder with a missing image, steps that do not divide n_t.
    std::fs::create_dir_all(project.path().join("gt")).unwrap();
    let bad_gt = RECIPE.replace("batch = 22", "batch = 22\ngt_dir = \"gt\"");
    let recipe = project.write("bad_gt.toml", &bad_gt);
    let output = project.hwrun(&["--device", "cpu", recipe.to_str().unwrap()]);
    assert_ne!(output.status.code(), Some(0));
    // A failed stage's error is in the run summary on stdout.
    let all =
        |o: &std::process::Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
    let text = all(&output);
    assert!(text.contains("gt/00.png"), "{text}");
    let bad_steps = RECIPE.replace("steps = 10", "steps = 7");
    let recipe = project.write("bad_steps.toml", &bad_steps);
    let output = project.hwrun(&["--device", "cpu", recipe.to_str().unwrap()]);
    let text = all(&output);
    assert!(
        output.status.code() != Some(0) && text.contains("steps") && text.contains("20"),
        "{text}"
    );

    // Noise files from torch.save: the model's 28x28 ones are used, a 20x20 one is refused
    // with its path and both shapes, and the failed stage leaves no cache entry.
    let noise = project.path().join("noise");
    std::fs::create_dir_all(&noise).unwrap();
    let write_noise = |name: &str, side: u32| {
        run_python(
            "import sys, torch; torch.manual_seed(0); \
             torch.save(torch.randn(1, 3, int(sys.argv[2]), int(sys.argv[2])), sys.argv[1])",
            &[noise.join(name).to_str().unwrap(), &side.to_string()],
        )
    };
    for name in ["00.pt", "01.pt", "02.pt", "03.pt"] {
        write_noise(name, 28);
    }
    let with_noise = RECIPE.replace("n_noises = 4", "noise_dir = \"noise\"");
    let recipe = project.write("noise.toml", &with_noise);
    let summary = project.run_json_ok(&["--device", "cpu", recipe.to_str().unwrap()]);
    assert_eq!(stage(&summary, "ddim")["result"], "ran");
    write_noise("02.pt", 20);
    let (code, summary) = project.run_json(&["--device", "cpu", recipe.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    let ddim = stage(&summary, "ddim");
    assert_eq!(ddim["result"], "failed", "{summary}");
    let error = ddim["error"].as_str().unwrap();
    assert!(
        error.contains("noise/02.pt")
            && error.contains("[1, 3, 20, 20]")
            && error.contains("expected [1, 3, S, S] with S 28"),
        "{error}"
    );
    let plan = project.hwrun(&["plan", "--json", recipe.to_str().unwrap()]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(stage(&plan, "ddim")["status"], "run", "{plan}");
}
