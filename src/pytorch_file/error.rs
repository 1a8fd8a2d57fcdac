//! What can go wrong reading a PyTorch file; every variant names the file.

use camino::Utf8PathBuf;

use super::pickle::PickleError;

#[derive(Debug, thiserror::Error)]
pub enum PytorchFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a PyTorch file: it is {found}; expected a file written by `torch.save`: a zip archive \
         holding <name>/data.pkl (torch >= 1.6) or a legacy pickle stream that starts with torch's magic number"
    )]
    NotTorchFile { path: Utf8PathBuf, found: String },
    #[error(
        "{path} is truncated: {detail}; the file was cut short (an interrupted copy or download?)"
    )]
    Truncated { path: Utf8PathBuf, detail: String },
    #[error("{path}: cannot unpickle {part}: {source}")]
    Pickle {
        path: Utf8PathBuf,
        part: String,
        source: PickleError,
    },
    #[error("{path}: {detail}")]
    Malformed { path: Utf8PathBuf, detail: String },
    #[error("{path}: storage `{storage}` is missing: {detail}")]
    MissingStorage {
        path: Utf8PathBuf,
        storage: String,
        detail: String,
    },
    #[error(
        "{path}: tensor `{tensor}` (shape {size:?}, strides {stride:?}, offset {offset}) reaches element {needed} \
         of storage `{storage}`, which holds only {available} elements"
    )]
    StorageTooShort {
        path: Utf8PathBuf,
        tensor: String,
        storage: String,
        size: Vec<i64>,
        stride: Vec<i64>,
        offset: i64,
        needed: u64,
        available: u64,
    },
    #[error(
        "{path}: storage `{storage}` has type `{storage_type}`, a dtype hwrun cannot read; supported storages: {supported}"
    )]
    UnsupportedDtype {
        path: Utf8PathBuf,
        storage: String,
        storage_type: String,
        supported: String,
    },
    #[error("{path}: libtorch refused tensor `{tensor}`: {source}")]
    Tensor {
        path: Utf8PathBuf,
        tensor: String,
        source: tch::TchError,
    },
    #[error("{path} holds {found}, not a single tensor (saved with `torch.save(tensor, path)`)")]
    NotATensor { path: Utf8PathBuf, found: String },
    #[error(
        "{path} holds no dict of tensors: it holds {found}; expected a state_dict, or a checkpoint with a \
         `state_dict` or `model` entry holding one"
    )]
    NoStateDict { path: Utf8PathBuf, found: String },
}
