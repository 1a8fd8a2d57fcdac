//! `fid`: the Fréchet distance between the feature statistics of two image sets.
//!
//! With `features = "inception"` (the default) it is the Fréchet Inception Distance as
//! pytorch-fid computes it. Inputs `a` and `b`: each a `fid_stats` stage's output (its
//! `stats.npz` is used as it is) or images (a dataset artifact or a folder, featurised here).
//! Featurising needs the Inception weights: the `weights` input (a `download` stage's output) or
//! the `weights` parameter.
//!
//! With `features = "classifier"` the features are those of a digit classifier trained in the
//! recipe (the `model` input: `train_classifier`, `train_dann`, `train_adda`; the output of its
//! feature extractor, the representation its label predictor reads), so a recipe without
//! Inception weights still gets a FID of generated digits against real ones. Both sides are
//! images, normalised alike: with the model's saved statistics for `b`'s domain (the data's own
//! when the model never saw that domain). The number is comparable only between runs scored by
//! the same classifier, never with an Inception FID.
//!
//! Output: `fid.txt` (`FID:  <value>`, as `python -m pytorch_fid` prints it). Metrics: `fid`,
//! `dims`. Fewer images than feature dimensions log pytorch-fid's warning (singular covariance).
//!
//! ```toml
//! [stages.fid_vs_val]
//! kind = "fid"
//! inputs = { a = "samples", b = "face_val_stats", weights = "inception_weights" }
//! dims = 2048                         # default; must match the statistics' dimension
//!
//! [stages.digit_fid]
//! kind = "fid"
//! features = "classifier"
//! inputs = { a = "acgan_samples.dataset", b = "mnistm.val", model = "source_only" }
//! ```

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::evaluate::{input_format, normalisation, NormaliseWith};
use super::fid_stats::{
    check_batch_size, check_dims, default_batch_size, default_dims, images_of, load_model,
    statistics, statistics_of, STATS_FILE, WEIGHTS_INPUT,
};
use crate::data::Dataset;
use crate::metrics::fid::{frechet_distance, FidStatistics};
use crate::models::inception::{block_of_dims, FidInception};
use crate::stage::{
    InputSpec, Inputs, Metrics, ParamError, Stage, StageContext, StageOutcome, StageShape,
};
use crate::training::checkpoint::LoadedClassifier;
use crate::training::evaluation::map_all;
use crate::training::{DeviceDataset, Normalisation};

/// The `fid` stage kind.
pub struct FidStage;

/// Which network featurises the images.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum FidFeatures {
    /// pytorch-fid's Inception v3 (the `weights`).
    #[default]
    Inception,
    /// The feature extractor of the digit classifier given as the `model` input.
    Classifier,
}

/// Parameters of a `fid` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FidParams {
    /// `inception` (default; pytorch-fid's FID) or `classifier` (the `model` input's features).
    #[serde(default, skip_serializing_if = "is_inception")]
    pub features: FidFeatures,
    /// The Inception weights file, when there is no `weights` input (needed only for images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub weights: Option<Utf8PathBuf>,
    /// Inception feature dimensions: 64, 192, 768 or 2048 (classifier features have the
    /// classifier's width).
    #[serde(default = "default_dims")]
    pub dims: i64,
    /// Images per forward pass (does not change the result).
    #[serde(default = "default_batch_size", skip_serializing)]
    pub batch_size: usize,
}

/// Inception FID parameters serialise as before the `features` mode existed (same cache keys).
fn is_inception(features: &FidFeatures) -> bool {
    *features == FidFeatures::Inception
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierFidError {
    #[error("input `{input}` is a fid_stats output (Inception statistics); classifier features need its images: point `{input}` at the images themselves")]
    StatisticsInput { input: String },
    #[error("`weights` are the Inception network's; with features = \"classifier\" the `model` input featurises the images: remove the weights")]
    WeightsGiven,
    #[error("input `model` is a digit classifier, used only with features = \"classifier\": set `features = \"classifier\"` or remove the input")]
    ModelGiven,
}

impl Stage for FidStage {
    type Params = FidParams;
    const KIND: &'static str = "fid";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Frechet Inception Distance of two image sets or statistics (as pytorch-fid), or the same distance on a digit classifier's features";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required(
            "a",
            "images (a folder output, a dataset, a sample stage) or a fid_stats stage",
        ),
        InputSpec::required("b", "the same, for the other set"),
        WEIGHTS_INPUT,
        InputSpec::optional(
            "model",
            "a trained digit classifier (with features = \"classifier\")",
        ),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.inception_weights]
