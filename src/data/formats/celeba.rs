//! CelebA aligned faces (`img_align_celeba/*.jpg`, 178x218 JPEGs, Liu et al. 2015,
//! <https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html>), shrunk to square training images.
//!
//! The DCGAN tutorial's recipe: resize the short side to `size` (antialiased), then center-crop
//! `size x size`; the crop happens while decoding, so 200k faces never sit in memory at full size.
//! Unlabelled, 3 channels.

use camino::Utf8Path;

use super::{load_image_folder, FormatError, ReadOptions};
use crate::data::transforms::{Geometry, Size};
use crate::data::Dataset;

/// The side length of the DCGAN tutorial.
pub const CELEBA_SIZE: u32 = 64;

/// Reads the JPEGs of `dir` as `size x size` RGB faces (first `options.limit` by file name); the
/// geometry and channels of `options` are replaced by the CelebA recipe.
pub fn load_celeba(
    dir: &Utf8Path,
    size: u32,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let options = ReadOptions {
        geometry: Geometry {
            resize: Some(Size::Side(size)),
            center_crop: Some(Size::Side(size)),
        },
        channels: Some(3),
        ..options.clone()
    };
    load_image_folder(dir, domain, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portrait_jpegs_become_centered_squares() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap();
        // 178x218 like CelebA: top 100 rows black, the rest white; the centered crop of the
        // 64x78 resize starts 7 rows down, so the top row is dark and the bottom row light.
        let face = image::RgbImage::from_fn(178, 218, |_, y| {
            image::Rgb([if y < 100 { 0 } else { 255 }; 3])
        });
        face.save(path.join("000001.jpg")).unwrap();
        let data = load_celeba(path, CELEBA_SIZE, "celeba", &ReadOptions::default()).unwrap();
        assert_eq!(data.shape, [1, 3, 64, 64]);
        assert!(
            data.image(0)[0] < 20 && data.image(0)[63 * 64] > 235,
            "{} {}",
            data.image(0)[0],
            data.image(0)[63 * 64]
        );
    }
}
