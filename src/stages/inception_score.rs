//! `inception_score`: the Inception Score of an image set, as torch-fidelity computes it
//! (1008 logits without the fc bias after torch-fidelity's TensorFlow-style resize, rows
//! shuffled with seed 2020, `splits` parts; see [`crate::metrics::inception_score`]).
//!
//! Images: the `images` input (a dataset artifact or a folder of images) or the `path`
//! parameter. Weights: the `weights` input (a `download` stage's output) or the `weights`
//! parameter. Metrics: `is_mean`, `is_std` (population standard deviation over the splits).
//!
//! ```toml
//! [stages.samples_is]
//! kind = "inception_score"
//! inputs = { images = "samples", weights = "inception_weights" }
//! splits = 10                         # default
//! ```

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::fid_stats::{
    check_batch_size, default_batch_size, features, images_of, load_model, IMAGES_INPUT,
    WEIGHTS_INPUT,
};
use crate::metrics::inception_features::FeatureKind;
use crate::metrics::inception_score::{inception_score, SEED, SPLITS};
use crate::stage::{Inputs, Metrics, ParamError, Stage, StageContext, StageOutcome, StageShape};

/// The `inception_score` stage kind.
pub struct InceptionScoreStage;

/// Parameters of an `inception_score` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InceptionScoreParams {
    /// A folder of images, when there is no `images` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub path: Option<Utf8PathBuf>,
    /// The Inception weights file, when there is no `weights` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub weights: Option<Utf8PathBuf>,
    /// Parts the shuffled images are split into (torch-fidelity's `isc_splits`).
    #[serde(default = "default_splits")]
    pub splits: usize,
    /// Images per forward pass (does not change the result).
    #[serde(default = "default_batch_size", skip_serializing)]
    pub batch_size: usize,
}

fn default_splits() -> usize {
    SPLITS
}

impl Stage for InceptionScoreStage {
    type Params = InceptionScoreParams;
    const KIND: &'static str = "inception_score";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Inception Score of an image set (as torch-fidelity)";
    const INPUTS: Inputs = Inputs::Named(&[IMAGES_INPUT, WEIGHTS_INPUT]);
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

[stages.digits_is]
kind = "inception_score"
inputs = { images = "digits.val", weights = "inception_weights" }
splits = 10                         # default
"#;

    fn validate(params: &InceptionScoreParams) -> Result<(), ParamError> {
        ParamError::check(params.splits >= 1, "splits", "at least 1")?;
        check_batch_size(params.batch_size)
    }

    fn shape(params: &InceptionScoreParams) -> StageShape {
        StageShape {
            external_paths: params.path.iter().chain(&params.weights).cloned().collect(),
            uses_device: true,
            ..StageShape::default()
        }
    }

    fn run(params: InceptionScoreParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let images = images_of(ctx, "images", params.path.as_deref())?;
        let model = load_model(ctx, params.weights.as_deref())?;
        let logits = features(
            ctx,
            &model,
            &images,
            params.batch_size,
            FeatureKind::LogitsUnbiased,
        )?;
        let score = inception_score(&logits, params.splits, SEED)?;
        ctx.log(format!("Inception Score: {} ± {}", score.mean, score.std));
        Ok(StageOutcome {
            metrics: Metrics::from([
                ("is_mean".to_owned(), score.mean),
                ("is_std".to_owned(), score.std),
            ]),
            summary: vec![format!(
                "IS {:.4} ± {:.4} ({} images, {} splits)",
                score.mean,
                score.std,
                images.len(),
                params.splits
            )],
            ..StageOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, images_and_weights, tempdir};

    #[test]
    fn scores_a_folder_and_refuses_fewer_images_than_splits() {
        let (_guard, root) = tempdir();
        let (folder, weights) = images_and_weights(&root, 4);
        let mut ctx = context(&root, Vec::new());
        let params = InceptionScoreParams {
            path: Some(folder),
            weights: Some(weights),
            splits: 2,
            batch_size: 3,
        };
        let outcome = InceptionScoreStage::run(params.clone(), &mut ctx).unwrap();
        assert!(outcome.metrics["is_mean"] >= 1.0, "{outcome:?}");
        let err = InceptionScoreStage::run(
            InceptionScoreParams {
                splits: 10,
                ..params
            },
            &mut ctx,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 10 images"), "{err}");
    }

    #[test]
    fn zero_splits_are_refused_rather_than_scored_nan() {
        let path = |text: &str| {
            crate::testing::params::<InceptionScoreStage>(text)
                .unwrap_err()
                .path
        };
        assert_eq!(path("splits = 0"), ["splits"]);
        assert_eq!(path("batch_size = 0"), ["batch_size"]);
    }
}
