//! The feature-set artifact: one feature vector per image, with its label and domain.
//!
//! A `features` stage writes it (CNN features of the images of one or more domains) and the `tsne`
//! stage reads it. Contract: features are f32 `[n, dim]` row-major, labels are i64 `[n]` indexing
//! `class_names` (or `-1` when unlabelled), domains are i64 `[n]` indexing `domain_names`. On disk
//! a feature set is a directory with `features.safetensors` (tensors `features`, `labels`,
//! `domains`, loadable with `safetensors.torch.load_file`) and `features.json` (the names).

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::artifact::{ArtifactError, Layout};
use super::dataset::UNLABELLED;

const LAYOUT: Layout = Layout {
    meta: "features.json",
    tensors: "features.safetensors",
    producer: "a `features` stage",
};

/// Feature vectors with their labels and domains, all in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// `n * dim` values, `[n, dim]` row-major.
    pub features: Vec<f32>,
    pub n: usize,
    pub dim: usize,
    /// One label per row, indexing `class_names` (`-1`: unlabelled).
    pub labels: Vec<i64>,
    /// One domain per row, indexing `domain_names`.
    pub domains: Vec<i64>,
    pub class_names: Vec<String>,
    pub domain_names: Vec<String>,
    /// How the features were made, as a phrase for figure captions (e.g. which batch-norm
    /// statistics normalised each domain); `None` in sets written before it was recorded.
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureSetError {
    #[error("feature set: {values} values do not fill [{n}, {dim}]")]
    ValueCountMismatch { values: usize, n: usize, dim: usize },
    #[error("feature set: {what} has {found} entries for {n} rows")]
    RowCountMismatch {
        what: &'static str,
        found: usize,
        n: usize,
    },
    #[error("feature set: {what} {value} of row {index} is outside 0..{len}")]
    IndexOutOfRange {
        what: &'static str,
        index: usize,
        value: i64,
        len: usize,
    },
    #[error("cannot read feature set at {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        source: ArtifactError,
    },
    #[error("inconsistent feature set at {path}: {source}")]
    Invalid {
        path: Utf8PathBuf,
        source: Box<FeatureSetError>,
    },
    #[error("cannot write feature set to {path}: {source}")]
    Write {
        path: Utf8PathBuf,
        source: ArtifactError,
    },
}

