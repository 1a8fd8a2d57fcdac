//! What every training stage does around its loop: seeding, threads, loading and checking the
//! input datasets, validation accuracy, writing the model directory and the outcome.

use anyhow::Context;
use camino::Utf8Path;
use tch::Tensor;

use super::batches::{BatchError, DeviceDataset, InputFormat, Normalisation};
use super::checkpoint::{self, ModelMeta};
use super::evaluation;
use super::optimizer::OptimizerSettings;
use super::threads;
use super::trainer::History;
use crate::data::dataset::UNLABELLED;
use crate::data::Dataset;
use crate::models::summary::{architecture_text, parameter_count, ModuleTree};
use crate::models::DigitCnnParams;
use crate::stage::{Metrics, ParamError, StageContext, StageOutcome};

/// Data-order stream of the source (or only) training set.
pub const SOURCE_STREAM: u64 = 1;
/// Data-order stream of the target training set.
pub const TARGET_STREAM: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("input `{input}` ({domain}) has {count} unlabelled images; this stage needs every {input} image labelled")]
    Unlabelled {
        input: String,
        domain: String,
        count: usize,
    },
    #[error("input `{input}` ({domain}) is empty")]
    Empty { input: String, domain: String },
}

/// The training stages' default number of epochs.
pub fn default_epochs() -> usize {
    10
}

/// The training stages' default batch size.
pub fn default_batch_size() -> usize {
    128
}

/// Largest batch and image size the plan accepts; far beyond any real run, they catch typos
/// and overflows before anything allocates.
const MAX_BATCH: usize = 1 << 20;
const MAX_IMAGE_SIZE: i64 = 4096;
const MAX_EPOCHS: usize = 1 << 20;

/// A stage kind's defaults for its optimizer table `key`.
pub fn optimizer_defaults(key: &str, settings: OptimizerSettings) -> toml::Table {
    toml::Table::from_iter([(key.to_owned(), toml::Value::Table(settings.to_table()))])
}

/// Plan-time checks of the loop and network parameters every digit training stage has.
pub fn validate_loop(
    model: &DigitCnnParams,
    epochs: usize,
    batch_size: usize,
) -> Result<(), ParamError> {
    ParamError::check((1..=MAX_EPOCHS).contains(&epochs), "epochs", "at least 1")?;
    ParamError::check(
        (1..=MAX_BATCH).contains(&batch_size),
        "batch_size",
        "at least 1",
    )?;
    ParamError::check(matches!(model.channels, 1 | 3), "model.channels", "1 or 3")?;
    let min = model.arch.min_image_size();
    let expected = format!(
        "from {min} (the smallest input of `{}`) to {MAX_IMAGE_SIZE}",
        model.arch.name()
    );
    ParamError::check(
        (min..=MAX_IMAGE_SIZE).contains(&model.image_size),
        "model.image_size",
        &expected,
    )
}

/// Plan-time checks of the optimizer table `key`.
pub fn validate_optimizer(key: &str, settings: &OptimizerSettings) -> Result<(), ParamError> {
    match settings.out_of_range() {
        Some((field, expected)) => Err(ParamError::out_of_range(
            &format!("{key}.{field}"),
            expected,
        )),
        None => Ok(()),
    }
}

/// The input a network of `model` takes.
pub fn input_format(model: &DigitCnnParams) -> InputFormat {
    InputFormat {
        channels: model.channels,
        image_size: model.image_size,
    }
}

/// Seeds libtorch from the recipe seed (so weights initialise reproducibly) and sets the CPU
/// threads.
pub fn start(ctx: &StageContext) {
    tch::manual_seed(ctx.seed() as i64);
    threads::use_physical_cores();
}

