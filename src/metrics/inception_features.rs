//! Inception features of an image set, the way pytorch-fid (FID) and torch-fidelity (IS) feed
//! their network: where the images come from, batching, and the two feature kinds.
//!
//! An image set is a folder read like pytorch-fid (see
//! [`crate::data::formats::list_images_like_pytorch_fid`]) or a dataset artifact (a directory
//! with `dataset.json`, e.g. a data stage's output); greyscale becomes RGB. Images are decoded
//! in parallel once, kept as u8, and converted per batch.

use std::ops::Range;

use camino::Utf8Path;
use indicatif::ProgressBar;
use tch::Tensor;

use crate::data::dataset::DatasetError;
use crate::data::formats::{load_rgb_folder_like_pytorch_fid, FormatError};
use crate::data::transforms;
use crate::data::Dataset;
use crate::models::inception::{FidInception, InceptionError};

/// What to compute per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// pytorch-fid's `dims`-dimensional features (64, 192, 768 or 2048).
    Fid { dims: i64 },
    /// torch-fidelity's 1008 logits without the fc bias (Inception Score).
    LogitsUnbiased,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageSetError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{path}: images with {channels} channels cannot be read as RGB")]
    Channels { path: String, channels: usize },
    #[error(transparent)]
    Inception(#[from] InceptionError),
}

/// The images of `path`: a dataset artifact when it holds `dataset.json`, else an image folder.
pub fn load_image_set(path: &Utf8Path, progress: ProgressBar) -> Result<Dataset, ImageSetError> {
    if path.join(crate::data::dataset::META_FILE).is_file() {
        let dataset = Dataset::load(path)?;
        let channels = dataset.shape[1];
        return transforms::to_channels(dataset, 3).map_err(|_| ImageSetError::Channels {
            path: path.to_string(),
            channels,
        });
    }
    Ok(load_rgb_folder_like_pytorch_fid(path, progress)?)
}

/// Features of images `range` of `images` (u8 `[N, 3, H, W]`), as f32 `[len, dims]` on the CPU.
pub fn featurise(
    model: &FidInception,
    images: &Tensor,
    range: Range<usize>,
    kind: FeatureKind,
) -> Result<Tensor, ImageSetError> {
    let batch = images.narrow(0, range.start as i64, range.len() as i64);
    let features = match kind {
        FeatureKind::Fid { dims } => model.fid_features(&batch, dims)?,
        FeatureKind::LogitsUnbiased => model.logits_unbiased(&batch),
    };
    Ok(features.to_device(tch::Device::Cpu))
}

/// Features of all images, `batch_size` at a time; `between` runs after every batch with the
/// number of images done (for progress and cancellation) and can stop the work.
pub fn featurise_all<E: From<ImageSetError>>(
    model: &FidInception,
    images: &Dataset,
    batch_size: usize,
    kind: FeatureKind,
    mut between: impl FnMut(usize) -> Result<(), E>,
) -> Result<Tensor, E> {
    let pixels = images.images_tensor();
    let mut rows = Vec::new();
    let n = images.len();
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(n);
        rows.push(featurise(model, &pixels, start..end, kind)?);
        between(end)?;
    }
    Ok(Tensor::cat(&rows, 0))
}
