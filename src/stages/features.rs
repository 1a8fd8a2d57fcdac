//! `features`: the feature extractor's outputs on images of the source and target domains, as a
//! feature set for t-SNE plots (coloured by digit and by domain).
//!
//! Inputs: `model` (a training stage's output), `source` and `target` (datasets, usually the
//! validation splits). At most `max_per_domain` images per domain are used: a seeded random
//! subset, kept in dataset order. Images are normalised with the statistics the model saved for
//! their domain (or their own, for a domain the model never saw) and converted to the model's
//! input like during training. For an ADDA model, source images go through the source encoder and
//! target images through the adapted target encoder, as in the paper's plots.
//!
//! Output: a feature set (`features.safetensors` + `features.json`, see
//! `hwrun::data::features`), domain 0 = source, 1 = target. Metrics: `n`, `dim`.
//!
//! ```toml
//! [stages.dann_features]
//! kind = "features"
//! inputs = { model = "dann", source = "mnistm.val", target = "usps.val" }
//! max_per_domain = 1000
//! ```

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::evaluate::{input_format, normalisation, NormaliseWith};
use crate::data::{Dataset, FeatureSet};
use crate::stage::{
    InputSpec, Inputs, Metrics, ParamError, Stage, StageContext, StageOutcome, StageShape,
};
use crate::training::checkpoint::LoadedClassifier;
use crate::training::evaluation::map_all;
use crate::training::setup;
use crate::training::DeviceDataset;

/// The `features` stage kind.
pub struct FeaturesStage;

/// Parameters of a `features` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesParams {
    /// Images per domain at most (a seeded random subset of larger sets).
    #[serde(default = "default_max_per_domain")]
    pub max_per_domain: usize,
}

fn default_max_per_domain() -> usize {
    1000
}

impl Stage for FeaturesStage {
    type Params = FeaturesParams;
    const KIND: &'static str = "features";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Feature-extractor outputs of source and target images (for t-SNE)";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required("model", "a trained digit classifier"),
        InputSpec::required("source", "source-domain images"),
        InputSpec::required("target", "target-domain images"),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.usps]
kind = "synthetic"
domain = "usps"
n_train = 200
n_val = 100

[stages.dann]
kind = "train_dann"
inputs = { source = "mnistm.train", target = "usps.train" }
epochs = 1

[stages.dann_features]
kind = "features"
inputs = { model = "dann", source = "mnistm.val", target = "usps.val" }
max_per_domain = 1000
"#;

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(params.max_per_domain >= 1, "max_per_domain", "at least 1")
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let model = LoadedClassifier::load(&ctx.input("model")?.dir, ctx.device())?;
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed());
        let source = subset(
            setup::load_input(ctx, "source")?,
            params.max_per_domain,
            &mut rng,
        );
        let target = subset(
            setup::load_input(ctx, "target")?,
            params.max_per_domain,
            &mut rng,
        );
        ctx.start_phase("features", 2);
        let source_rows = extract(&model, &source, ctx, |x| model.source_features(x))?;
        ctx.progress().inc(1);
        let target_rows = extract(&model, &target, ctx, |x| model.cnn.features(x, false))?;
        ctx.progress().inc(1);

        let features = Tensor::cat(&[source_rows, target_rows], 0)
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu);
        let (n, dim) = (features.size()[0] as usize, features.size()[1] as usize);
        let set = FeatureSet {
            features: Vec::<f32>::try_from(features.flatten(0, -1))?,
            n,
            dim,
            labels: source
                .labels
                .iter()
                .chain(&target.labels)
                .copied()
                .collect(),
            domains: std::iter::repeat_n(0, source.len())
                .chain(std::iter::repeat_n(1, target.len()))
                .collect(),
            class_names: model.meta.class_names.clone(),
            domain_names: vec![source.domain.clone(), target.domain.clone()],
        };
        set.validate()?;
        set.save(ctx.out_dir())?;
        let metrics = Metrics::from([("n".to_owned(), n as f64), ("dim".to_owned(), dim as f64)]);
        Ok(StageOutcome {
            metrics,
            summary: vec![set.summary()],
            ..Default::default()
        })
    }
}

/// At most `max` images of `dataset`, chosen at random, kept in order.
fn subset(dataset: Dataset, max: usize, rng: &mut ChaCha8Rng) -> Dataset {
    if dataset.len() <= max {
        return dataset;
    }
    let mut indices = sample(rng, dataset.len(), max).into_vec();
    indices.sort_unstable();
    dataset.select(&indices)
}

/// `[n, dim]` features of all images of `dataset` through `encoder`.
fn extract(
    model: &LoadedClassifier,
    dataset: &Dataset,
    ctx: &StageContext,
    encoder: impl Fn(&Tensor) -> Tensor,
) -> anyhow::Result<Tensor> {
    let norm = normalisation(model, dataset, NormaliseWith::Saved, ctx);
    let data = DeviceDataset::new(dataset, &norm, input_format(model), ctx.device())?;
    Ok(map_all(&data, encoder))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, tempdir, trained_model};

    #[test]
    fn writes_features_of_both_domains() {
        let (_guard, root) = tempdir();
        let model = trained_model(&root);
        let source = banded(30, 3, 16, 1);
        let target = banded(50, 1, 28, 2);
        let mut ctx = context(
            &root,
            vec![
                model,
                input(&root, "source", &source),
                input(&root, "target", &target),
            ],
        );
        let outcome = FeaturesStage::run(FeaturesParams { max_per_domain: 40 }, &mut ctx).unwrap();
        assert_eq!(outcome.metrics["n"], 70.0);
        let set = FeatureSet::load(&root.join("out")).unwrap();
        assert_eq!((set.n, set.dim), (70, 48));
        assert_eq!(set.domains.iter().filter(|&&d| d == 1).count(), 40);
    }

    #[test]
    fn max_per_domain_of_zero_is_refused() {
        let err = crate::testing::params::<FeaturesStage>("max_per_domain = 0").unwrap_err();
        assert_eq!(err.path, ["max_per_domain"]);
    }
}
