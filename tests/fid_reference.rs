//! FID and Inception Score against the real tools: pytorch-fid and torch-fidelity, installed in
//! the test venv. `tests/oracles/fid_reference.py` builds pytorch-fid's FID Inception from its own
//! module classes with seeded random weights (no download), saves the `state_dict` (torch.save
//! in both formats, and safetensors), writes two folders of 64x64 PNGs and computes features,
//! FIDs and the IS with the tools' own functions. hwrun must agree: 2048-d features to 1e-4 of
//! their scale, FID to 1e-3 relative, the Fréchet distance of given statistics to 1e-6
//! relative, IS to 1e-4 relative. The bad-input cases check the errors and warnings users see.

use crate::common;

use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use hwrun::data::formats::npz::{read_npz, NpyArray};
use hwrun::metrics::fid::{frechet_distance, FidStatistics};
use hwrun::metrics::inception_features::{
    featurise_all, load_image_set, FeatureKind, ImageSetError,
};
use hwrun::metrics::inception_score::{inception_score, SEED};
use hwrun::models::inception::FidInception;
use tch::{Device, Tensor};

const ORACLE: &str = include_str!("oracles/fid_reference.py");
/// `IS_SPLITS` of the oracle: 12 images per folder keep the test fast, 3 splits of 4 keep the
/// score meaningful.
const IS_SPLITS: usize = 3;

struct Reference {
    _guard: tempfile::TempDir,
    dir: Utf8PathBuf,
    values: std::collections::BTreeMap<String, NpyArray>,
}

impl Reference {
    fn scalar(&self, name: &str) -> f64 {
        self.values[name].data[0]
    }
}

/// The oracle's outputs, computed once for all tests of this file.
fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let guard = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(guard.path().to_owned()).unwrap();
        let script = format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}");
        let printed = common::run_python(&script, &[dir.as_str()]);
        eprintln!("reference: {}", printed.trim());
        let values = read_npz(&dir.join("reference.npz")).unwrap();
        Reference {
            _guard: guard,
            dir,
            values,
        }
    })
}

fn relative(ours: f64, theirs: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(1e-12)
}

fn features(model: &FidInception, dir: &Utf8Path, kind: FeatureKind) -> Tensor {
    let images = load_image_set(dir, indicatif::ProgressBar::hidden()).unwrap();
    featurise_all(model, &images, 8, kind, |_| Ok::<(), ImageSetError>(())).unwrap()
}

/// The weight files hwrun reads.
const WEIGHT_FILES: [&str; 3] = ["weights.safetensors", "weights.pth", "weights_legacy.pth"];

#[test]
fn features_fid_and_inception_score_match_pytorch_fid_and_torch_fidelity() {
    let reference = reference();
    tch::set_num_threads(2);
    for file in WEIGHT_FILES {
        let model = FidInception::load(&reference.dir.join(file), Device::Cpu).unwrap();
        let ours = features(
            &model,
            &reference.dir.join("a"),
            FeatureKind::Fid { dims: 2048 },
        );
        let theirs = &reference.values["feat2048_a"];
        let theirs_t =
            Tensor::from_slice(&theirs.data).view([theirs.shape[0] as i64, theirs.shape[1] as i64]);
        let scale = theirs_t.abs().max().double_value(&[]);
        let diff = (ours.to_kind(tch::Kind::Double) - &theirs_t)
            .abs()
            .max()
            .double_value(&[]);
        eprintln!("{file}: 2048-d features max |diff| {diff:.3e} (largest feature {scale:.2})");
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{file}: features differ by {diff}"
        );

        let ours_b = features(
            &model,
            &reference.dir.join("b"),
            FeatureKind::Fid { dims: 2048 },
        );
        let fid = frechet_distance(
            &FidStatistics::of_features(&ours).unwrap(),
            &FidStatistics::of_features(&ours_b).unwrap(),
        )
        .unwrap();
        let expected = reference.scalar("fid2048");
        eprintln!(
            "{file}: FID 2048 hwrun {fid} pytorch-fid {expected} (relative {:.2e})",
            relative(fid, expected)
        );
        assert!(relative(fid, expected) <= 1e-3);

        let logits = features(
            &model,
            &reference.dir.join("a"),
            FeatureKind::LogitsUnbiased,
        );
        let score = inception_score(&logits, IS_SPLITS, SEED).unwrap();
        let (mean, std) = (reference.scalar("is_mean"), reference.scalar("is_std"));
        eprintln!(
            "{file}: IS hwrun {} ± {} torch-fidelity {mean} ± {std} (relative {:.2e}, {:.2e})",
            score.mean,
            score.std,
            relative(score.mean, mean),
            relative(score.std, std)
        );
        assert!(relative(score.mean, mean) <= 1e-4 && relative(score.std, std) <= 1e-4);
    }
}

