//! Copying named tensors (from a safetensors file, a PyTorch file, a checkpoint) into a model's
//! variables, with every mismatch reported at once: a weights file of another network fails
//! with the list of names it lacks, the names it has that the model does not, and the shapes
//! that differ.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use tch::{nn, Tensor};

/// Whether tensors the model does not have are an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unexpected {
    /// Like `load_state_dict(strict=True)`: the file must hold exactly the model's variables.
    Refuse,
    /// The file may hold more (a checkpoint with a discriminator, loaded for its generator).
    Ignore,
}

/// Named tensors that do not fit a model, every difference listed: what a user needs to see that
/// the file is of another network, or of another version of this one.
#[derive(Debug, thiserror::Error)]
#[error("{source_name} does not fit {target}:{}", self.describe())]
pub struct WeightsMismatch {
    /// What the tensors came from (a file path, usually).
    pub source_name: String,
    /// What they were loaded into (`the model`, or the network's name).
    pub target: String,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub shapes: Vec<ShapeMismatch>,
}

/// A tensor whose name fits but whose shape does not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShapeMismatch {
    pub name: String,
    pub found: Vec<i64>,
    pub expected: Vec<i64>,
}

/// How many names of each list the message shows.
const SHOWN: usize = 12;

impl WeightsMismatch {
    /// Compares `found` with the names and shapes `target` expects; a name beyond those is
    /// unexpected unless `tolerated` accepts it.
    pub fn check(
        source_name: &str,
        target: &str,
        expected: &BTreeMap<String, Vec<i64>>,
        found: &HashMap<String, Tensor>,
        tolerated: impl Fn(&str) -> bool,
    ) -> Result<(), WeightsMismatch> {
        let mut missing = Vec::new();
        let mut shapes = Vec::new();
        for (name, shape) in expected {
            match found.get(name).map(Tensor::size) {
                None => missing.push(name.clone()),
                Some(size) if size != *shape => shapes.push(ShapeMismatch {
                    name: name.clone(),
                    found: size,
                    expected: shape.clone(),
                }),
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> = found
            .keys()
            .filter(|name| !expected.contains_key(*name) && !tolerated(name))
            .cloned()
            .collect();
        unexpected.sort();
        if missing.is_empty() && unexpected.is_empty() && shapes.is_empty() {
            return Ok(());
        }
        Err(WeightsMismatch {
            source_name: source_name.to_owned(),
            target: target.to_owned(),
            missing,
            unexpected,
            shapes,
        })
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        let mut list = |title: &str, items: Vec<String>| {
            if items.is_empty() {
                return;
            }
            let shown = items.iter().take(SHOWN).cloned().collect::<Vec<_>>();
            let _ = write!(text, "\n  {title} ({}): {}", items.len(), shown.join(", "));
            if items.len() > SHOWN {
                let _ = write!(text, ", ... ({} more)", items.len() - SHOWN);
            }
        };
        list("missing", self.missing.clone());
        list("unexpected", self.unexpected.clone());
        list(
            "shape mismatches",
            self.shapes
                .iter()
                .map(|s| {
                    format!(
                        "{} is {:?}, {} has {:?}",
                        s.name, s.found, self.target, s.expected
                    )
                })
                .collect(),
        );
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsFileError {
    #[error(transparent)]
    Pytorch(#[from] crate::pytorch_file::PytorchFileError),
    #[error("cannot read weights {path}: {message}")]
    Safetensors { path: String, message: String },
    #[error(transparent)]
    Mismatch(#[from] WeightsMismatch),
}

/// The named tensors of a weights file: safetensors by its extension, a PyTorch file
/// (`torch.save` of a state_dict, zip or legacy format) otherwise.
pub fn read_weights_file(
    path: &camino::Utf8Path,
) -> Result<Vec<(String, Tensor)>, WeightsFileError> {
    if path.extension() == Some("safetensors") {
        Tensor::read_safetensors(path).map_err(|e| WeightsFileError::Safetensors {
            path: path.to_string(),
            message: e.to_string(),
        })
    } else {
        Ok(crate::pytorch_file::read_state_dict(path)?)
    }
}

/// Loads the weights file at `path` into `vs`, which must hold exactly the file's tensors
/// (`load_state_dict(strict=True)`).
pub fn load_file_strict(
    vs: &nn::VarStore,
    path: &camino::Utf8Path,
) -> Result<(), WeightsFileError> {
    let tensors = read_weights_file(path)?;
    Ok(load_into(vs, tensors, Unexpected::Refuse, path.as_str())?)
}

/// Copies `tensors` into the variables of `vs` by name (converting dtype and device).
pub fn load_into(
    vs: &nn::VarStore,
    tensors: Vec<(String, Tensor)>,
    unexpected: Unexpected,
    source_name: &str,
) -> Result<(), WeightsMismatch> {
    let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    let variables = vs.variables();
    let expected = variables
        .iter()
        .map(|(name, var)| (name.clone(), var.size()))
        .collect();
    WeightsMismatch::check(source_name, "the model", &expected, &tensors, |_| {
        unexpected == Unexpected::Ignore
    })?;
    tch::no_grad(|| {
        for (name, mut var) in variables {
            if let Some(source) = tensors.get(&name) {
                var.copy_(&source.to_kind(var.kind()).to_device(var.device()));
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_every_missing_unexpected_and_misshapen_tensor() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _weight = (vs.root() / "a").var("weight", &[2, 3], nn::Init::Const(0.0));
        let _bias = (vs.root() / "a").var("bias", &[2], nn::Init::Const(0.0));
        let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Float, Device::Cpu));
        let err = load_into(
            &vs,
            vec![("a.weight".into(), ones(&[3, 3])), ("b".into(), ones(&[1]))],
            Unexpected::Refuse,
            "w.pt",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("missing (1): a.bias"), "{text}");
        assert!(text.contains("unexpected (1): b"), "{text}");
        assert!(
            text.contains("a.weight is [3, 3], the model has [2, 3]"),
            "{text}"
        );
        load_into(
            &vs,
            vec![
                ("a.weight".into(), ones(&[2, 3])),
                ("a.bias".into(), ones(&[2])),
                ("b".into(), ones(&[1])),
            ],
            Unexpected::Ignore,
            "w.pt",
        )
        .unwrap();
        assert_eq!(vs.variables()["a.bias"].double_value(&[1]), 1.0);
    }
}