kind = "download"
source = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
sha256 = "6726825d"                 # torch.hub's name prefix pin

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 100
n_val = 100

[stages.val_stats]
kind = "fid_stats"
inputs = { images = "digits.val", weights = "inception_weights" }

[stages.fid]
kind = "fid"
inputs = { a = "digits.train", b = "val_stats", weights = "inception_weights" }
dims = 2048                         # default; must match the statistics' dimension

[stages.source_only]
kind = "train_classifier"
inputs = { train = "digits.train" }
epochs = 1

[stages.classifier_fid]
kind = "fid"
features = "classifier"             # the distance on the classifier's features
inputs = { a = "digits.train", b = "digits.val", model = "source_only" }
"#;

    fn validate(params: &FidParams) -> Result<(), ParamError> {
        // A classifier's features have the size its model gives them.
        if params.features == FidFeatures::Inception {
            check_dims(params.dims)?;
        }
        check_batch_size(params.batch_size)
    }

    fn shape(params: &FidParams) -> StageShape {
        StageShape {
            external_paths: params.weights.iter().cloned().collect(),
            uses_device: true,
            ..StageShape::default()
        }
    }

    fn run(params: FidParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let (a, b, network) = match params.features {
            FidFeatures::Inception => {
                if ctx.inputs().contains_key("model") {
                    return Err(ClassifierFidError::ModelGiven.into());
                }
                block_of_dims(params.dims)?;
                let mut model = None;
                let a = side(ctx, "a", &params, &mut model)?;
                let b = side(ctx, "b", &params, &mut model)?;
                (a, b, "Inception")
            }
            FidFeatures::Classifier => {
                let (a, b) = classifier_sides(ctx, &params)?;
                (a, b, "classifier")
            }
        };
        let fid = frechet_distance(&a, &b)?;
        std::fs::write(ctx.out_dir().join("fid.txt"), format!("FID:  {fid}\n"))?;
        ctx.log(format!("FID: {fid}"));
        let dims = a.dims();
        Ok(StageOutcome {
            metrics: Metrics::from([("fid".to_owned(), fid), ("dims".to_owned(), dims as f64)]),
            summary: vec![format!("FID {fid:.4} ({dims}-d {network} features)")],
            ..StageOutcome::default()
        })
    }
}

/// The statistics of `a` and `b` on the `model` input's features.
fn classifier_sides(
    ctx: &StageContext,
    params: &FidParams,
) -> anyhow::Result<(FidStatistics, FidStatistics)> {
    if params.weights.is_some() || ctx.inputs().contains_key("weights") {
        return Err(ClassifierFidError::WeightsGiven.into());
    }
    let model = LoadedClassifier::load(&ctx.input("model")?.dir, ctx.device())?;
    let mut sets = Vec::new();
    for name in ["a", "b"] {
        if ctx.input(name)?.dir.join(STATS_FILE).is_file() {
            return Err(ClassifierFidError::StatisticsInput { input: name.into() }.into());
        }
        sets.push(images_of(ctx, name, None)?);
    }
    // One normalisation for both sides: different ones would shift the features apart.
    let norm = normalisation(&model, &sets[1], NormaliseWith::Saved, ctx);
    ctx.start_phase("classifier features", 2);
    let a = classifier_statistics(ctx, &model, &sets[0], &norm)?;
    let b = classifier_statistics(ctx, &model, &sets[1], &norm)?;
    Ok((a, b))
}

fn classifier_statistics(
    ctx: &StageContext,
    model: &LoadedClassifier,
    images: &Dataset,
    norm: &Normalisation,
) -> anyhow::Result<FidStatistics> {
    let data = DeviceDataset::new(images, norm, input_format(model), ctx.device())?;
    let features = map_all(&data, |x| model.source_features(x));
    ctx.progress().inc(1);
    statistics_of(ctx, &features)
}

