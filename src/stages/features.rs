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
//! Batch norm (`bn_stats`): a DANN model saved with `bn_stats = "target"` keeps the source's
//! batch-norm statistics beside the target's. Training normalised each domain by its own
//! (`forward = "per_domain"`), so by default each domain goes through its own here too
//! (`"per_domain"`); `"shared"` runs both through the model's evaluation statistics (the
//! target's), which puts the source images off their training distribution: the behaviour
//! before both were kept, and the only one for models with one set of statistics.
//!
//! Output: a feature set (`features.safetensors` + `features.json`, see
//! `hwrun::data::features`), domain 0 = source, 1 = target, whose note (shown in the t-SNE
//! captions) says which statistics were used. Metrics: `n`, `dim`, `bn_per_domain` (1 or 0).
//!
//! ```toml
//! [stages.dann_features]
//! kind = "features"
//! inputs = { model = "dann", source = "mnistm.val", target = "usps.val" }
//! max_per_domain = 1000
//! # bn_stats = "shared"       # default: "per_domain" when the model keeps both domains'
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
    /// Which batch-norm statistics normalise each domain; absent: `per_domain` when the model
    /// keeps both domains' statistics, `shared` otherwise.
    #[serde(default)]
    pub bn_stats: Option<FeatureBn>,
}

/// Which batch-norm statistics the images of each domain go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureBn {
    /// Each domain through its own (the source's saved beside the target's), as trained.
    PerDomain,
    /// Both domains through the model's evaluation statistics.
    Shared,
}

#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error("`bn_stats = \"per_domain\"` needs a model that keeps both domains' batch-norm statistics (train_dann with `bn_stats = \"target\"`); the model at {path} keeps one set")]
    OneSetOfStatistics { path: camino::Utf8PathBuf },
}

fn default_max_per_domain() -> usize {
    1000
}

impl Stage for FeaturesStage {
    type Params = FeaturesParams;
    const KIND: &'static str = "features";
    const VERSION: u32 = 2;
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
        let model_dir = &ctx.input("model")?.dir;
        let model = LoadedClassifier::load(model_dir, ctx.device())?;
        let bn = match (params.bn_stats, model.has_source_statistics()) {
            (Some(FeatureBn::PerDomain), false) => {
                return Err(FeaturesError::OneSetOfStatistics {
                    path: model_dir.clone(),
                }
                .into())
            }
            (None, true) => FeatureBn::PerDomain,
            (None, false) => FeatureBn::Shared,
            (Some(bn), _) => bn,
        };
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
        let source_features = || extract(&model, &source, ctx, |x| model.source_features(x));
        let source_rows = match bn {
            FeatureBn::PerDomain => model.with_source_statistics(source_features)?,
            FeatureBn::Shared => source_features()?,
        };
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
            note: Some(bn_note(bn, &model).to_owned()),
        };
        set.validate()?;
        set.save(ctx.out_dir())?;
        let metrics = Metrics::from([
            ("n".to_owned(), n as f64),
            ("dim".to_owned(), dim as f64),
            (
                "bn_per_domain".to_owned(),
                f64::from(u8::from(bn == FeatureBn::PerDomain)),
            ),
        ]);
        Ok(StageOutcome {
            metrics,
            summary: vec![set.summary()],
            ..Default::default()
        })
    }
}

