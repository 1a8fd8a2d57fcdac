//! What every training stage does around its loop: seeding, threads, loading and checking the
//! input datasets, validation accuracy, writing the model directory and the outcome.

use anyhow::Context;
use camino::Utf8Path;
use tch::Tensor;

use super::batches::{BatchError, DomainData, InputFormat, Normalisation};
use super::checkpoint::{self, ModelMeta};
use super::epochs::History;
use super::evaluation;
use super::threads;
use crate::data::dataset::UNLABELLED;
use crate::data::Dataset;
use crate::models::summary::{architecture_text, parameter_count, ModuleTree};
use crate::stages::{Metrics, StageContext, StageOutcome};

/// Data-order stream of the source (or only) training set.
pub const SOURCE_STREAM: u64 = 1;
/// Data-order stream of the target training set.
pub const TARGET_STREAM: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("input `{input}` ({domain}) has {count} unlabelled images; this stage needs every {input} image labelled")]
    Unlabelled { input: String, domain: String, count: usize },
    #[error("input `{input}` ({domain}) is empty")]
    Empty { input: String, domain: String },
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
    let dataset = Dataset::load(dir).with_context(|| format!("input `{name}` of stage `{}`", ctx.name()))?;
    if dataset.is_empty() {
        return Err(SetupError::Empty { input: name.into(), domain: dataset.domain }.into());
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
        Err(SetupError::Unlabelled { input: input.into(), domain: dataset.domain.clone(), count })
    }
}

/// A validation set, normalised with `norm` (the statistics of the training set of its domain)
/// when it is of that domain, else with its own statistics.
pub fn validation_data(
    val: Option<&Dataset>,
    norm: &Normalisation,
    format: InputFormat,
    ctx: &StageContext,
) -> Result<Option<DomainData>, BatchError> {
    let Some(val) = val else { return Ok(None) };
    let own;
    let norm = if val.domain == norm.domain && val.shape[1] == norm.mean.len() {
        norm
    } else {
        ctx.log(format!("validation set `{}` is not of domain `{}`: normalising it with its own statistics", val.domain, norm.domain));
        own = Normalisation::of(val);
        &own
    };
    DomainData::new(val, norm, format, ctx.device()).map(Some)
}

/// Accuracy of `logits` on `val` as an epoch-record entry (nothing without a validation set).
pub fn val_accuracy(val: Option<&DomainData>, logits: impl Fn(&Tensor) -> Tensor) -> Vec<(&'static str, f64)> {
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
        .map(|record| record.iter().filter(|(k, _)| k.as_str() != "epoch").map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    let shown: Vec<String> = keys.iter().filter_map(|k| metrics.get(*k).map(|v| format!("{k} {v:.4}"))).collect();
    StageOutcome { metrics, summary: vec![format!("{headline}: {}", shown.join(", "))], ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_training_images_are_refused() {
        let d = Dataset::new(vec![0; 8], [2, 1, 2, 2], vec![0, UNLABELLED], Dataset::digit_classes(), "faces").unwrap();
        let err = require_labels(&d, "source").unwrap_err();
        assert!(err.to_string().contains("1 unlabelled"), "{err}");
    }
}
