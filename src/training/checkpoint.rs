//! The model artifact every training stage writes, for any model family:
//!
//! - `model.safetensors`: the weights under PyTorch `state_dict` names (`feature.conv1.weight`,
//!   `classifier.fc3.bias`, ...), loadable with `safetensors.torch.load_file`;
//! - `model.json`: [`ModelMeta`]: the training method, the tagged model description
//!   ([`ModelFamily`]: family and hyper-parameters, enough to rebuild the network), class names,
//!   the normalisation of each training domain, and which parts the weights hold;
//! - `architecture.txt`: the PyTorch-style module tree with the parameter count.
//!
//! [`Checkpoint::open`] reads the description; each consumer then rebuilds the part it needs
//! (the label path of a digit classifier for `evaluate` and `features`, a generator for
//! `sample`) and loads its weights, every missing tensor and shape mismatch named.

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use super::batches::Normalisation;
use super::dann::is_batch_norm_statistic;
use crate::models::digit_cnn::feature_extractor;
use crate::models::weights::{load_into, Unexpected, WeightsMismatch};
use crate::models::{DigitCnn, DigitCnnConfig, ModelError, ModelFamily, Stack};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
pub const ARCHITECTURE_FILE: &str = "architecture.txt";

/// Prefix of ADDA's source encoder in the weights; the target encoder is `feature`.
pub const SOURCE_FEATURE: &str = "source_feature";

/// Prefix of the source domain's batch-norm statistics in the weights of a model that evaluates
/// with the target's (`source_bn.feature.bn1.running_mean`, ...; DANN with `bn_stats =
/// "target"`). Consumers that load weights by variable name ignore them.
pub const SOURCE_BN: &str = "source_bn";

/// What `model.json` says about the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The training method (`classifier`, `dann`, `adda`, ...).
    pub method: String,
    pub model: ModelFamily,
    pub class_names: Vec<String>,
    /// Statistics of each training set, found again by domain name.
    pub normalisation: Vec<Normalisation>,
    /// Top-level prefixes present in the weights (`feature`, `classifier`, ...).
    pub parts: Vec<String>,
}

