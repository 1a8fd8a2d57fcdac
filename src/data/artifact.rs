//! The on-disk form shared by the dataset and the feature-set artifacts: a directory with a JSON
//! file of metadata and a safetensors file of named tensors (loadable with
//! `safetensors.torch.load_file`), written and read the same way for both.

use camino::Utf8Path;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::kind::Element;
use tch::Tensor;

/// The two files of one kind of artifact.
pub(crate) struct Layout {
    pub meta: &'static str,
    pub tensors: &'static str,
    /// What writes this kind of artifact, named when its metadata is missing.
    pub producer: &'static str,
}

/// What went wrong with one file of an artifact; the error of the artifact's own type names the
/// directory.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{file}: {source} (is this the output of {producer}?)")]
    MetaUnreadable {
        file: &'static str,
        producer: &'static str,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("{file}: {source}")]
    Tensors {
        file: &'static str,
        source: tch::TchError,
    },
    #[error("{file} has no tensor `{name}`")]
    TensorMissing { file: &'static str, name: String },
    #[error("{name}: {source}")]
    TensorValues { name: String, source: tch::TchError },
}

/// The tensors of an artifact, by name.
pub(crate) struct Tensors {
    file: &'static str,
    tensors: Vec<(String, Tensor)>,
}

impl Tensors {
    fn get(&self, name: &str) -> Result<&Tensor, ArtifactError> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| ArtifactError::TensorMissing {
                file: self.file,
                name: name.to_owned(),
            })
    }

    /// The values of tensor `name`, row-major, converted to `T`.
    pub fn values<T: Element + Copy>(&self, name: &str) -> Result<Vec<T>, ArtifactError> {
        Vec::<T>::try_from(self.get(name)?.flatten(0, -1)).map_err(|source| {
            ArtifactError::TensorValues {
                name: name.to_owned(),
                source,
            }
        })
    }
}

impl Layout {
    /// Writes both files into `dir`, created if missing.
    pub fn write(
        &self,
        dir: &Utf8Path,
        meta: &impl Serialize,
        tensors: &[(&str, Tensor)],
    ) -> Result<(), ArtifactError> {
        std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Io {
            what: "creating the directory",
            source,
        })?;
        Tensor::write_safetensors(tensors, dir.join(self.tensors)).map_err(|source| {
            ArtifactError::Tensors {
                file: self.tensors,
                source,
            }
        })?;
        let json = serde_json::to_vec_pretty(meta).map_err(|source| ArtifactError::Json {
            file: self.meta,
            source,
        })?;
        std::fs::write(dir.join(self.meta), json).map_err(|source| ArtifactError::Io {
            what: self.meta,
            source,
        })
    }

    /// Reads both files of `dir`.
    pub fn read<M: DeserializeOwned>(&self, dir: &Utf8Path) -> Result<(M, Tensors), ArtifactError> {
        let bytes =
            std::fs::read(dir.join(self.meta)).map_err(|source| ArtifactError::MetaUnreadable {
                file: self.meta,
                producer: self.producer,
                source,
            })?;
        let meta = serde_json::from_slice(&bytes).map_err(|source| ArtifactError::Json {
            file: self.meta,
            source,
        })?;
        let tensors = Tensor::read_safetensors(dir.join(self.tensors)).map_err(|source| {
            ArtifactError::Tensors {
                file: self.tensors,
                source,
            }
        })?;
        Ok((
            meta,
            Tensors {
                file: self.tensors,
                tensors,
            },
        ))
    }
}
