//! `evaluate`: accuracy of a trained digit model (`train_classifier`, `train_dann` or
//! `train_adda`) on a labelled dataset, overall and per class.
//!
//! The label path only is used: feature extractor + label predictor (for DANN that is evaluation
//! with lambda 0; for ADDA the feature extractor is the adapted target encoder). Images are
//! normalised with the statistics the model saved for the dataset's domain (`normalise =
//! "saved"`, falling back to the dataset's own statistics for a domain the model never saw, which
//! is logged) or always with the dataset's own (`normalise = "data"`), and converted to the
//! model's input size and channels like during training.
//!
//! It is also the digit-accuracy evaluator of generated digits: a `sample` or `sample_diffusion`
//! output is a dataset labelled by the conditioning class of each `{class}_{idx:03}.png`.
//!
//! Inputs: `model` (a training stage's output), `data` (a dataset). Outputs: `evaluation.json`
//! (accuracy, per-class accuracy, confusion matrix `[true][predicted]`, image count) and the
//! confusion matrix as a figure (`confusion.png`, shown in the report). Metrics:
//! `accuracy` and `accuracy.class_0`, `accuracy.class_1`, ... (by class index). Unlabelled
//! images are skipped; a dataset without labels is an error.
//!
//! ```toml
//! [stages.dann_on_usps]
//! kind = "evaluate"
//! inputs = { model = "dann", data = "usps.val" }
//! normalise = "saved"       # or "data"
//! ```

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::stage::{InputSpec, Inputs, Metrics, Stage, StageContext, StageOutcome, StageShape};
use crate::training::checkpoint::LoadedClassifier;
use crate::training::evaluation::{accuracy, confusion_matrix, per_class_accuracy, predict};
use crate::training::setup;
use crate::training::{DeviceDataset, InputFormat, Normalisation};
use crate::viz::{confusion_png, ConfusionPlot};

/// The confusion-matrix figure an `evaluate` stage writes.
pub const CONFUSION_FILE: &str = "confusion.png";

/// The `evaluate` stage kind.
pub struct EvaluateStage;

/// Which statistics normalise the evaluated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NormaliseWith {
    /// The model's saved statistics for the data's domain (the data's own if there are none).
    Saved,
    /// The evaluated data's own statistics.
    Data,
}

/// Parameters of an `evaluate` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// `saved` (default) or `data`: where the normalisation mean/std come from.
    #[serde(default = "default_normalise")]
    pub normalise: NormaliseWith,
}

fn default_normalise() -> NormaliseWith {
    NormaliseWith::Saved
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("dataset `{domain}` has {data} classes but the model predicts {model}; evaluate it with a model trained on the same classes")]
    ClassCountMismatch {
        domain: String,
        data: usize,
        model: usize,
    },
    #[error("dataset `{domain}` has no labelled images to score")]
    NoLabels { domain: String },
}

#[derive(Serialize)]
struct Evaluation<'a> {
    accuracy: f64,
    images: usize,
    per_class: Vec<Option<f64>>,
    class_names: &'a [String],
    confusion: Vec<Vec<u64>>,
}

/// The normalisation of `data` for `model` under `with`, logging a fallback.
pub(crate) fn normalisation(
    model: &LoadedClassifier,
    data: &Dataset,
    with: NormaliseWith,
    ctx: &StageContext,
) -> Normalisation {
    match (
        with,
        model.meta.normalisation_for(&data.domain, data.shape[1]),
    ) {
        (NormaliseWith::Saved, Some(saved)) => saved.clone(),
        (NormaliseWith::Saved, None) => {
            ctx.log(format!(
                "the model has no statistics for domain `{}` ({} channels); normalising with the data's own",
                data.domain, data.shape[1]
            ));
            Normalisation::of(data)
        }
        (NormaliseWith::Data, _) => Normalisation::of(data),
    }
}

/// The input format a loaded model expects.
pub(crate) fn input_format(model: &LoadedClassifier) -> InputFormat {
    InputFormat {
        channels: model.config.channels,
        image_size: model.config.image_size,
    }
}

impl Stage for EvaluateStage {
    type Params = EvaluateParams;
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "Accuracy of a trained digit model on a dataset, overall and per class";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required(
            "model",
            "a trained digit classifier (train_classifier, train_dann, train_adda)",
        ),
        InputSpec::required("data", "a labelled dataset"),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.source_only]
