//! `fid_stats`: pytorch-fid's statistics (mean and covariance of Inception features) of one image
//! set, computed once and cached, so a reference set such as `face/val` is featurised once per
//! cache and every later FID only featurises the generated images.
//!
//! Images: the `images` input (a stage's output directory: a dataset artifact, or a folder of
//! images such as a sampling stage writes) or the `path` parameter (a folder, read like
//! pytorch-fid: `*.{bmp,jpg,jpeg,pgm,png,ppm,tif,tiff,webp}`, sorted). Weights: the `weights`
//! input (a `download` stage's output) or the `weights` parameter (a `.pth`/`.pt`/`.safetensors`
//! file). Output: `stats.npz` (`mu`, `sigma`, as `python -m pytorch_fid --save-stats` writes;
//! usable with pytorch-fid too). Metrics: `n`, `dims`. Fewer images than `dims` log a warning
//! (the covariance is singular).
//!
//! ```toml
//! [stages.inception_weights]
//! kind = "download"
//! source = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
//! sha256 = "6726825d"                 # torch.hub's name prefix pin
//!
//! [stages.face_val_stats]
//! kind = "fid_stats"
//! inputs = { weights = "inception_weights" }
//! path = "${data_root}/face/val"
//! dims = 2048                         # default; 64, 192, 768 also work
//! batch_size = 50                     # default
//! ```

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::Dataset;
use crate::metrics::fid::FidStatistics;
use crate::metrics::inception_features::{featurise, load_image_set, FeatureKind};
use crate::models::inception::{block_of_dims, FidInception, FEATURE_DIMS};
use crate::stage::{
    InputSpec, Inputs, Metrics, ParamError, Stage, StageContext, StageOutcome, StageShape,
};

/// The optional images input of the kinds that featurise one image set.
pub(super) const IMAGES_INPUT: InputSpec = InputSpec::optional(
    "images",
    "images (a folder output, a dataset, a sample stage), instead of `path`",
);

/// The optional Inception weights input of the kinds that featurise with Inception.
pub(super) const WEIGHTS_INPUT: InputSpec = InputSpec::optional(
    "weights",
    "the FID Inception weights (a download stage), instead of `weights`",
);

/// The file a `fid_stats` stage writes.
pub const STATS_FILE: &str = "stats.npz";

/// The `fid_stats` stage kind.
pub struct FidStatsStage;

/// Parameters of a `fid_stats` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FidStatsParams {
    /// A folder of images, when there is no `images` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub path: Option<Utf8PathBuf>,
    /// The Inception weights file, when there is no `weights` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub weights: Option<Utf8PathBuf>,
    /// Feature dimensions: 64, 192, 768 or 2048.
    #[serde(default = "default_dims")]
    pub dims: i64,
    /// Images per forward pass (does not change the result).
    #[serde(default = "default_batch_size", skip_serializing)]
    pub batch_size: usize,
}

/// `dims` must be a block pytorch-fid can read features from.
pub(super) fn check_dims(dims: i64) -> Result<(), ParamError> {
    ParamError::check(
        FEATURE_DIMS.contains(&dims),
        "dims",
        "one of pytorch-fid's 64, 192, 768 or 2048",
    )
}

pub(super) fn check_batch_size(batch_size: usize) -> Result<(), ParamError> {
    ParamError::check(batch_size >= 1, "batch_size", "at least 1")
}

pub(super) fn default_dims() -> i64 {
    2048
}
pub(super) fn default_batch_size() -> usize {
    50
}

impl Stage for FidStatsStage {
    type Params = FidStatsParams;
    const KIND: &'static str = "fid_stats";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "pytorch-fid statistics (mu, sigma) of an image set, as stats.npz";
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

[stages.val_stats]
kind = "fid_stats"
inputs = { images = "digits.val", weights = "inception_weights" }
dims = 2048                         # default; 64, 192, 768 also work
batch_size = 50                     # default
"#;

    fn validate(params: &FidStatsParams) -> Result<(), ParamError> {
        check_dims(params.dims)?;
        check_batch_size(params.batch_size)
    }

    fn shape(params: &FidStatsParams) -> StageShape {
        StageShape {
            external_paths: params.path.iter().chain(&params.weights).cloned().collect(),
            uses_device: true,
            ..StageShape::default()
        }
    }

    fn run(params: FidStatsParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        block_of_dims(params.dims)?;
        let images = images_of(ctx, "images", params.path.as_deref())?;
        let model = load_model(ctx, params.weights.as_deref())?;
        let stats = statistics(ctx, &model, &images, params.dims, params.batch_size)?;
        stats.write_npz(&ctx.out_dir().join(STATS_FILE))?;
        let metrics = Metrics::from([
            ("n".to_owned(), images.len() as f64),
            ("dims".to_owned(), params.dims as f64),
        ]);
        let summary = vec![format!(
            "{STATS_FILE}: {}-d statistics of {} images",
            params.dims,
            images.len()
        )];
        Ok(StageOutcome {
            metrics,
            summary,
            ..StageOutcome::default()
        })
    }
}

/// The images of input `name` or of the folder `path` (exactly one of them).
pub(super) fn images_of(
    ctx: &StageContext,
    name: &str,
    path: Option<&Utf8Path>,
) -> anyhow::Result<Dataset> {
    let source = match (ctx.inputs().get(name), path) {
        (Some(input), None) => input.dir.clone(),
        (None, Some(path)) => path.to_owned(),
        (Some(_), Some(_)) => anyhow::bail!("stage `{}` has both an `{name}` input and a `path`: keep one", ctx.name()),
        (None, None) => anyhow::bail!(
            "stage `{}` has no images: add an `{name}` input (a stage output) or a `path` parameter (a folder)",
            ctx.name()
        ),
    };
    let images = load_image_set(&source, ctx.progress().clone())?;
    ctx.log(format!(
        "{}: {} images of {}x{}",
        source,
        images.len(),
        images.shape[2],
        images.shape[3]
    ));
    Ok(images)
}