#[derive(Serialize, Deserialize)]
struct FeatureMeta {
    n: usize,
    dim: usize,
    class_names: Vec<String>,
    domain_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl FeatureSet {
    /// Checks that values, labels, domains and names agree.
    pub fn validate(&self) -> Result<(), FeatureSetError> {
        if self.features.len() != self.n * self.dim {
            return Err(FeatureSetError::ValueCountMismatch {
                values: self.features.len(),
                n: self.n,
                dim: self.dim,
            });
        }
        for (what, column) in [("labels", &self.labels), ("domains", &self.domains)] {
            if column.len() != self.n {
                return Err(FeatureSetError::RowCountMismatch {
                    what,
                    found: column.len(),
                    n: self.n,
                });
            }
        }
        check_indices("label", &self.labels, self.class_names.len(), true)?;
        check_indices("domain", &self.domains, self.domain_names.len(), false)
    }

    /// Row `index`, `dim` values.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * self.dim..(index + 1) * self.dim]
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> FeatureSet {
        FeatureSet {
            features: indices
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            n: indices.len(),
            dim: self.dim,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            domains: indices.iter().map(|&i| self.domains[i]).collect(),
            class_names: self.class_names.clone(),
            domain_names: self.domain_names.clone(),
            note: self.note.clone(),
        }
    }

    /// Writes `features.safetensors` and `features.json` into `dir` (created if missing).
    pub fn save(&self, dir: &Utf8Path) -> Result<(), FeatureSetError> {
        self.validate().map_err(|e| FeatureSetError::Invalid {
            path: dir.to_owned(),
            source: Box::new(e),
        })?;
        let features =
            tch::Tensor::from_slice(&self.features).reshape([self.n as i64, self.dim as i64]);
        let tensors = [
            ("features", features),
            ("labels", tch::Tensor::from_slice(&self.labels)),
            ("domains", tch::Tensor::from_slice(&self.domains)),
        ];
        let meta = FeatureMeta {
            n: self.n,
            dim: self.dim,
            class_names: self.class_names.clone(),
            domain_names: self.domain_names.clone(),
            note: self.note.clone(),
        };
        LAYOUT
            .write(dir, &meta, &tensors)
            .map_err(|source| FeatureSetError::Write {
                path: dir.to_owned(),
                source,
            })
    }

    /// Reads a feature set written by [`FeatureSet::save`].
    pub fn load(dir: &Utf8Path) -> Result<Self, FeatureSetError> {
        let read_err = |source| FeatureSetError::Read {
            path: dir.to_owned(),
            source,
        };
        let (meta, tensors) = LAYOUT.read::<FeatureMeta>(dir).map_err(read_err)?;
        let set = FeatureSet {
            features: tensors.values("features").map_err(read_err)?,
            n: meta.n,
            dim: meta.dim,
            labels: tensors.values("labels").map_err(read_err)?,
            domains: tensors.values("domains").map_err(read_err)?,
            class_names: meta.class_names,
            domain_names: meta.domain_names,
            note: meta.note,
        };
        set.validate().map_err(|e| FeatureSetError::Invalid {
            path: dir.to_owned(),
            source: Box::new(e),
        })?;
        Ok(set)
    }

    /// A one-line description, e.g. `features: 2000 x 128 f32, 10 classes, domains mnistm:1000 svhn:1000`.
    pub fn summary(&self) -> String {
        let mut counts = vec![0usize; self.domain_names.len()];
        for &d in &self.domains {
            counts[d as usize] += 1;
        }
        let domains: Vec<String> = self
            .domain_names
            .iter()
            .zip(&counts)
            .map(|(name, c)| format!("{name}:{c}"))
            .collect();
        format!(
            "features: {} x {} f32, {} classes, domains {}",
            self.n,
            self.dim,
            self.class_names.len(),
            domains.join(" ")
        )
    }
}

fn check_indices(
    what: &'static str,
    values: &[i64],
    len: usize,
    allow_unlabelled: bool,
) -> Result<(), FeatureSetError> {
    let bad = values
        .iter()
        .enumerate()
        .find(|(_, &v)| !((0..len as i64).contains(&v) || allow_unlabelled && v == UNLABELLED));
    match bad {
        Some((index, &value)) => Err(FeatureSetError::IndexOutOfRange {
            what,
            index,
            value,
            len,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> FeatureSet {
        FeatureSet {
            features: vec![0.5, -1.0, 2.0, 3.25, 0.0, 1e-3],
            n: 3,
            dim: 2,
            labels: vec![1, 0, -1],
            domains: vec![0, 1, 1],
            class_names: vec!["0".into(), "1".into()],
            domain_names: vec!["mnistm".into(), "svhn".into()],
            note: Some("made in a test".into()),
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap();
        tiny().save(path).unwrap();
        assert_eq!(FeatureSet::load(path).unwrap(), tiny());
    }

    #[test]
    fn rejects_domain_out_of_range() {
        let mut set = tiny();
        set.domains[2] = 2;
        let err = set.validate().unwrap_err().to_string();
        assert!(err.contains("domain 2 of row 2"), "{err}");
    }

    #[test]
    fn select_keeps_rows_in_order() {
        let set = tiny().select(&[2, 0]);
        assert_eq!(set.features, vec![0.0, 1e-3, 0.5, -1.0]);
        assert_eq!(set.labels, vec![-1, 1]);
        assert_eq!(
            set.summary(),
            "features: 2 x 2 f32, 2 classes, domains mnistm:1 svhn:1"
        );
    }
}
