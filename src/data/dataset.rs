//! The dataset artifact every data stage produces and every learning stage consumes.
//!
//! Contract: images are u8 `[N, C, H, W]` (C = 1 or 3), labels are i64 `[N]` in `0..classes.len()`
//! (or `-1` for an unlabelled set such as a face folder). On disk a dataset is a directory with
//! `dataset.safetensors` (tensors `images` and `labels`, loadable with
//! `safetensors.torch.load_file`) and `dataset.json` (class names, domain name, shape). Pixels are
//! kept exact; normalisation belongs to the training stages.

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::artifact::{ArtifactError, Layout};

/// Label of an image that has none (unlabelled folders).
pub const UNLABELLED: i64 = -1;

pub const META_FILE: &str = "dataset.json";
const LAYOUT: Layout = Layout {
    meta: META_FILE,
    tensors: "dataset.safetensors",
    producer: "a data stage",
};

/// Images, labels and what they mean, all in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels, `N*C*H*W` bytes in `[N, C, H, W]` order.
    pub images: Vec<u8>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// One label per image.
    pub labels: Vec<i64>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Which domain the images come from (`mnistm`, `svhn`, ...), used to colour t-SNE plots.
    pub domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset `{domain}`: {images} bytes of pixels do not fill shape {shape:?} ({expected} bytes)")]
    PixelCountMismatch {
        domain: String,
        images: usize,
        shape: [usize; 4],
        expected: usize,
    },
    #[error("dataset `{domain}`: {labels} labels for {n} images")]
    LabelCountMismatch {
        domain: String,
        labels: usize,
        n: usize,
    },
    #[error("dataset `{domain}`: label {label} of image {index} is outside 0..{classes}")]
    LabelOutOfRange {
        domain: String,
        index: usize,
        label: i64,
        classes: usize,
    },
    #[error("cannot read dataset at {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        source: ArtifactError,
    },
    #[error("inconsistent dataset at {path}: {source}")]
    Invalid {
        path: Utf8PathBuf,
        source: Box<DatasetError>,
    },
    #[error("cannot write dataset to {path}: {source}")]
    Write {
        path: Utf8PathBuf,
        source: ArtifactError,
    },
}

#[derive(Serialize, Deserialize)]
struct DatasetMeta {
    shape: [usize; 4],
    classes: Vec<String>,
    domain: String,
}

impl Dataset {
    /// Builds a dataset after checking that pixels, shape and labels agree.
    pub fn new(
        images: Vec<u8>,
        shape: [usize; 4],
        labels: Vec<i64>,
        classes: Vec<String>,
        domain: impl Into<String>,
    ) -> Result<Self, DatasetError> {
        let dataset = Dataset {
            images,
            shape,
            labels,
            classes,
            domain: domain.into(),
        };
        dataset.validate()?;
        Ok(dataset)
    }

    fn validate(&self) -> Result<(), DatasetError> {
        let expected: usize = self.shape.iter().product();
        if self.images.len() != expected {
            return Err(DatasetError::PixelCountMismatch {
                domain: self.domain.clone(),
                images: self.images.len(),
                shape: self.shape,
                expected,
            });
        }
        if self.labels.len() != self.shape[0] {
            return Err(DatasetError::LabelCountMismatch {
                domain: self.domain.clone(),
                labels: self.labels.len(),
                n: self.shape[0],
            });
        }
        let classes = self.classes.len() as i64;
        if let Some((index, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l != UNLABELLED && !(0..classes).contains(&l))
        {
            return Err(DatasetError::LabelOutOfRange {
                domain: self.domain.clone(),
                index,
                label,
                classes: self.classes.len(),
            });
        }
        Ok(())
    }

    /// Digit class names `"0"..="9"`.
    pub fn digit_classes() -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// The pixels of image `index`, `[C, H, W]`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[index * len..(index + 1) * len]
    }