/// The network from the `weights` input (the weights file in a download stage's output) or the
/// `weights` parameter.
pub(super) fn load_model(
    ctx: &StageContext,
    param: Option<&Utf8Path>,
) -> anyhow::Result<FidInception> {
    let file = match (ctx.inputs().get("weights"), param) {
        (Some(input), None) => weights_in(&input.dir)?,
        (None, Some(path)) => path.to_owned(),
        (Some(_), Some(_)) => anyhow::bail!("stage `{}` has both a `weights` input and parameter: keep one", ctx.name()),
        (None, None) => anyhow::bail!(
            "stage `{}` needs the Inception weights: add a `weights` input (a download stage of {}) or a `weights` parameter",
            ctx.name(),
            crate::models::inception::WEIGHTS_URL
        ),
    };
    Ok(FidInception::load(&file, ctx.device())?)
}

/// The one weights file (`.pth`, `.pt`, `.safetensors`) in a directory.
fn weights_in(dir: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    let mut found = Vec::new();
    for entry in dir.read_dir_utf8()? {
        let path = entry?.into_path();
        if matches!(path.extension(), Some("pth" | "pt" | "safetensors")) {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("{dir} holds no weights file (.pth, .pt or .safetensors)"),
        many => anyhow::bail!(
            "{dir} holds {} weights files; point the `weights` parameter at one",
            many.len()
        ),
    }
}

/// Features of all `images` in batches, as one progress phase that Ctrl-C can stop.
pub(super) fn features(
    ctx: &StageContext,
    model: &FidInception,
    images: &Dataset,
    batch_size: usize,
    kind: FeatureKind,
) -> anyhow::Result<Tensor> {
    let pixels = images.images_tensor();
    let mut rows = Vec::new();
    ctx.in_chunks("inception features", images.len(), batch_size, |range| {
        rows.push(featurise(model, &pixels, range, kind)?);
        Ok(())
    })?;
    Ok(Tensor::cat(&rows, 0))
}

/// FID statistics of `images`, warning when there are too few for the dimension.
pub(super) fn statistics(
    ctx: &StageContext,
    model: &FidInception,
    images: &Dataset,
    dims: i64,
    batch_size: usize,
) -> anyhow::Result<FidStatistics> {
    let rows = features(ctx, model, images, batch_size, FeatureKind::Fid { dims })?;
    statistics_of(ctx, &rows)
}

/// FID statistics of feature rows `[N, D]`, warning when there are too few for the dimension.
pub(super) fn statistics_of(
    ctx: &StageContext,
    features: &Tensor,
) -> anyhow::Result<FidStatistics> {
    let stats = FidStatistics::of_features(features)?;
    if let Some(warning) = stats.few_samples_warning() {
        tracing::warn!(stage = %ctx.name(), "{warning}");
        ctx.log(format!("warning: {warning}"));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, images_and_weights, tempdir};

    #[test]
    fn writes_pytorch_fid_statistics_of_a_folder() {
        let (_guard, root) = tempdir();
        let (folder, weights) = images_and_weights(&root, 5);
        let mut ctx = context(&root, Vec::new());
        std::fs::create_dir_all(ctx.out_dir()).unwrap();
        let params = FidStatsParams {
            path: Some(folder),
            weights: Some(weights),
            dims: 64,
            batch_size: 2,
        };
        let outcome = FidStatsStage::run(params, &mut ctx).unwrap();
        assert_eq!(outcome.metrics["n"], 5.0);
        let stats = FidStatistics::read_npz(&root.join("out").join(STATS_FILE)).unwrap();
        assert_eq!(stats.sigma.size(), vec![64, 64]);
    }

    #[test]
    fn refuses_missing_images_and_weights_of_another_network() {
        let (_guard, root) = tempdir();
        let (folder, _) = images_and_weights(&root, 2);
        let other = root.join("other.safetensors");
        Tensor::write_safetensors(
            &[("conv1.weight", Tensor::zeros([2, 2], tch::kind::FLOAT_CPU))],
            &other,
        )
        .unwrap();
        let mut ctx = context(&root, Vec::new());
        let no_images = FidStatsParams {
            path: None,
            weights: Some(other.clone()),
            dims: 64,
            batch_size: 2,
        };
        let err = FidStatsStage::run(no_images, &mut ctx)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no images"), "{err}");
        let wrong = FidStatsParams {
            path: Some(folder),
            weights: Some(other),
            dims: 64,
            batch_size: 2,
        };
        let err = format!("{:#}", FidStatsStage::run(wrong, &mut ctx).unwrap_err());
        assert!(
            err.contains("unexpected (1): conv1.weight") && err.contains("missing (472): "),
            "{err}"
        );
    }

    #[test]
    fn dims_must_be_an_inception_block_and_batches_not_empty() {
        let path = |text: &str| {
            crate::testing::params::<FidStatsStage>(text)
                .unwrap_err()
                .path
        };
        assert_eq!(path("dims = 1000"), ["dims"]);
        assert_eq!(path("batch_size = 0"), ["batch_size"]);
        assert!(crate::testing::params::<FidStatsStage>("dims = 768").is_ok());
    }
}
