//! Readers for the real data formats; each returns a [`Dataset`] (u8 `[N, C, H, W]`, i64 labels).
//!
//! | format | loader | source |
//! |---|---|---|
//! | course layout | [`load_course`] | image folder + `image_name,label` CSV |
//! | unlabelled folder | [`load_image_folder`] | `*.png` / `*.jpg` files |
//! | CelebA | [`load_celeba`] | aligned JPEGs, resized and center-cropped |
//! | MNIST / Fashion-MNIST | [`load_idx`] | IDX image + label files, gzipped or not |
//! | SVHN | [`load_svhn_mat`] | MATLAB v5 `.mat` with `X` and `y` |
//! | USPS | [`load_usps_libsvm`] | libsvm text, bzip2/gzip or plain |
//!
//! Every loader takes [`ReadOptions`]: a per-image [`Geometry`], the channel count, a `limit`
//! (the first N images in source order) and a progress bar. Folder formats apply them while
//! decoding (so a CelebA folder never holds full-size images in memory); array formats apply
//! them to the decoded dataset. Errors name the file and give what was expected and found.

mod celeba;
mod course;
mod idx;
mod image_folder;
mod images;
pub mod mat5;
pub mod npz;
mod svhn_mat;
mod usps_libsvm;

use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use indicatif::ProgressBar;

use super::dataset::{Dataset, DatasetError};
use super::transforms::{self, Geometry, TransformError};

pub use celeba::{load_celeba, CELEBA_SIZE};
pub use course::{load_course, CSV_HEADER};
pub use idx::{load_idx, IMAGES_MAGIC, LABELS_MAGIC};
pub use image_folder::{
    list_images, list_images_like_pytorch_fid, load_image_folder, load_rgb_folder_like_pytorch_fid,
};
pub use svhn_mat::load_svhn_mat;
pub use usps_libsvm::load_usps_libsvm;

/// How much of a source to read and how to shape each image.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Resize / center crop applied to every image.
    pub geometry: Geometry,
    /// 1 (greyscale) or 3 (RGB); `None` keeps the source's (for folders: the first image's).
    pub channels: Option<usize>,
    /// Read only the first N images in source order (file-name order for folders, row order
    /// for CSVs, record order for files).
    pub limit: Option<usize>,
    /// Folder readers set its length to the number of images and advance it per image.
    pub progress: ProgressBar,
}

impl Default for ReadOptions {
    /// The source as it is, all of it, no visible progress.
    fn default() -> Self {
        ReadOptions {
            geometry: Geometry::default(),
            channels: None,
            limit: None,
            progress: ProgressBar::hidden(),
        }
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("cannot decompress {path} ({codec}): {source}; is the file complete? re-download it")]
    Decompress {
        path: Utf8PathBuf,
        codec: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: bad magic number: expected {expected:#010x} ({what}), found {found:#010x}")]
    BadMagic {
        path: Utf8PathBuf,
        expected: u32,
        found: u32,
        what: &'static str,
    },
    #[error("{path} is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: Utf8PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: image is {}x{}x{} (CxHxW), expected {}x{}x{} like {reference} (set `resize` to make them equal)", found[0], found[1], found[2], expected[0], expected[1], expected[2])]
    ImageSize {
        path: Utf8PathBuf,
        expected: [usize; 3],
        found: [usize; 3],
        reference: Utf8PathBuf,
    },
    #[error("{path} {location}: label {label} is outside {expected}")]
    LabelOutOfRange {
        path: Utf8PathBuf,
        location: String,
        label: String,
        expected: String,
    },
    #[error("{csv} line {line}: image `{image}` does not exist in {dir}")]
    MissingImage {
        csv: Utf8PathBuf,
        line: usize,
        image: String,
        dir: Utf8PathBuf,
    },
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        path: Utf8PathBuf,
        source: image::ImageError,
    },
    #[error("{path} line {line}: expected {expected}, found `{found}`")]
    Syntax {
        path: Utf8PathBuf,
        line: usize,
        expected: String,
        found: String,
    },
    #[error("{path}: {images} images but {labels} labels")]
    CountMismatch {
        path: Utf8PathBuf,
        images: usize,
        labels: usize,
    },
    #[error("{path}: no images (looked for {looked_for})")]
    NoImages {
        path: Utf8PathBuf,
        looked_for: String,
    },
    #[error("{path}: {source}")]
    Mat {
        path: Utf8PathBuf,
        source: mat5::MatError,
    },
    #[error("{path}: variable `{name}` {problem}")]
    MatVariable {
        path: Utf8PathBuf,
        name: String,
        problem: String,
    },
    #[error("{path}: {source}")]
    Transform {
        path: Utf8PathBuf,
        source: TransformError,
    },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

fn io_error(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
    move |source| FormatError::Io {
        path: path.to_owned(),
        source,
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Reads a whole file, decompressing it when it starts with the gzip or bzip2 magic bytes
/// (whatever its extension).
pub fn read_maybe_compressed(path: &Utf8Path) -> Result<Vec<u8>, FormatError> {
    let raw = std::fs::read(path).map_err(io_error(path))?;
    let (codec, mut reader): (&'static str, Box<dyn Read + '_>) = if raw.starts_with(GZIP_MAGIC) {
        (
            "gzip",
            Box::new(flate2::read::GzDecoder::new(raw.as_slice())),
        )
    } else if raw.starts_with(BZIP2_MAGIC) {
        (
            "bzip2",
            Box::new(bzip2::read::BzDecoder::new(raw.as_slice())),
        )
    } else {
        return Ok(raw);
    };
    let mut out = Vec::with_capacity(raw.len() * 4);
    reader
        .read_to_end(&mut out)
        .map_err(|source| FormatError::Decompress {
            path: path.to_owned(),
            codec,
            source,
        })?;
    Ok(out)
}

/// Applies geometry and channels of `options` to a dataset read from `path` in one piece.
fn finish(
    dataset: Dataset,
    options: &ReadOptions,
    path: &Utf8Path,
) -> Result<Dataset, FormatError> {
    let transform_err = |source| FormatError::Transform {
        path: path.to_owned(),
        source,
    };
    let dataset = transforms::apply_geometry(dataset, &options.geometry).map_err(transform_err)?;
    match options.channels {
        Some(channels) => transforms::to_channels(dataset, channels).map_err(transform_err),
        None => Ok(dataset),
    }
}

/// How many of `n` records to read under `options.limit`.
fn limited(n: usize, options: &ReadOptions) -> usize {
    options.limit.map_or(n, |limit| limit.min(n))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_plain_gzip_and_bzip2_alike() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        let payload = b"hello formats".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&payload).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&payload).unwrap();
        for (name, bytes) in [
            ("plain", payload.clone()),
            ("a.gz", gz.finish().unwrap()),
            ("a.bz2", bz.finish().unwrap()),
        ] {
            std::fs::write(base.join(name), bytes).unwrap();
            assert_eq!(
                read_maybe_compressed(&base.join(name)).unwrap(),
                payload,
                "{name}"
            );
        }
    }

    #[test]
    fn truncated_gzip_is_a_decompress_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("cut.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[7; 4096]).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_maybe_compressed(&path).unwrap_err();
        assert!(
            matches!(err, FormatError::Decompress { codec: "gzip", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("cut.gz"), "{err}");
    }
}
