//! A training run's state at an epoch boundary, as named tensors: every variable of the model
//! (weights and buffers such as batch-norm statistics), every optimizer's moments and step count,
//! and the position of every data stream. Saved as safetensors by the resume checkpoints of
//! [`super::trainer`].

use std::collections::HashMap;

use camino::Utf8Path;
use tch::{nn, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the checkpoint has no tensor `{0}`")]
    Missing(String),
    #[error("the checkpoint's optimizer state does not fit this run: {0}")]
    Optimizer(#[from] crate::accel::AccelError),
    #[error("tensor `{name}` of the checkpoint has shape {found:?}, the run expects {expected:?}")]
    Shape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("cannot {action} checkpoint {path}: {message}")]
    Io {
        action: &'static str,
        path: String,
        message: String,
    },
}

/// Named tensors, in insertion order.
#[derive(Default)]
pub struct TrainingState {
    tensors: Vec<(String, Tensor)>,
}

impl Clone for TrainingState {
    fn clone(&self) -> Self {
        TrainingState {
            tensors: self
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.copy()))
                .collect(),
        }
    }
}

impl TrainingState {
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.push((name.into(), tensor));
    }

    /// Every variable of `vs` (trainable or not) under `prefix`.
    pub fn add_store(&mut self, prefix: &str, vs: &nn::VarStore) {
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, tensor) in variables {
            self.insert(format!("{prefix}.{name}"), tensor);
        }
    }

    pub fn into_map(self) -> HashMap<String, Tensor> {
        self.tensors.into_iter().collect()
    }

    /// Writes the state to `path` (safetensors, on the CPU).
    pub fn save(&self, path: &Utf8Path) -> Result<(), StateError> {
        let cpu: Vec<(&str, Tensor)> = self
            .tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.detach().to_device(Device::Cpu).contiguous()))
            .collect();
        Tensor::write_safetensors(&cpu, path).map_err(|e| StateError::Io {
            action: "write",
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads a state written by [`TrainingState::save`].
    pub fn load(path: &Utf8Path) -> Result<HashMap<String, Tensor>, StateError> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| StateError::Io {
            action: "read",
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(tensors.into_iter().collect())
    }
}

/// Copies every variable of `vs` from `state` (saved by [`TrainingState::add_store`] under
/// `prefix`).
pub fn restore_store(
    vs: &nn::VarStore,
    prefix: &str,
    state: &HashMap<String, Tensor>,
) -> Result<(), StateError> {
    for (name, mut var) in vs.variables() {
        let key = format!("{prefix}.{name}");
        let saved = state
            .get(&key)
            .ok_or_else(|| StateError::Missing(key.clone()))?;
        if saved.size() != var.size() {
            return Err(StateError::Shape {
                name: key,
                found: saved.size(),
                expected: var.size(),
            });
        }
        tch::no_grad(|| var.copy_(saved));
    }
    Ok(())
}
