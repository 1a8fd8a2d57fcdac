//! The model artifact of the training stages:
//!
//! - `model.safetensors`: the weights under PyTorch `state_dict` names (`feature.conv1.weight`,
//!   `classifier.fc3.bias`, `domain.fc1.weight`, ...), loadable with
//!   `safetensors.torch.load_file`;
//! - `model.json`: [`ModelMeta`] (method, architecture, input size, normalisation per domain,
//!   which parts the file holds);
//! - `architecture.txt`: the PyTorch-style module tree with the parameter count.
//!
//! [`LoadedModel::load`] rebuilds the label path (`feature` + `classifier`, plus ADDA's
//! `source_feature`) for `evaluate` and `features`.

use std::collections::HashMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use super::batches::Normalisation;
use crate::models::digit_cnn::feature_extractor;
use crate::models::{DigitCnn, DigitCnnConfig, ModelError, Sequential};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
pub const ARCHITECTURE_FILE: &str = "architecture.txt";

/// Prefix of ADDA's source encoder in the weights; the target encoder is `feature`.
pub const SOURCE_FEATURE: &str = "source_feature";

/// What `model.json` says about the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `classifier`, `dann` or `adda`.
    pub method: String,
    pub model: DigitCnnConfig,
    pub class_names: Vec<String>,
    /// Statistics of each training set, found again by domain name.
    pub normalisation: Vec<Normalisation>,
    /// Top-level prefixes present in the weights (`feature`, `classifier`, ...).
    pub parts: Vec<String>,
}

impl ModelMeta {
    /// The saved statistics of `domain` with `channels` channels, if the model was trained on it.
    pub fn normalisation_for(&self, domain: &str, channels: usize) -> Option<&Normalisation> {
        self.normalisation.iter().find(|n| n.domain == domain && n.mean.len() == channels)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read model at {path}: {message} (is this the output of a train_* stage?)")]
    Read { path: Utf8PathBuf, message: String },
    #[error("cannot write model to {path}: {message}")]
    Write { path: Utf8PathBuf, message: String },
    #[error("{path} has no tensor `{name}`; it was written by a different model")]
    MissingTensor { path: Utf8PathBuf, name: String },
    #[error("tensor `{name}` in {path} has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch { path: Utf8PathBuf, name: String, found: Vec<i64>, expected: Vec<i64> },
    #[error("model.json describes an invalid model: {0}")]
    Model(#[from] ModelError),
}

/// The named variables of `stores`, sorted by name, for [`save`].
pub fn named_variables(stores: &[&nn::VarStore]) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = stores.iter().flat_map(|vs| vs.variables()).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Writes `model.safetensors`, `model.json` and `architecture.txt` into `dir`.
pub fn save(dir: &Utf8Path, tensors: &[(String, Tensor)], meta: &ModelMeta, architecture: &str) -> Result<(), CheckpointError> {
    let write_err = |file: &str, message: String| CheckpointError::Write { path: dir.join(file), message };
    std::fs::create_dir_all(dir).map_err(|e| write_err("", e.to_string()))?;
    let cpu: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, dir.join(WEIGHTS_FILE)).map_err(|e| write_err(WEIGHTS_FILE, e.to_string()))?;
    let json = serde_json::to_vec_pretty(meta).map_err(|e| write_err(META_FILE, e.to_string()))?;
    std::fs::write(dir.join(META_FILE), json).map_err(|e| write_err(META_FILE, e.to_string()))?;
    std::fs::write(dir.join(ARCHITECTURE_FILE), architecture).map_err(|e| write_err(ARCHITECTURE_FILE, e.to_string()))
}

/// Reads `model.json` from a model directory.
pub fn read_meta(dir: &Utf8Path) -> Result<ModelMeta, CheckpointError> {
    let path = dir.join(META_FILE);
    let read_err = |message: String| CheckpointError::Read { path: path.clone(), message };
    let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))
}

/// The label path of a trained model, ready for inference.
pub struct LoadedModel {
    pub meta: ModelMeta,
    pub cnn: DigitCnn,
    /// ADDA's source encoder, when the model has one.
    pub source_feature: Option<Sequential>,
    _vs: nn::VarStore,
}

impl LoadedModel {
    /// Rebuilds the model described by `dir/model.json` and loads its weights on `device`.
    pub fn load(dir: &Utf8Path, device: Device) -> Result<Self, CheckpointError> {
        let meta = read_meta(dir)?;
        let vs = nn::VarStore::new(device);
        let cnn = DigitCnn::new(&vs.root(), meta.model)?;
        let source_feature = if meta.parts.iter().any(|p| p == SOURCE_FEATURE) {
            Some(feature_extractor(&(vs.root() / SOURCE_FEATURE), &meta.model)?)
        } else {
            None
        };
        load_weights(&vs, &dir.join(WEIGHTS_FILE))?;
        Ok(LoadedModel { meta, cnn, source_feature, _vs: vs })
    }

    /// Features of `xs` in eval mode with the encoder of the source domain (ADDA's source
    /// encoder if there is one, the shared feature extractor otherwise).
    pub fn source_features(&self, xs: &Tensor) -> Tensor {
        match &self.source_feature {
            Some(encoder) => encoder.forward_t(xs, false),
            None => self.cnn.features(xs, false),
        }
    }
}

/// Copies every variable of `vs` from the safetensors file at `path`; extra tensors are ignored.
pub fn load_weights(vs: &nn::VarStore, path: &Utf8Path) -> Result<(), CheckpointError> {
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| CheckpointError::Read { path: path.to_owned(), message: e.to_string() })?
        .into_iter()
        .collect();
    for (name, mut var) in vs.variables() {
        let source = tensors
            .get(&name)
            .ok_or_else(|| CheckpointError::MissingTensor { path: path.to_owned(), name: name.clone() })?;
        if source.size() != var.size() {
            return Err(CheckpointError::ShapeMismatch {
                path: path.to_owned(),
                name,
                found: source.size(),
                expected: var.size(),
            });
        }
        tch::no_grad(|| var.copy_(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    #[test]
    fn save_then_load_gives_the_same_logits() {
        tch::manual_seed(1);
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let config = DigitCnnConfig { arch: Arch::Mnist, channels: 3, image_size: 28, classes: 10 };
        let vs = nn::VarStore::new(Device::Cpu);
        let cnn = DigitCnn::new(&vs.root(), config).unwrap();
        let meta = ModelMeta {
            method: "classifier".into(),
            model: config,
            class_names: crate::data::Dataset::digit_classes(),
            normalisation: vec![],
            parts: vec!["feature".into(), "classifier".into()],
        };
        save(dir, &named_variables(&[&vs]), &meta, "arch").unwrap();
        let loaded = LoadedModel::load(dir, Device::Cpu).unwrap();
        assert_eq!(loaded.meta, meta);
        let x = Tensor::randn([2, 3, 28, 28], (tch::Kind::Float, Device::Cpu));
        assert!(loaded.cnn.logits(&x, false).equal(&cnn.logits(&x, false)));
    }
}