fn hwrun(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hwrun"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn printed_fid(output: &std::process::Output) -> f64 {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hwrun fid failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .trim()
        .strip_prefix("FID:  ")
        .unwrap_or_else(|| panic!("not pytorch-fid's output: {stdout}"))
        .parse()
        .unwrap()
}

#[test]
fn hwrun_fid_prints_pytorch_fids_numbers_and_writes_its_statistics() {
    let reference = reference();
    let dir = &reference.dir;
    let weights = dir.join("weights.safetensors");
    let (a, b) = (dir.join("a"), dir.join("b"));

    let given = printed_fid(&hwrun(&[
        "fid",
        dir.join("s1.npz").as_str(),
        dir.join("s2.npz").as_str(),
    ]));
    let expected = reference.scalar("frechet_given");
    eprintln!(
        "given statistics: hwrun {given} pytorch-fid {expected} (relative {:.2e})",
        relative(given, expected)
    );
    assert!(relative(given, expected) <= 1e-6);

    let args = [
        "fid",
        a.as_str(),
        b.as_str(),
        "--weights",
        weights.as_str(),
        "--dims",
        "64",
        "--device",
        "cpu",
    ];
    let output = hwrun(&args);
    let fid = printed_fid(&output);
    let expected = reference.scalar("fid64");
    eprintln!(
        "hwrun fid --dims 64: {fid} pytorch-fid {expected} (relative {:.2e})",
        relative(fid, expected)
    );
    assert!(relative(fid, expected) <= 1e-3);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("singular"),
        "12 images < 64 dims must warn: {stderr}"
    );

    let ours = dir.join("ours_a64.npz");
    let saved = hwrun(&[
        "fid",
        "--save-stats",
        a.as_str(),
        ours.as_str(),
        "--weights",
        weights.as_str(),
        "--dims",
        "64",
    ]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let (ours_stats, theirs) = (
        FidStatistics::read_npz(&ours).unwrap(),
        FidStatistics::read_npz(&dir.join("a64.npz")).unwrap(),
    );
    let sigma_diff = (&ours_stats.sigma - &theirs.sigma)
        .abs()
        .max()
        .double_value(&[]);
    let sigma_scale = theirs.sigma.abs().max().double_value(&[]);
    eprintln!("--save-stats sigma max |diff| {sigma_diff:.3e} (largest {sigma_scale:.3})");
    assert!(sigma_diff <= 1e-4 * sigma_scale);
    let numpy = common::run_python(
        "import sys, numpy as np\nf = np.load(sys.argv[1])\nprint(f['mu'].shape, f['sigma'].shape, f['sigma'].dtype)",
        &[ours.as_str()],
    );
    assert_eq!(numpy.trim(), "(64,) (64, 64) float64");
    let again = hwrun(&[
        "fid",
        "--save-stats",
        a.as_str(),
        ours.as_str(),
        "--weights",
        weights.as_str(),
        "--dims",
        "64",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("existing output file"));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let reference = reference();
    let dir = &reference.dir;
    let scratch = tempfile::tempdir().unwrap();
    let scratch = Utf8Path::from_path(scratch.path()).unwrap();
    let weights = dir.join("weights.safetensors");
    let fails_with = |args: &[&str], needles: &[&str]| {
        let output = hwrun(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{args:?}: `{needle}` not in: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let a = dir.join("a");

    let empty = scratch.join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(
        &[
            "fid",
            empty.as_str(),
            a.as_str(),
            "--weights",
            weights.as_str(),
        ],
        &["no images", "empty"],
    );

    let broken = scratch.join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(a.join("img_000.png"), broken.join("good.png")).unwrap();
    std::fs::write(broken.join("fake.png"), "this is text").unwrap();
    fails_with(
        &[
            "fid",
            broken.as_str(),
            a.as_str(),
            "--weights",
            weights.as_str(),
        ],
        &["fake.png", "cannot decode"],
    );

    let bytes = std::fs::read(&weights).unwrap();
    let truncated = scratch.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &[
            "fid",
            a.as_str(),
            a.as_str(),
            "--weights",
            truncated.as_str(),
        ],
        &["truncated.safetensors", "download it again"],
    );

    let other = scratch.join("other.safetensors");
    Tensor::write_safetensors(
        &[(
            "features.0.weight",
            Tensor::zeros([8, 3, 3, 3], tch::kind::FLOAT_CPU),
        )],
        &other,
    )
    .unwrap();
    fails_with(
        &["fid", a.as_str(), a.as_str(), "--weights", other.as_str()],
        &[
            "missing (472): Conv2d_1a_3x3.bn.bias",
            "unexpected (1): features.0.weight",
            "is this the right file",
        ],
    );
}

/// A recipe through the stage kinds: the weights come from a `download` stage with torch.hub's
/// 8-digit sha256 prefix pin (a wrong pin fails and caches nothing), reference statistics are
/// their own stage, and the FID and IS stages record their metrics.
#[test]
fn recipe_stages_compute_fid_and_inception_score() {
    let reference = reference();
    let dir = &reference.dir;
    let weights = dir.join("weights.safetensors");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&weights).unwrap()))
    };
    let project = common::project::Project::new();
    let recipe = |pin: &str| {
        format!(
            r#"
name = "fid_test"
[stages.weights]
kind = "download"
source = "{weights}"
sha256 = "{pin}"
[stages.a_stats]
kind = "fid_stats"
inputs = {{ weights = "weights" }}
path = "{a}"
dims = 64
[stages.b_stats]
kind = "fid_stats"
inputs = {{ weights = "weights" }}
path = "{b}"
dims = 64
[stages.fid]
kind = "fid"
inputs = {{ a = "a_stats", b = "b_stats" }}
dims = 64
[stages.is]
kind = "inception_score"
inputs = {{ weights = "weights" }}
path = "{a}"
splits = 3
"#,
            a = dir.join("a"),
            b = dir.join("b"),
        )
    };
    let wrong = if digest.starts_with('0') {
        "10000000"
    } else {
        "00000000"
    };
    project.write("wrong.toml", &recipe(wrong));
    let (code, json) = project.run_json(&["--device", "cpu", "wrong.toml"]);
    assert_eq!(code, Some(1), "{json}");
    let text = json.to_string();
    assert!(
        text.contains(wrong) && text.contains(&digest),
        "expected vs actual digest: {text}"
    );
    assert!(
        !project.cache().join("entries").exists()
            || std::fs::read_dir(project.cache().join("entries"))
                .unwrap()
                .count()
                == 0
    );

    project.write("right.toml", &recipe(&digest[..8]));
    let json = project.run_json_ok(&["--device", "cpu", "right.toml"]);
    let text = json.to_string();
    let fid = find_metric(&json, "fid").unwrap_or_else(|| panic!("no fid metric: {text}"));
    let expected = reference.scalar("fid64");
    assert!(
        relative(fid, expected) <= 1e-3,
        "stage FID {fid} vs pytorch-fid {expected}"
    );
    let is_mean =
        find_metric(&json, "is_mean").unwrap_or_else(|| panic!("no is_mean metric: {text}"));
    assert!(
        relative(is_mean, reference.scalar("is_mean")) <= 1e-4,
        "stage IS {is_mean}"
    );
}

/// The first metric called `name` anywhere in hwrun's JSON output.
fn find_metric(json: &serde_json::Value, name: &str) -> Option<f64> {
    match json {
        serde_json::Value::Object(map) => map
            .get("metrics")
            .and_then(|m| m.get(name))
            .and_then(serde_json::Value::as_f64)
            .or_else(|| map.values().find_map(|v| find_metric(v, name))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_metric(v, name)),
        _ => None,
    }
}
