//! `fid`: the Fréchet Inception Distance between two image sets, as pytorch-fid computes it.
//!
//! Inputs `a` and `b`: each a `fid_stats` stage's output (its `stats.npz` is used as it is) or
//! images (a dataset artifact or a folder, featurised here). Featurising needs the Inception
//! weights: the `weights` input (a `download` stage's output) or the `weights` parameter. Output:
//! `fid.txt` (`FID:  <value>`, as `python -m pytorch_fid` prints it). Metric: `fid`.
//!
//! ```toml
//! [stages.fid_vs_val]
//! kind = "fid"
//! inputs = { a = "samples", b = "face_val_stats", weights = "inception_weights" }
//! dims = 2048                         # default; must match the statistics' dimension
//! ```

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::fid_stats::{
    default_batch_size, default_dims, images_of, load_model, statistics, STATS_FILE,
};
use crate::metrics::fid::{frechet_distance, FidStatistics};
use crate::models::inception::{block_of_dims, FidInception};
use crate::stage::{InputSpec, Inputs, Metrics, Stage, StageContext, StageOutcome, StageShape};

/// The `fid` stage kind.
pub struct FidStage;

/// Parameters of a `fid` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FidParams {
    /// The Inception weights file, when there is no `weights` input (needed only for images).
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

impl Stage for FidStage {
    type Params = FidParams;
    const KIND: &'static str = "fid";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Frechet Inception Distance of two image sets or statistics (as pytorch-fid)";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required(
            "a",
            "images (a folder output, a dataset, a sample stage) or a fid_stats stage",
        ),
        InputSpec::required("b", "the same, for the other set"),
        InputSpec::optional(
            "weights",
            "the FID Inception weights (a download stage), instead of `weights`",
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
"#;

    fn shape(params: &FidParams) -> StageShape {
        StageShape {
            external_paths: params.weights.iter().cloned().collect(),
            uses_device: true,
            ..StageShape::default()
        }
    }

    fn run(params: FidParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        block_of_dims(params.dims)?;
        let mut model = None;
        let a = side(ctx, "a", &params, &mut model)?;
        let b = side(ctx, "b", &params, &mut model)?;
        let fid = frechet_distance(&a, &b)?;
        std::fs::write(ctx.out_dir().join("fid.txt"), format!("FID:  {fid}\n"))?;
        ctx.log(format!("FID: {fid}"));
        Ok(StageOutcome {
            metrics: Metrics::from([("fid".to_owned(), fid)]),
            summary: vec![format!("FID {fid:.4} ({}-d features)", params.dims)],
            ..StageOutcome::default()
        })
    }
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
    use crate::stages::fid_stats::tests::images_and_weights;
    use crate::stages::fid_stats::{FidStatsParams, FidStatsStage};
    use crate::stages::train_classifier::tests::{context, tempdir};

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
                weights: Some(weights),
                dims: 64,
                batch_size: 4,
            },
            &mut ctx,
        )
        .unwrap();
        assert!(outcome.metrics["fid"].abs() < 1e-6, "{outcome:?}");
    }
}
