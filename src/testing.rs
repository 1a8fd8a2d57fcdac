//! Helpers shared by the unit tests of several modules: temporary directories, stage inputs and
//! contexts, parameters parsed like a recipe's, recipes loaded against the real registry, and small
//! datasets, models and weights to run stages on.
//!
//! It sits at the top of the crate, beside `cli`, so a test anywhere may use it without the module
//! under test importing the layers above it.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::download::Observer;
use crate::models::inception::expected_entries;
use crate::recipe::{self, LoadError, Recipe, RecipeSource};
use crate::stage::{InputArtifact, ParamError, Stage, StageContext};
use crate::stages::train_classifier::TrainClassifierStage;

pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Saves `dataset` under `root/name` and returns it as a stage input.
pub fn input(root: &Utf8Path, name: &str, dataset: &Dataset) -> (String, InputArtifact) {
    let dir = root.join(name);
    dataset.save(&dir).unwrap();
    let artifact = InputArtifact {
        dir,
        stage: name.into(),
        kind: "test".into(),
        params: serde_json::Value::Null,
        outcome: Default::default(),
    };
    (name.to_owned(), artifact)
}

/// A context over `inputs` writing to `root/out`.
pub fn context(root: &Utf8Path, inputs: Vec<(String, InputArtifact)>) -> StageContext {
    let inputs: BTreeMap<_, _> = inputs.into_iter().collect();
    StageContext::new("test", root.join("out"), inputs, 7)
}

/// Parses `text` as a stage of kind `S` would be, defaults and range checks included.
pub fn params<S: Stage>(text: &str) -> Result<S::Params, ParamError> {
    crate::stage::checked_params::<S>(&toml::from_str(text).unwrap())
}

/// Loads the recipe `text` (as `name`) with `overrides`, its stages of the registered kinds.
pub fn load_recipe(name: &str, text: &str, overrides: &[String]) -> Result<Recipe, LoadError> {
    recipe::load(
        RecipeSource::Text { name, text },
        overrides,
        crate::stages::registry(),
    )
}

/// A learnable toy problem: class `k` lights up a horizontal band at row `2k`, plus noise.
pub fn banded(n: usize, channels: usize, size: usize, seed: u64) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * channels * size * size);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 10;
        labels.push(class as i64);
        for _ in 0..channels {
            for row in 0..size {
                let band = row * 10 / size == class;
                for _ in 0..size {
                    let noise: u8 = rng.random_range(0..60);
                    images.push(if band { 190 + noise } else { noise });
                }
            }
        }
    }
    Dataset::new(
        images,
        [n, channels, size, size],
        labels,
        Dataset::digit_classes(),
        "banded",
    )
    .unwrap()
}

/// Trains a tiny classifier under `root/model` and returns it as an input artifact.
pub fn trained_model(root: &Utf8Path) -> (String, InputArtifact) {
    let train = banded(60, 3, 16, 4);
    let model_root = root.join("model_root");
    let mut ctx = context(&model_root, vec![input(&model_root, "train", &train)]);
    let params =
        params::<TrainClassifierStage>("epochs = 3\nbatch_size = 20\nmodel = { image_size = 16 }")
            .unwrap();
    TrainClassifierStage::run(params, &mut ctx).unwrap();
    let artifact = InputArtifact {
        dir: model_root.join("out"),
        stage: "model".into(),
        kind: "train_classifier".into(),
        params: serde_json::Value::Null,
        outcome: Default::default(),
    };
    ("model".into(), artifact)
}

/// Random FID Inception weights of the right names and shapes, BatchNorm statistics not the
/// identity.
pub fn random_weights(seed: i64) -> Vec<(String, Tensor)> {
    tch::manual_seed(seed);
    expected_entries()
        .into_iter()
        .map(|(name, shape)| {
            let t = if name.ends_with("running_var") || name.ends_with("bn.weight") {
                Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu)) + 0.5
            } else {
                let fan_in: i64 = shape.iter().skip(1).product::<i64>().max(1);
                Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) / (fan_in as f64).sqrt()
            };
            (name, t)
        })
        .collect()
}

/// A folder of `n` small RGB PNGs with smooth gradients, and random Inception weights.
pub fn images_and_weights(root: &Utf8Path, n: u32) -> (Utf8PathBuf, Utf8PathBuf) {
    let folder = root.join("images");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..n {
        let image = image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, (i * 37) as u8])
        });
        image.save(folder.join(format!("{i:03}.png"))).unwrap();
    }
    let weights = root.join("w.safetensors");
    Tensor::write_safetensors(&random_weights(3), &weights).unwrap();
    (folder, weights)
}

/// A download observer that ignores everything and never cancels.
pub struct Silent;

impl Observer for Silent {
    fn phase(&self, _message: &str, _total: Option<u64>) {}
    fn position(&self, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn note(&self, _line: &str) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}