/// The statistics of input `name`: its `stats.npz`, or its images featurised.
fn side(
    ctx: &StageContext,
    name: &str,
    params: &FidParams,
    model: &mut Option<FidInception>,
) -> anyhow::Result<FidStatistics> {
    let dir = ctx.input(name)?.dir.clone();
    let stats_file = dir.join(STATS_FILE);
    if stats_file.is_file() {
        return Ok(FidStatistics::read_npz(&stats_file)?);
    }
    let images = images_of(ctx, name, None::<&Utf8Path>)?;
    if model.is_none() {
        *model = Some(load_model(ctx, params.weights.as_deref())?);
    }
    let network = model
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the Inception network did not load"))?;
    statistics(ctx, network, &images, params.dims, params.batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::InputArtifact;
    use crate::stages::fid_stats::{FidStatsParams, FidStatsStage};
    use crate::testing::{context, images_and_weights, tempdir};

    fn artifact(dir: &Utf8Path) -> InputArtifact {
        InputArtifact {
            dir: dir.to_owned(),
            stage: "x".into(),
            kind: "test".into(),
            params: serde_json::Value::Null,
            outcome: Default::default(),
        }
    }

    #[test]
    fn fid_of_a_folder_and_its_own_statistics_is_zero() {
        let (_guard, root) = tempdir();
        let (folder, weights) = images_and_weights(&root, 4);
        let stats_root = root.join("stats");
        let mut ctx = context(&stats_root, Vec::new());
        std::fs::create_dir_all(ctx.out_dir()).unwrap();
        let params = FidStatsParams {
            path: Some(folder.clone()),
            weights: Some(weights.clone()),
            dims: 64,
            batch_size: 3,
        };
        FidStatsStage::run(params, &mut ctx).unwrap();
        let inputs = vec![
            ("a".to_owned(), artifact(&folder)),
            ("b".to_owned(), artifact(&stats_root.join("out"))),
        ];
        let mut ctx = context(&root, inputs);
        std::fs::create_dir_all(ctx.out_dir()).unwrap();
        let outcome = FidStage::run(
            FidParams {
                features: FidFeatures::Inception,
                weights: Some(weights),
                dims: 64,
                batch_size: 4,
            },
            &mut ctx,
        )
        .unwrap();
        assert!(outcome.metrics["fid"].abs() < 1e-6, "{outcome:?}");
    }

    #[test]
    fn classifier_features_give_zero_for_the_same_set_and_refuse_inception_inputs() {
        use crate::testing::{banded, input, trained_model};

        let (_guard, root) = tempdir();
        let model = trained_model(&root);
        let same = banded(60, 3, 16, 1);
        let other = banded(60, 1, 20, 9);
        let classifier = |weights: Option<Utf8PathBuf>| FidParams {
            features: FidFeatures::Classifier,
            weights,
            dims: default_dims(),
            batch_size: 8,
        };
        let run = |a: &crate::data::Dataset, params: FidParams| {
            let dir = root.join(format!("run{}", a.len() * a.shape[1]));
            let mut ctx = context(
                &dir,
                vec![model.clone(), input(&dir, "a", a), input(&dir, "b", &same)],
            );
            std::fs::create_dir_all(ctx.out_dir()).unwrap();
            FidStage::run(params, &mut ctx)
        };
        let zero = run(&same, classifier(None)).unwrap();
        assert!(zero.metrics["fid"].abs() < 1e-6, "{zero:?}");
        assert_eq!(zero.metrics["dims"], 48.0);
        let apart = run(&other, classifier(None)).unwrap();
        assert!(apart.metrics["fid"] > 1e-3, "{apart:?}");

        let err = run(&same, classifier(Some("w.pth".into()))).unwrap_err();
        assert!(err.to_string().contains("remove the weights"), "{err}");
        let inception = FidParams {
            features: FidFeatures::Inception,
            ..classifier(None)
        };
        let err = run(&same, inception).unwrap_err();
        assert!(
            err.to_string().contains("features = \"classifier\""),
            "{err}"
        );
        let stats_dir = root.join("stats");
        std::fs::create_dir_all(&stats_dir).unwrap();
        std::fs::write(stats_dir.join(STATS_FILE), b"").unwrap();
        let mut ctx = context(
            &root,
            vec![
                model.clone(),
                ("a".to_owned(), artifact(&stats_dir)),
                input(&root, "b", &same),
            ],
        );
        let err = FidStage::run(classifier(None), &mut ctx).unwrap_err();
        assert!(err.to_string().contains("fid_stats output"), "{err}");
    }

    #[test]
    fn inception_dims_and_batch_size_are_checked() {
        let path = |text: &str| crate::testing::params::<FidStage>(text).unwrap_err().path;
        assert_eq!(path("dims = 100"), ["dims"]);
        assert_eq!(path("batch_size = 0"), ["batch_size"]);
        assert!(
            crate::testing::params::<FidStage>("features = \"classifier\"\ndims = 100").is_ok()
        );
    }
}