/// Which statistics normalised each domain, for the captions.
fn bn_note(bn: FeatureBn, model: &LoadedClassifier) -> &'static str {
    match (
        bn,
        model.source_feature.is_some(),
        model.has_source_statistics(),
    ) {
        (_, true, _) => "each domain through its own encoder and its batch-norm statistics",
        (FeatureBn::PerDomain, false, _) => "each domain through its own batch-norm statistics",
        (FeatureBn::Shared, false, true) => {
            "both domains through the target's batch-norm statistics"
        }
        (FeatureBn::Shared, false, false) => {
            "both domains through the model's batch-norm statistics"
        }
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
        let params = FeaturesParams {
            max_per_domain: 40,
            bn_stats: None,
        };
        let outcome = FeaturesStage::run(params, &mut ctx).unwrap();
        assert_eq!(outcome.metrics["n"], 70.0);
        let set = FeatureSet::load(&root.join("out")).unwrap();
        assert_eq!((set.n, set.dim), (70, 48));
        assert_eq!(set.domains.iter().filter(|&&d| d == 1).count(), 40);
    }

    /// Fresh `dann_bn` weights, shared by the models of a test: other tests draw from the same
    /// global torch generator in parallel, so two initialisations could differ.
    fn fresh_weights() -> (tch::nn::VarStore, crate::models::DigitCnnConfig) {
        use crate::models::{Arch, DigitCnn, DigitCnnConfig};
        let config = DigitCnnConfig {
            arch: Arch::DannBn,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _cnn = DigitCnn::new(&vs.root(), config).unwrap();
        (vs, config)
    }

    /// The model of `weights` saved with target statistics `target_shift` away from its own (and
    /// the source's, `source_shift` away, under `source_bn.` when given).
    fn model_with_statistics(
        root: &camino::Utf8Path,
        name: &str,
        (vs, config): &(tch::nn::VarStore, crate::models::DigitCnnConfig),
        target_shift: f64,
        source_shift: Option<f64>,
    ) -> (String, crate::stage::InputArtifact) {
        use crate::models::ModelFamily;
        use crate::training::checkpoint::{named_variables, save, ModelMeta, SOURCE_BN};
        use crate::training::dann::is_batch_norm_statistic;
        let shifted = |shift: f64| -> Vec<(String, Tensor)> {
            named_variables(&[vs])
                .into_iter()
                .map(|(name, t)| {
                    let t = if is_batch_norm_statistic(&name) {
                        t.copy() + shift
                    } else {
                        t
                    };
                    (name, t)
                })
                .collect()
        };
        let mut tensors = shifted(target_shift);
        let mut parts = vec!["feature".to_owned(), "classifier".to_owned()];
        if let Some(shift) = source_shift {
            tensors.extend(
                shifted(shift)
                    .into_iter()
                    .filter(|(name, _)| is_batch_norm_statistic(name))
                    .map(|(name, t)| (format!("{SOURCE_BN}.{name}"), t)),
            );
            parts.push(SOURCE_BN.to_owned());
        }
        let meta = ModelMeta {
            method: "dann".into(),
            model: ModelFamily::DigitCnn(*config),
            class_names: Dataset::digit_classes(),
            normalisation: vec![],
            parts,
        };
        let dir = root.join(name);
        save(&dir, &tensors, &meta, "arch").unwrap();
        let artifact = crate::stage::InputArtifact {
            dir,
            stage: "model".into(),
            kind: "train_dann".into(),
            params: serde_json::Value::Null,
            outcome: Default::default(),
        };
        ("model".into(), artifact)
    }

    /// The features of source and target (and the set's note) of `model` with `bn_stats`.
    fn features_of(
        root: &camino::Utf8Path,
        model: (String, crate::stage::InputArtifact),
        bn_stats: Option<FeatureBn>,
    ) -> anyhow::Result<(Vec<f32>, Vec<f32>, String)> {
        let run_root = root.join(format!("run-{}", model.1.dir.file_name().unwrap()));
        let mut ctx = context(
            &run_root,
            vec![
                model,
                input(&run_root, "source", &banded(8, 3, 28, 1)),
                input(&run_root, "target", &banded(8, 3, 28, 2)),
            ],
        );
        let params = FeaturesParams {
            max_per_domain: 8,
            bn_stats,
        };
        FeaturesStage::run(params, &mut ctx)?;
        let set = FeatureSet::load(&run_root.join("out")).unwrap();
        let half = set.features.len() / 2;
        Ok((
            set.features[..half].to_vec(),
            set.features[half..].to_vec(),
            set.note.unwrap(),
        ))
    }

    #[test]
    fn each_domain_goes_through_its_own_batch_norm_statistics() {
        let (_guard, root) = tempdir();
        let weights = fresh_weights();
        let both = model_with_statistics(&root, "both", &weights, 0.5, Some(-0.5));
        let (source, target, note) = features_of(&root, both.clone(), None).unwrap();
        assert_eq!(note, "each domain through its own batch-norm statistics");
        // The same weights saved with the source's statistics as their only set: the source
        // features of the default (per-domain) run are theirs, the target's are not.
        let source_only = model_with_statistics(&root, "source_only", &weights, -0.5, None);
        let (reference, other, _) =
            features_of(&root, source_only, Some(FeatureBn::Shared)).unwrap();
        assert!(
            source == reference,
            "the source went through other statistics"
        );
        assert!(
            target != other,
            "the target went through the source's statistics"
        );
        // `shared` puts the source through the target's statistics, which differ.
        let shared = {
            let (_guard, again) = tempdir();
            features_of(&again, both, Some(FeatureBn::Shared)).unwrap()
        };
        assert!(shared.0 != source, "`shared` used the source's statistics");
        assert!(
            shared.1 == target,
            "the target's statistics depend on `bn_stats`"
        );
        assert_eq!(
            shared.2,
            "both domains through the target's batch-norm statistics"
        );
    }

    #[test]
    fn per_domain_statistics_need_a_model_that_keeps_both() {
        let (_guard, root) = tempdir();
        let one = model_with_statistics(&root, "one", &fresh_weights(), 0.0, None);
        let (_, _, note) = features_of(&root, one.clone(), None).unwrap();
        assert_eq!(
            note,
            "both domains through the model's batch-norm statistics"
        );
        let (_guard, again) = tempdir();
        let err = features_of(&again, one, Some(FeatureBn::PerDomain)).unwrap_err();
        assert!(err.to_string().contains("keeps one set"), "{err}");
    }

    #[test]
    fn max_per_domain_of_zero_is_refused() {
        let err = crate::testing::params::<FeaturesStage>("max_per_domain = 0").unwrap_err();
        assert_eq!(err.path, ["max_per_domain"]);
    }
}