impl ModelMeta {
    /// The saved statistics of `domain` with `channels` channels, if the model was trained on it.
    pub fn normalisation_for(&self, domain: &str, channels: usize) -> Option<&Normalisation> {
        self.normalisation
            .iter()
            .find(|n| n.domain == domain && n.mean.len() == channels)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read model at {path}: {message} (is this the output of a train_* stage?)")]
    Read { path: Utf8PathBuf, message: String },
    #[error("cannot write model to {path}: {message}")]
    Write { path: Utf8PathBuf, message: String },
    #[error("the model at {path} is a `{found}` ({method}); this stage needs {expected}")]
    WrongFamily {
        path: Utf8PathBuf,
        found: &'static str,
        method: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Weights(#[from] WeightsMismatch),
    #[error("model.json describes an invalid model: {0}")]
    Model(#[from] ModelError),
    #[error("the model at {path} lists `{SOURCE_BN}` but its weights lack `{name}`")]
    MissingSourceStatistic { path: Utf8PathBuf, name: String },
}

/// The named variables of `stores`, sorted by name, for [`save`].
pub fn named_variables(stores: &[&nn::VarStore]) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = stores.iter().flat_map(|vs| vs.variables()).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Writes `model.safetensors`, `model.json` and `architecture.txt` into `dir`.
pub fn save(
    dir: &Utf8Path,
    tensors: &[(String, Tensor)],
    meta: &ModelMeta,
    architecture: &str,
) -> Result<(), CheckpointError> {
    let write_err = |file: &str, message: String| CheckpointError::Write {
        path: dir.join(file),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err("", e.to_string()))?;
    let cpu: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, dir.join(WEIGHTS_FILE))
        .map_err(|e| write_err(WEIGHTS_FILE, e.to_string()))?;
    let json = serde_json::to_vec_pretty(meta).map_err(|e| write_err(META_FILE, e.to_string()))?;
    std::fs::write(dir.join(META_FILE), json).map_err(|e| write_err(META_FILE, e.to_string()))?;
    std::fs::write(dir.join(ARCHITECTURE_FILE), architecture)
        .map_err(|e| write_err(ARCHITECTURE_FILE, e.to_string()))
}

/// A model directory whose description has been read.
pub struct Checkpoint {
    pub dir: Utf8PathBuf,
    pub meta: ModelMeta,
}

impl Checkpoint {
    /// Reads `dir/model.json`.
    pub fn open(dir: &Utf8Path) -> Result<Self, CheckpointError> {
        let path = dir.join(META_FILE);
        let read_err = |message: String| CheckpointError::Read {
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
        let meta = serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
        Ok(Checkpoint {
            dir: dir.to_owned(),
            meta,
        })
    }

    /// The family's error for a consumer that needs `expected`.
    pub fn wrong_family(&self, expected: &'static str) -> CheckpointError {
        CheckpointError::WrongFamily {
            path: self.dir.clone(),
            found: self.meta.model.name(),
            method: self.meta.method.clone(),
            expected,
        }
    }

    /// Copies the weights into every variable of `vs`; tensors of other parts are ignored.
    pub fn load_weights(&self, vs: &nn::VarStore) -> Result<(), CheckpointError> {
        let path = self.dir.join(WEIGHTS_FILE);
        let tensors = Tensor::read_safetensors(&path).map_err(|e| CheckpointError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(load_into(vs, tensors, Unexpected::Ignore, path.as_str())?)
    }

    /// For every batch-norm running statistic of `vs`, the variable and the source domain's
    /// value saved under [`SOURCE_BN`]; `None` when the model has only one set of statistics.
    fn source_statistics(
        &self,
        vs: &nn::VarStore,
    ) -> Result<Option<Vec<(Tensor, Tensor)>>, CheckpointError> {
        if !self.meta.parts.iter().any(|p| p == SOURCE_BN) {
            return Ok(None);
        }
        let path = self.dir.join(WEIGHTS_FILE);
        let mut saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
            .map_err(|e| CheckpointError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?
            .into_iter()
            .collect();
        let mut pairs = Vec::new();
        for (name, variable) in vs.variables() {
            if !is_batch_norm_statistic(&name) {
                continue;
            }
            let key = format!("{SOURCE_BN}.{name}");
            let value =
                saved
                    .remove(&key)
                    .ok_or_else(|| CheckpointError::MissingSourceStatistic {
                        path: path.clone(),
                        name: key,
                    })?;
            pairs.push((variable, value.to_device(vs.device())));
        }
        Ok(Some(pairs))
    }
}

/// The label path of a trained digit classifier, ready for inference.
pub struct LoadedClassifier {
    pub meta: ModelMeta,
    pub config: DigitCnnConfig,
    pub cnn: DigitCnn,
    /// ADDA's source encoder, when the model has one.
    pub source_feature: Option<Stack>,
    /// Each batch-norm statistic and the source domain's value of it, when the model keeps
    /// both domains' statistics (its variables hold the target's).
    source_statistics: Option<Vec<(Tensor, Tensor)>>,
    _vs: nn::VarStore,
}

impl LoadedClassifier {
    /// Rebuilds the classifier described by `dir/model.json` and loads its weights on `device`.
    pub fn load(dir: &Utf8Path, device: Device) -> Result<Self, CheckpointError> {
        let checkpoint = Checkpoint::open(dir)?;
        let ModelFamily::DigitCnn(config) = checkpoint.meta.model.clone() else {
            return Err(checkpoint
                .wrong_family("a digit classifier (train_classifier, train_dann, train_adda)"));
        };
        let vs = nn::VarStore::new(device);
        let cnn = DigitCnn::new(&vs.root(), config)?;
        let source_feature = if checkpoint.meta.parts.iter().any(|p| p == SOURCE_FEATURE) {
            Some(feature_extractor(&(vs.root() / SOURCE_FEATURE), &config)?)
        } else {
            None
        };
        checkpoint.load_weights(&vs)?;
        let source_statistics = checkpoint.source_statistics(&vs)?;
        Ok(LoadedClassifier {
            meta: checkpoint.meta,
            config,
            cnn,
            source_feature,
            source_statistics,
            _vs: vs,
        })
    }

    /// Whether the model keeps the source domain's batch-norm statistics beside the target's.
    pub fn has_source_statistics(&self) -> bool {
        self.source_statistics.is_some()
    }

    /// `f`'s result with the source domain's batch-norm statistics in the model (when it keeps
    /// them; otherwise with its own); the saved statistics are back in place afterwards.
    pub fn with_source_statistics<T>(&self, f: impl FnOnce() -> T) -> T {
        let Some(pairs) = &self.source_statistics else {
            return f();
        };
        let swap = |pairs: &[(Tensor, Tensor)]| -> Vec<Tensor> {
            tch::no_grad(|| {
                pairs
                    .iter()
                    .map(|(variable, value)| {
                        let previous = variable.copy();
                        variable.shallow_clone().copy_(value);
                        previous
                    })
                    .collect()
            })
        };
        let saved = swap(pairs);
        let result = f();
        let restore: Vec<(Tensor, Tensor)> = pairs
            .iter()
            .zip(saved)
            .map(|((variable, _), value)| (variable.shallow_clone(), value))
            .collect();
        swap(&restore);
        result
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    fn meta(config: DigitCnnConfig) -> ModelMeta {
        ModelMeta {
            method: "classifier".into(),
            model: ModelFamily::DigitCnn(config),
            class_names: crate::data::Dataset::digit_classes(),
            normalisation: vec![],
            parts: vec!["feature".into(), "classifier".into()],
        }
    }

    #[test]
    fn save_then_load_gives_the_same_logits() {
        tch::manual_seed(1);
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let config = DigitCnnConfig {
            arch: Arch::Mnist,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let cnn = DigitCnn::new(&vs.root(), config).unwrap();
        save(dir, &named_variables(&[&vs]), &meta(config), "arch").unwrap();
        let loaded = LoadedClassifier::load(dir, Device::Cpu).unwrap();
        assert_eq!(loaded.meta, meta(config));
        let json = std::fs::read_to_string(dir.join(META_FILE)).unwrap();
        assert!(json.contains("\"family\": \"digit_cnn\""), "{json}");
        let x = Tensor::randn([2, 3, 28, 28], (tch::Kind::Float, Device::Cpu));
        assert!(loaded.cnn.logits(&x, false).equal(&cnn.logits(&x, false)));
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let config = DigitCnnConfig {
            arch: Arch::Mnist,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _cnn = DigitCnn::new(&vs.root(), config).unwrap();
        let tensors: Vec<(String, Tensor)> = named_variables(&[&vs])
            .into_iter()
            .filter(|(name, _)| name != "classifier.fc3.bias")
            .collect();
        save(dir, &tensors, &meta(config), "arch").unwrap();
        let err = LoadedClassifier::load(dir, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing (1): classifier.fc3.bias"), "{err}");
    }
}
