//! The course's face score: the share of images in which a face detector finds exactly one
//! face. The course used dlib's HOG detector (`face_recognition`, upsample 1); hwrun uses the
//! SeetaFace funnel-structured cascade through the `rustface` crate, whose frontal model
//! (`seeta_fd_frontal_v1.0.bin`, BSD-2, shipped in the crate's package) is vendored in `assets/`
//! and compiled into the binary, so nothing is downloaded. Like dlib's upsample 1, every image
//! is doubled in size (bilinear) before detection, since generated faces are 64x64 and the
//! detector's smallest window is 20 pixels.
//!
//! Unreadable files are dropped from the total, as the course's script does.

use camino::{Utf8Path, Utf8PathBuf};
use rustface::{Detector, ImageData};

/// The SeetaFace frontal detector model, from the `rustface` 0.1.7 package.
static MODEL: &[u8] = include_bytes!("../../assets/seeta_fd_frontal_v1.0.bin");

/// Detector settings of rustface's example: smallest face 20 px, score threshold 2.0, pyramid
/// scale 0.8, window step 4.
const MIN_FACE: u32 = 20;
const SCORE_THRESHOLD: f64 = 2.0;
const PYRAMID_SCALE: f32 = 0.8;
const WINDOW_STEP: u32 = 4;
/// Images are enlarged this many times before detection (dlib's upsample 1).
const UPSAMPLE: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum FaceScoreError {
    #[error("the vendored SeetaFace model cannot be read: {0}")]
    Model(std::io::Error),
    #[error("no readable image among the {files} files of {dir}")]
    NoImages { dir: Utf8PathBuf, files: usize },
}

/// A face detector ready to count faces.
pub struct FaceDetector {
    detector: Box<dyn Detector>,
}

impl FaceDetector {
    pub fn new() -> Result<Self, FaceScoreError> {
        let model = rustface::read_model(MODEL).map_err(FaceScoreError::Model)?;
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(MIN_FACE);
        detector.set_score_thresh(SCORE_THRESHOLD);
        detector.set_pyramid_scale_factor(PYRAMID_SCALE);
        detector.set_slide_window_step(WINDOW_STEP, WINDOW_STEP);
        Ok(FaceDetector { detector })
    }

    /// Faces found in `image`.
    pub fn count(&mut self, image: &image::DynamicImage) -> usize {
        let grey = image.to_luma8();
        let (width, height) = grey.dimensions();
        if width == 0 || height == 0 {
            return 0;
        }
        let grey = image::imageops::resize(
            &grey,
            width * UPSAMPLE,
            height * UPSAMPLE,
            image::imageops::FilterType::Triangle,
        );
        let (width, height) = grey.dimensions();
        self.detector
            .detect(&ImageData::new(grey.as_raw(), width, height))
            .len()
    }
}

/// The result over a folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceScore {
    /// Readable images with exactly one face, over the readable images.
    pub score: f64,
    pub one_face: usize,
    pub readable: usize,
    /// Files that are not images or cannot be decoded.
    pub unreadable: Vec<Utf8PathBuf>,
}

/// Scores `files` (images); `progress` is called after each file.
pub fn face_score(
    files: &[Utf8PathBuf],
    dir: &Utf8Path,
    mut progress: impl FnMut(),
) -> Result<FaceScore, FaceScoreError> {
    let mut detector = FaceDetector::new()?;
    let (mut one_face, mut readable, mut unreadable) = (0, 0, Vec::new());
    for file in files {
        match image::open(file) {
            Ok(img) => {
                readable += 1;
                if detector.count(&img) == 1 {
                    one_face += 1;
                }
            }
            Err(err) => {
                tracing::warn!("{file}: not counted, cannot read it: {err}");
                unreadable.push(file.clone());
            }
        }
        progress();
    }
    if readable == 0 {
        return Err(FaceScoreError::NoImages {
            dir: dir.to_owned(),
            files: files.len(),
        });
    }
    Ok(FaceScore {
        score: one_face as f64 / readable as f64,
        one_face,
        readable,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_model_loads_and_finds_nothing_in_a_flat_image() {
        let mut detector = FaceDetector::new().unwrap();
        let flat = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
            64,
            64,
            image::Luma([128]),
        ));
        assert_eq!(detector.count(&flat), 0);
    }

    #[test]
    fn unreadable_files_are_dropped_from_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let good = dir.join("a.png");
        image::GrayImage::from_pixel(40, 40, image::Luma([10]))
            .save(&good)
            .unwrap();
        let bad = dir.join("b.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let score = face_score(&[good, bad.clone()], dir, || {}).unwrap();
        assert_eq!(
            (score.readable, score.one_face, score.unreadable),
            (1, 0, vec![bad])
        );
    }
}