kind = "train_classifier"
inputs = { train = "mnistm.train" }
epochs = 1

[stages.on_val]
kind = "evaluate"
inputs = { model = "source_only", data = "mnistm.val" }
"#;

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape {
            uses_device: true,
            ..Default::default()
        }
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        setup::start(ctx);
        let model = LoadedClassifier::load(&ctx.input("model")?.dir, ctx.device())?;
        let data = setup::load_input(ctx, "data")?;
        let classes = model.meta.class_names.len();
        if data.classes.len() != classes {
            return Err(EvaluateError::ClassCountMismatch {
                domain: data.domain,
                data: data.classes.len(),
                model: classes,
            }
            .into());
        }
        let norm = normalisation(&model, &data, params.normalise, ctx);
        let images = DeviceDataset::new(&data, &norm, input_format(&model), ctx.device())?;
        ctx.start_phase("evaluate", 1);
        // A model that keeps both domains' batch-norm statistics evaluates its own source
        // domain with the source's, as training normalised it (see `features`).
        let on_source = model.has_source_statistics()
            && model.meta.normalisation.first().map(|n| &n.domain) == Some(&data.domain);
        let predict_all = || predict(&images, |x| model.cnn.logits(x, false));
        let predictions = if on_source {
            ctx.log("the source domain, through its own batch-norm statistics");
            model.with_source_statistics(predict_all)
        } else {
            predict_all()
        };
        ctx.progress().inc(1);
        let labels = images.labels();
        let overall = accuracy(&predictions, labels).ok_or_else(|| EvaluateError::NoLabels {
            domain: data.domain.clone(),
        })?;
        let per_class = per_class_accuracy(&predictions, labels, classes);

        let report = Evaluation {
            accuracy: overall,
            images: data.len(),
            per_class: per_class.clone(),
            class_names: &model.meta.class_names,
            confusion: confusion_matrix(&predictions, labels, classes)?,
        };
        std::fs::create_dir_all(ctx.out_dir())?;
        std::fs::write(
            ctx.out_dir().join("evaluation.json"),
            serde_json::to_vec_pretty(&report)?,
        )?;
        let title = format!("{} on {}: accuracy {overall:.3}", ctx.name(), data.domain);
        confusion_png(
            &ctx.out_dir().join(CONFUSION_FILE),
            &ConfusionPlot {
                title: &title,
                counts: &report.confusion,
                class_names: &model.meta.class_names,
            },
        )?;
        let mut outcome = StageOutcome::default();
        outcome.figure(
            CONFUSION_FILE,
            "confusion matrix: rows = true class, columns = predicted, row-normalised shading",
        );

        let mut metrics = Metrics::from([("accuracy".to_owned(), overall)]);
        for (class, acc) in per_class.iter().enumerate() {
            if let Some(acc) = acc {
                metrics.insert(format!("accuracy.class_{class}"), *acc);
            }
        }
        let line = format!(
            "evaluate {} model on {}: accuracy {overall:.4} ({} images)",
            model.meta.method,
            data.domain,
            data.len()
        );
        ctx.log(&line);
        outcome.metrics = metrics;
        outcome.summary = vec![line];
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{banded, context, input, tempdir, trained_model};

    #[test]
    fn reports_overall_and_per_class_accuracy() {
        let (_guard, root) = tempdir();
        let model = trained_model(&root);
        let data = banded(40, 1, 20, 9);
        let mut ctx = context(&root, vec![model, input(&root, "data", &data)]);
        let outcome = EvaluateStage::run(
            EvaluateParams {
                normalise: NormaliseWith::Saved,
            },
            &mut ctx,
        )
        .unwrap();
        let acc = outcome.metrics["accuracy"];
        assert!((0.0..=1.0).contains(&acc));
        assert!(
            outcome.metrics.contains_key("accuracy.class_9"),
            "{outcome:?}"
        );
        assert!(root.join("out/evaluation.json").exists());
        assert!(root.join("out").join(CONFUSION_FILE).is_file());
        assert_eq!(outcome.figures[0].file, CONFUSION_FILE);
    }
}
