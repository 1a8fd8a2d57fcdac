//! MNIST-M (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015,
//! <https://arxiv.org/abs/1409.7495>): MNIST digits blended over random patches of colour photos
//! (the BSDS500 train images, `BSR_bsds500.tgz`).
//!
//! For every digit, as the classic builder does: binarise it (`(x > 0) * 255`), pick a random
//! photo and a random `H x W` crop of it (H, W = the digit's size), and set each pixel to
//! `|crop - digit|`, the digit replicated to the three colour channels. So the digit's strokes
//! show the photo's colours inverted and the background shows the photo as it is.
//!
//! Contract: digits are u8 `[N, C, H, W]` with C = 1 (or 3, blended channel by channel, which is
//! the same for a greyscale digit made RGB); the result is u8 `[N, 3, H, W]` with the digits'
//! labels and classes. Image `i` draws its photo and crop from its own ChaCha8 stream (seed,
//! stream `i`), so the result does not depend on how rayon splits the work, and building a range
//! of images gives exactly those images of the whole set.

use std::ops::Range;

use camino::Utf8Path;
use image::RgbImage;
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::{Dataset, DatasetError};
use super::formats::{list_images, FormatError};

/// Why MNIST-M could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MnistmError {
    #[error("photos: {0}")]
    Photos(#[from] FormatError),
    #[error("{path}: photo is {width}x{height}, smaller than the {crop_w}x{crop_h} crops the digits need; remove it or use larger photos")]
    PhotoTooSmall {
        path: String,
        width: u32,
        height: u32,
        crop_w: usize,
        crop_h: usize,
    },
    #[error("no photos to crop backgrounds from")]
    NoPhotos,
    #[error("dataset `{domain}` has {channels} channels; MNIST-M blends greyscale (1) or RGB (3) digits")]
    DigitChannels { domain: String, channels: usize },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// The decoded colour photos crops are taken from, in file-name order.
pub struct Photos {
    names: Vec<String>,
    images: Vec<RgbImage>,
}

impl Photos {
    /// Decodes every `*.png`, `*.jpg`, `*.jpeg` in `dir` (not recursive) to RGB, in parallel,
    /// advancing `progress` once per photo.
    pub fn load(dir: &Utf8Path, progress: &ProgressBar) -> Result<Self, MnistmError> {
        let files = list_images(dir)?;
        progress.set_length(files.len() as u64);
        let images = files
            .par_iter()
            .map(|path| {
                let bytes = std::fs::read(path).map_err(|source| FormatError::Io {
                    path: path.clone(),
                    source,
                })?;
                let image =
                    image::load_from_memory(&bytes).map_err(|source| FormatError::Decode {
                        path: path.clone(),
                        source,
                    })?;
                progress.inc(1);
                Ok(image.to_rgb8())
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let names = files.iter().map(|path| path.to_string()).collect();
        Ok(Photos { names, images })
    }

    /// Photos already in memory (`names` only label error messages).
    pub fn from_images(names: Vec<String>, images: Vec<RgbImage>) -> Self {
        Photos { names, images }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Checks that there are photos and every one holds an `h x w` crop, naming the first one
    /// that does not.
    pub fn check_fit(&self, h: usize, w: usize) -> Result<(), MnistmError> {
        if self.is_empty() {
            return Err(MnistmError::NoPhotos);
        }
        match self
            .images
            .iter()
            .zip(&self.names)
            .find(|(p, _)| (p.height() as usize) < h || (p.width() as usize) < w)
        {
            Some((photo, name)) => Err(MnistmError::PhotoTooSmall {
                path: name.clone(),
                width: photo.width(),
                height: photo.height(),
                crop_w: w,
                crop_h: h,
            }),
            None => Ok(()),
        }
    }
}

/// Where one image's background comes from: a photo and the top-left corner of the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub photo: usize,
    pub top: usize,
    pub left: usize,
}

/// Draws the crop of image `index`: a uniform photo, then a uniform position among all the
/// `h x w` windows inside it. The photos must pass [`Photos::check_fit`] first.
pub fn choose_crop(photos: &Photos, seed: u64, index: usize, h: usize, w: usize) -> Crop {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let photo = rng.random_range(0..photos.len());
    let image = &photos.images[photo];
    let top = rng.random_range(0..=image.height() as usize - h);
    let left = rng.random_range(0..=image.width() as usize - w);
    Crop { photo, top, left }
}

/// The digit value blended into the photo: `(x > 0) * 255` when binarising, `x` otherwise.
fn ink(value: u8, binarize: bool) -> u8 {
    if binarize && value > 0 {
        255
    } else {
        value
    }
}

/// Writes one `[3, H, W]` image into `out`: `|crop - digit|` per channel. `digit` is `[C, H, W]`
/// with C = 1 (replicated) or 3.
pub fn blend(
    digit: &[u8],
    [c, h, w]: [usize; 3],
    photo: &RgbImage,
    crop: Crop,
    binarize: bool,
    out: &mut [u8],
) {
    for channel in 0..3 {
        let digit_plane = if c == 1 { 0 } else { channel };
        for y in 0..h {
            for x in 0..w {
                let background =
                    photo.get_pixel((crop.left + x) as u32, (crop.top + y) as u32)[channel];
                let value = ink(digit[(digit_plane * h + y) * w + x], binarize);
                out[(channel * h + y) * w + x] = background.abs_diff(value);
            }
        }
    }
}

/// The MNIST-M pixels (`[len, 3, H, W]`) of digits `range`, blended in parallel.
pub fn build_range(
    digits: &Dataset,
    photos: &Photos,
    seed: u64,
    binarize: bool,
    range: Range<usize>,
) -> Result<Vec<u8>, MnistmError> {
    let [_, c, h, w] = digits.shape;
    if c != 1 && c != 3 {
        return Err(MnistmError::DigitChannels {
            domain: digits.domain.clone(),
            channels: c,
        });
    }
    photos.check_fit(h, w)?;
    let mut pixels = vec![0; range.len() * 3 * h * w];
    if range.is_empty() {
        return Ok(pixels);
    }
    pixels
        .par_chunks_mut(3 * h * w)
        .zip(range)
        .for_each(|(out, index)| {
            let crop = choose_crop(photos, seed, index, h, w);
            blend(
                digits.image(index),
                [c, h, w],
                &photos.images[crop.photo],
                crop,
                binarize,
                out,
            );
        });
    Ok(pixels)
}

/// The whole MNIST-M counterpart of `digits`, named `domain`.
pub fn build(
    digits: &Dataset,
    photos: &Photos,
    seed: u64,
    binarize: bool,
    domain: &str,
) -> Result<Dataset, MnistmError> {
    let pixels = build_range(digits, photos, seed, binarize, 0..digits.len())?;
    let [n, _, h, w] = digits.shape;
    Ok(Dataset::new(
        pixels,
        [n, 3, h, w],
        digits.labels.clone(),
        digits.classes.clone(),
        domain,
    )?)
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    /// A photo whose pixel (x, y) is (10x + y, 7y + 3, 200 - x): every crop position is visible.
    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            Rgb([(10 * x + y) as u8, (7 * y + 3) as u8, (200 - x) as u8])
        })
    }

    fn digits(n: usize, c: usize, side: usize) -> Dataset {
        let images = (0..n * c * side * side)
            .map(|v| [0u8, 0, 1, 128, 255][v * 7 % 5])
            .collect();
        let labels = (0..n as i64).map(|i| i % 10).collect();
        Dataset::new(
            images,
            [n, c, side, side],
            labels,
            Dataset::digit_classes(),
            "mnist",
        )
        .unwrap()
    }

    fn photos() -> Photos {
        let names = vec!["a.png".into(), "b.png".into(), "c.png".into()];
        Photos::from_images(
            names,
            vec![
                gradient(9, 7),
                gradient(6, 11),
                RgbImage::from_pixel(4, 4, Rgb([90, 0, 255])),
            ],
        )
    }

    #[test]
    fn blend_is_the_absolute_difference_with_the_binarised_digit() {
        let photo = RgbImage::from_pixel(2, 1, Rgb([100, 0, 255]));
        let crop = Crop {
            photo: 0,
            top: 0,
            left: 0,
        };
        let mut out = [0; 6];
        blend(&[0, 3], [1, 1, 2], &photo, crop, true, &mut out);
        assert_eq!(out, [100, 155, 0, 255, 255, 0]);
        blend(&[0, 3], [1, 1, 2], &photo, crop, false, &mut out);
        assert_eq!(out, [100, 97, 0, 3, 255, 252]);
    }

    #[test]
    fn blend_reads_the_crop_window_and_rgb_digits_per_channel() {
        let photo = gradient(5, 4);
        let crop = Crop {
            photo: 0,
            top: 1,
            left: 2,
        };
        let digit = [0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // [3, 2, 2]: one red ink pixel
        let mut out = [0; 12];
        blend(&digit, [3, 2, 2], &photo, crop, true, &mut out);
        let p = |x: u32, y: u32, ch: usize| photo.get_pixel(x, y)[ch];
        let expected_red = [p(2, 1, 0), 255 - p(3, 1, 0), p(2, 2, 0), p(3, 2, 0)];
        assert_eq!(out[..4], expected_red);
        assert_eq!(out[4..8], [p(2, 1, 1), p(3, 1, 1), p(2, 2, 1), p(3, 2, 1)]);
    }

    #[test]
    fn build_matches_the_formula_pixel_for_pixel() {
        let (digits, photos) = (digits(40, 1, 4), photos());
        let built = build(&digits, &photos, 11, true, "mnistm").unwrap();
        assert_eq!(
            (built.shape, &built.labels, built.domain.as_str()),
            ([40, 3, 4, 4], &digits.labels, "mnistm")
        );
        for i in 0..40 {
            let crop = choose_crop(&photos, 11, i, 4, 4);
            let photo = &photos.images[crop.photo];
            for (ch, y, x) in
                (0..3).flat_map(|ch| (0..4).flat_map(move |y| (0..4).map(move |x| (ch, y, x))))
            {
                let bg =
                    i32::from(photo.get_pixel((crop.left + x) as u32, (crop.top + y) as u32)[ch]);
                let ink = if digits.image(i)[y * 4 + x] > 0 {
                    255
                } else {
                    0
                };
                assert_eq!(
                    i32::from(built.image(i)[(ch * 4 + y) * 4 + x]),
                    (bg - ink).abs(),
                    "image {i}"
                );
            }
        }
    }

    #[test]
    fn crops_stay_inside_and_cover_every_photo_and_corner() {
        let photos = photos();
        let crops: Vec<Crop> = (0..600).map(|i| choose_crop(&photos, 5, i, 4, 4)).collect();
        for crop in &crops {
            let photo = &photos.images[crop.photo];
            assert!(
                crop.top + 4 <= photo.height() as usize && crop.left + 4 <= photo.width() as usize,
                "{crop:?}"
            );
        }
        let used = |f: &dyn Fn(&Crop) -> bool| crops.iter().any(f);
        assert!((0..3).all(|p| used(&|c| c.photo == p)));
        assert!(
            used(&|c| c.photo == 0 && c.top == 3 && c.left == 5)
                && used(&|c| c.photo == 0 && c.top == 0 && c.left == 0)
        );
    }

    #[test]
    fn build_is_deterministic_per_seed_and_independent_of_threads_and_ranges() {
        let (digits, photos) = (digits(64, 1, 4), photos());
        let full = build_range(&digits, &photos, 3, true, 0..64).unwrap();
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            one_thread
                .install(|| build_range(&digits, &photos, 3, true, 0..64))
                .unwrap(),
            full
        );
        assert_eq!(
            build_range(&digits, &photos, 3, true, 10..30).unwrap(),
            full[10 * 48..30 * 48]
        );
        assert_ne!(build_range(&digits, &photos, 4, true, 0..64).unwrap(), full);
    }

    #[test]
    fn photos_too_small_or_wrong_channels_are_errors() {
        let err = build(&digits(2, 1, 5), &photos(), 0, true, "m")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("c.png: photo is 4x4, smaller than the 5x5"),
            "{err}"
        );
        let err = build(&digits(2, 2, 4), &photos(), 0, true, "m")
            .err()
            .unwrap();
        assert!(
            matches!(err, MnistmError::DigitChannels { channels: 2, .. }),
            "{err}"
        );
        let none = Photos::from_images(Vec::new(), Vec::new());
        assert!(matches!(
            build(&digits(2, 1, 4), &none, 0, true, "m"),
            Err(MnistmError::NoPhotos)
        ));
    }

    #[test]
    fn load_decodes_png_and_jpeg_photos_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        gradient(6, 5).save(base.join("b.png")).unwrap();
        RgbImage::from_pixel(8, 8, Rgb([40, 120, 200]))
            .save(base.join("a.jpg"))
            .unwrap();
        std::fs::write(base.join("notes.txt"), "not a photo").unwrap();
        let photos = Photos::load(base, &ProgressBar::hidden()).unwrap();
        assert_eq!(photos.len(), 2);
        assert!(photos.names[0].ends_with("a.jpg") && photos.names[1].ends_with("b.png"));
        assert_eq!(photos.images[1], gradient(6, 5));
        let jpeg = photos.images[0].get_pixel(3, 3);
        assert!(
            jpeg.0
                .iter()
                .zip([40, 120, 200])
                .all(|(&v, e)| v.abs_diff(e) <= 2),
            "{jpeg:?}"
        );
        std::fs::write(base.join("c.jpg"), "broken").unwrap();
        let err = Photos::load(base, &ProgressBar::hidden()).err().unwrap();
        assert!(err.to_string().contains("c.jpg"), "{err}");
    }
}