    /// Images per class, indexed by label (unlabelled images are not counted).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &label in &self.labels {
            if label >= 0 {
                counts[label as usize] += 1;
            }
        }
        counts
    }

    /// The subset at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let len = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            shape: [indices.len(), self.shape[1], self.shape[2], self.shape[3]],
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            domain: self.domain.clone(),
        }
    }

    /// Images as a u8 tensor `[N, C, H, W]` on the CPU.
    pub fn images_tensor(&self) -> tch::Tensor {
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        tch::Tensor::from_slice(&self.images).reshape(&shape)
    }

    /// Labels as an i64 tensor `[N]` on the CPU.
    pub fn labels_tensor(&self) -> tch::Tensor {
        tch::Tensor::from_slice(&self.labels)
    }

    /// Writes `dataset.safetensors` and `dataset.json` into `dir` (created if missing).
    pub fn save(&self, dir: &Utf8Path) -> Result<(), DatasetError> {
        let meta = DatasetMeta {
            shape: self.shape,
            classes: self.classes.clone(),
            domain: self.domain.clone(),
        };
        let tensors = [
            ("images", self.images_tensor()),
            ("labels", self.labels_tensor()),
        ];
        LAYOUT
            .write(dir, &meta, &tensors)
            .map_err(|source| DatasetError::Write {
                path: dir.to_owned(),
                source,
            })
    }

    /// Reads a dataset written by [`Dataset::save`].
    pub fn load(dir: &Utf8Path) -> Result<Self, DatasetError> {
        let read_err = |source| DatasetError::Read {
            path: dir.to_owned(),
            source,
        };
        let (meta, tensors) = LAYOUT.read::<DatasetMeta>(dir).map_err(read_err)?;
        let dataset = Dataset {
            images: tensors.values("images").map_err(read_err)?,
            shape: meta.shape,
            labels: tensors.values("labels").map_err(read_err)?,
            classes: meta.classes,
            domain: meta.domain,
        };
        dataset.validate().map_err(|e| DatasetError::Invalid {
            path: dir.to_owned(),
            source: Box::new(e),
        })?;
        Ok(dataset)
    }

    /// A one-line description: N, shape, classes and per-class counts.
    pub fn summary(&self) -> DatasetSummary<'_> {
        DatasetSummary(self)
    }
}

/// Display form of [`Dataset::summary`], e.g.
/// `mnistm: 1000 x [3, 28, 28] u8, 10 classes (0:98 1:112 ...)`.
pub struct DatasetSummary<'a>(&'a Dataset);

impl fmt::Display for DatasetSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{}: {} x [{}, {}, {}] u8, {} classes",
            d.domain,
            d.len(),
            d.shape[1],
            d.shape[2],
            d.shape[3],
            d.classes.len()
        )?;
        if !d.classes.is_empty() {
            let counts: Vec<String> = d
                .class_counts()
                .iter()
                .zip(&d.classes)
                .map(|(count, class)| format!("{class}:{count}"))
                .collect();
            write!(f, " ({})", counts.join(" "))?;
        }
        Ok(())
    }
}

/// Where a dataset stage's named output lives inside its output directory.
pub fn output_dir(out_dir: &Utf8Path, output: &str) -> Utf8PathBuf {
    out_dir.join(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset::new(
            (0..2 * 3 * 2 * 2).map(|v| v as u8).collect(),
            [2, 3, 2, 2],
            vec![1, 0],
            Dataset::digit_classes(),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap();
        let dataset = tiny();
        dataset.save(path).unwrap();
        assert_eq!(Dataset::load(path).unwrap(), dataset);
    }

    #[test]
    fn rejects_labels_out_of_range() {
        let err = Dataset::new(
            vec![0; 4],
            [1, 1, 2, 2],
            vec![10],
            Dataset::digit_classes(),
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("label 10"), "{err}");
    }

    #[test]
    fn summary_counts_classes() {
        let text = tiny().summary().to_string();
        assert!(
            text.starts_with("test: 2 x [3, 2, 2] u8, 10 classes (0:1 1:1 2:0"),
            "{text}"
        );
    }
}