/// Loads the dataset of input `name`.
pub fn load_input(ctx: &StageContext, name: &str) -> anyhow::Result<Dataset> {
    let dir = &ctx.input(name)?.dir;
    let dataset =
        Dataset::load(dir).with_context(|| format!("input `{name}` of stage `{}`", ctx.name()))?;
    if dataset.is_empty() {
        return Err(SetupError::Empty {
            input: name.into(),
            domain: dataset.domain,
        }
        .into());
    }
    Ok(dataset)
}

/// Loads input `name` if the recipe gives it.
pub fn load_optional(ctx: &StageContext, name: &str) -> anyhow::Result<Option<Dataset>> {
    if ctx.inputs().contains_key(name) {
        load_input(ctx, name).map(Some)
    } else {
        Ok(None)
    }
}

/// Fails unless every image of `dataset` (input `input`) has a label.
pub fn require_labels(dataset: &Dataset, input: &str) -> Result<(), SetupError> {
    let count = dataset.labels.iter().filter(|&&l| l == UNLABELLED).count();
    if count == 0 {
        Ok(())
    } else {
        Err(SetupError::Unlabelled {
            input: input.into(),
            domain: dataset.domain.clone(),
            count,
        })
    }
}

/// A validation set, normalised with `norm` (the statistics of the training set of its domain)
/// when it is of that domain, else with its own statistics.
pub fn validation_data(
    val: Option<&Dataset>,
    norm: &Normalisation,
    format: InputFormat,
    ctx: &StageContext,
) -> Result<Option<DeviceDataset>, BatchError> {
    let Some(val) = val else { return Ok(None) };
    let own;
    let norm = if val.domain == norm.domain && val.shape[1] == norm.mean.len() {
        norm
    } else {
        ctx.log(format!(
            "validation set `{}` is not of domain `{}`: normalising it with its own statistics",
            val.domain, norm.domain
        ));
        own = Normalisation::of(val);
        &own
    };
    DeviceDataset::new(val, norm, format, ctx.device()).map(Some)
}

/// Accuracy of `logits` on `val` as an epoch-record entry (nothing without a validation set).
pub fn val_accuracy(
    val: Option<&DeviceDataset>,
    logits: impl Fn(&Tensor) -> Tensor,
) -> Vec<(&'static str, f64)> {
    val.and_then(|data| evaluation::accuracy(&evaluation::predict(data, logits), data.labels()))
        .map(|acc| vec![("val_acc", acc)])
        .unwrap_or_default()
}

/// Writes the model directory (weights, `model.json`, `architecture.txt`) and `history.json`.
pub fn write_model_dir(
    dir: &Utf8Path,
    tensors: &[(String, Tensor)],
    meta: &ModelMeta,
    tree: &ModuleTree,
    stores: &[&tch::nn::VarStore],
    history: &History,
) -> anyhow::Result<()> {
    let text = architecture_text(tree, parameter_count(stores));
    checkpoint::save(dir, tensors, meta, &text)?;
    history.save(dir)?;
    Ok(())
}

/// Metrics = the last epoch's record without its number; summary = those of `keys` present.
pub fn outcome(history: &History, headline: &str, keys: &[&str]) -> StageOutcome {
    let metrics: Metrics = history
        .epochs
        .last()
        .map(|record| {
            record
                .iter()
                .filter(|(k, _)| k.as_str() != "epoch")
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        })
        .unwrap_or_default();
    let shown: Vec<String> = keys
        .iter()
        .filter_map(|k| metrics.get(*k).map(|v| format!("{k} {v:.4}")))
        .collect();
    StageOutcome {
        metrics,
        summary: vec![format!("{headline}: {}", shown.join(", "))],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_training_images_are_refused() {
        let d = Dataset::new(
            vec![0; 8],
            [2, 1, 2, 2],
            vec![0, UNLABELLED],
            Dataset::digit_classes(),
            "faces",
        )
        .unwrap();
        let err = require_labels(&d, "source").unwrap_err();
        assert!(err.to_string().contains("1 unlabelled"), "{err}");
    }
}
