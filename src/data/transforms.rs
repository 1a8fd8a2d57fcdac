//! Pure transforms on images and whole datasets: resize, center crop, greyscale <-> RGB, a seeded
//! train/val split and `limit`.
//!
//! Geometry follows torchvision so recipes ported from PyTorch give the same shapes: `Resize(int)`
//! scales the short side (the long side is truncated, `int(size * long / short)`), `CenterCrop`
//! puts the window at `round((h - th) / 2)` with ties to even, as Python's `round`. Resizing uses
//! the Triangle (bilinear) filter whose support widens with the scale factor, so shrinking is
//! antialiased like PIL's and torchvision's `antialias=True`. Greyscale uses the ITU-R 601 luma
//! weights of PIL's `convert("L")`. Datasets keep the u8 `[N, C, H, W]` contract of
//! [`Dataset`].

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, DatasetError};

/// A target size as written in recipes: one number or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Size {
    /// For `resize`: the short side (aspect kept). For `center_crop`: a square.
    Side(u32),
    /// Exactly `[height, width]`.
    Exact([u32; 2]),
}

/// Resize then center crop, applied to each image (while decoding, for folder formats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    pub resize: Option<Size>,
    pub center_crop: Option<Size>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(
        "cannot center-crop {crop_h}x{crop_w} (HxW) from a {height}x{width} image: the crop must fit inside the image"
    )]
    CropTooLarge {
        crop_h: u32,
        crop_w: u32,
        height: u32,
        width: u32,
    },
    #[error("sizes must be positive, found {height}x{width} (HxW)")]
    EmptySize { height: u32, width: u32 },
    #[error("images have {0} channels; only 1 (greyscale) and 3 (RGB) are supported")]
    UnsupportedChannels(usize),
    #[error("val_fraction must be in [0, 1), found {0}")]
    BadFraction(f64),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

impl Geometry {
    /// True when the geometry leaves every image as it is.
    pub fn is_identity(&self) -> bool {
        self.resize.is_none() && self.center_crop.is_none()
    }

    /// Applies resize then center crop to one image.
    pub fn apply(&self, image: DynamicImage) -> Result<DynamicImage, TransformError> {
        let image = match self.resize {
            Some(size) => resize_image(image, size)?,
            None => image,
        };
        match self.center_crop {
            Some(size) => center_crop_image(image, size),
            None => Ok(image),
        }
    }
}

/// The `(height, width)` an image of `height x width` gets from `resize = size`.
pub fn resized_dims(height: u32, width: u32, size: Size) -> (u32, u32) {
    match size {
        Size::Exact([h, w]) => (h, w),
        Size::Side(side) if height <= width => (
            side,
            (side as u64 * width as u64 / height.max(1) as u64) as u32,
        ),
        Size::Side(side) => (
            (side as u64 * height as u64 / width.max(1) as u64) as u32,
            side,
        ),
    }
}

/// Resizes one image with an antialiasing Triangle filter (a copy when the size is unchanged).
pub fn resize_image(image: DynamicImage, size: Size) -> Result<DynamicImage, TransformError> {
    let (h, w) = resized_dims(image.height(), image.width(), size);
    if h == 0 || w == 0 {
        return Err(TransformError::EmptySize {
            height: h,
            width: w,
        });
    }
    if (h, w) == (image.height(), image.width()) {
        return Ok(image);
    }
    Ok(image.resize_exact(w, h, FilterType::Triangle))
}

/// Top-left corner of a centered `crop` window inside `full`, as torchvision computes it.
fn crop_offset(full: u32, crop: u32) -> u32 {
    ((full - crop) as f64 / 2.0).round_ties_even() as u32
}

fn crop_dims(size: Size) -> (u32, u32) {
    match size {
        Size::Side(s) => (s, s),
        Size::Exact([h, w]) => (h, w),
    }
}

fn check_crop(height: u32, width: u32, size: Size) -> Result<(u32, u32), TransformError> {
    let (crop_h, crop_w) = crop_dims(size);
    if crop_h == 0 || crop_w == 0 {
        return Err(TransformError::EmptySize {
            height: crop_h,
            width: crop_w,
        });
    }
    if crop_h > height || crop_w > width {
        return Err(TransformError::CropTooLarge {
            crop_h,
            crop_w,
            height,
            width,
        });
    }
    Ok((crop_h, crop_w))
}

/// Cuts the centered window of `size` out of one image.
pub fn center_crop_image(image: DynamicImage, size: Size) -> Result<DynamicImage, TransformError> {
    let (crop_h, crop_w) = check_crop(image.height(), image.width(), size)?;
    if (crop_h, crop_w) == (image.height(), image.width()) {
        return Ok(image);
    }
    let top = crop_offset(image.height(), crop_h);
    let left = crop_offset(image.width(), crop_w);
    Ok(image.crop_imm(left, top, crop_w, crop_h))
}

/// ITU-R 601 luma, rounded, as PIL's `convert("L")`.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 299 + g as u32 * 587 + b as u32 * 114 + 500) / 1000) as u8
}

/// Interleaved RGB bytes (`[H, W, 3]`) to greyscale bytes (`[H, W]`).
pub fn rgb_to_grey(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// Copies interleaved `[H, W, C]` pixels into planar `[C, H, W]` order.
pub fn hwc_to_chw(hwc: &[u8], channels: usize, out: &mut [u8]) {
    let plane = hwc.len() / channels.max(1);
    for (i, pixel) in hwc.chunks_exact(channels).enumerate() {
        for (c, &v) in pixel.iter().enumerate() {
            out[c * plane + i] = v;
        }
    }
}

/// Planar `[C, H, W]` pixels to an image (C must be 1 or 3).
fn chw_to_image(
    chw: &[u8],
    channels: usize,
    height: u32,
    width: u32,
) -> Result<DynamicImage, TransformError> {
    let plane = (height * width) as usize;
    let buffer_err = || DatasetError::PixelCountMismatch {
        domain: String::new(),
        images: chw.len(),
        shape: [1, channels, height as usize, width as usize],
        expected: plane * channels,
    };
    match channels {
        1 => GrayImage::from_raw(width, height, chw.to_vec())
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(|| buffer_err().into()),
        3 => {
            let hwc: Vec<u8> = (0..plane)
                .flat_map(|i| [chw[i], chw[plane + i], chw[2 * plane + i]])
                .collect();
            RgbImage::from_raw(width, height, hwc)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| buffer_err().into())
        }
        other => Err(TransformError::UnsupportedChannels(other)),
    }
}

/// An image's pixels as planar `[C, H, W]` bytes with `channels` channels (1 or 3).
pub fn image_to_chw(image: DynamicImage, channels: usize) -> Result<Vec<u8>, TransformError> {
    let hwc = match channels {
        3 => image.into_rgb8().into_raw(),
        1 if image.color().has_color() => rgb_to_grey(image.into_rgb8().as_raw()),
        1 => image.into_luma8().into_raw(),
        other => return Err(TransformError::UnsupportedChannels(other)),
    };
    let mut chw = vec![0; hwc.len()];
    hwc_to_chw(&hwc, channels, &mut chw);
    Ok(chw)
}

/// Applies `geometry` to every image of a dataset (in parallel); a no-op geometry returns the
/// dataset unchanged.
pub fn apply_geometry(dataset: Dataset, geometry: &Geometry) -> Result<Dataset, TransformError> {
    let [n, c, h, w] = dataset.shape;
    if geometry.is_identity() || n == 0 {
        return Ok(dataset);
    }
    let (new_h, new_w) = output_dims(h as u32, w as u32, geometry)?;
    let images: Vec<Vec<u8>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let image = chw_to_image(dataset.image(i), c, h as u32, w as u32)?;
            image_to_chw(geometry.apply(image)?, c)
        })
        .collect::<Result<_, _>>()?;
    let shape = [n, c, new_h as usize, new_w as usize];
    Ok(Dataset::new(
        images.concat(),
        shape,
        dataset.labels,
        dataset.classes,
        dataset.domain,
    )?)
}

/// The size every image has after `geometry`.
pub fn output_dims(
    height: u32,
    width: u32,
    geometry: &Geometry,
) -> Result<(u32, u32), TransformError> {
    let (h, w) = geometry
        .resize
        .map_or((height, width), |size| resized_dims(height, width, size));
    match geometry.center_crop {
        Some(size) => check_crop(h, w, size),
        None => Ok((h, w)),
    }
}

/// Converts a dataset to 1 (greyscale, 601 luma) or 3 (grey replicated) channels.
pub fn to_channels(dataset: Dataset, channels: usize) -> Result<Dataset, TransformError> {
    let [n, c, h, w] = dataset.shape;
    if c == channels {
        return Ok(dataset);
    }
    let plane = h * w;
    let images: Vec<u8> = match (c, channels) {
        (1, 3) => dataset
            .images
            .chunks_exact(plane)
            .flat_map(|p| p.iter().chain(p).chain(p))
            .copied()
            .collect(),
        (3, 1) => dataset
            .images
            .chunks_exact(3 * plane)
            .flat_map(|img| {
                (0..plane).map(move |i| luma(img[i], img[plane + i], img[2 * plane + i]))
            })
            .collect(),
        (1 | 3, other) | (other, _) => return Err(TransformError::UnsupportedChannels(other)),
    };
    Ok(Dataset::new(
        images,
        [n, channels, h, w],
        dataset.labels,
        dataset.classes,
        dataset.domain,
    )?)
}

/// The first `n` images (all of them when there are fewer), in source order.
pub fn limit(dataset: Dataset, n: usize) -> Dataset {
    if n >= dataset.len() {
        return dataset;
    }
    let indices: Vec<usize> = (0..n).collect();
    dataset.select(&indices)
}

/// Splits into `(train, val)`: `round(N * val_fraction)` images drawn by a shuffle seeded with
/// `seed` go to val, the rest to train; both keep the source order. Not stratified.
pub fn split(
    dataset: &Dataset,
    val_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), TransformError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(TransformError::BadFraction(val_fraction));
    }
    let n = dataset.len();
    let n_val = (n as f64 * val_fraction).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (val, train) = order.split_at_mut(n_val);
    val.sort_unstable();
    train.sort_unstable();
    Ok((dataset.select(train), dataset.select(val)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, c: usize, h: usize, w: usize) -> Dataset {
        let images = (0..n * c * h * w).map(|v| (v % 251) as u8).collect();
        Dataset::new(
            images,
            [n, c, h, w],
            (0..n as i64).map(|i| i % 10).collect(),
            Dataset::digit_classes(),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn short_side_resize_matches_torchvision() {
        // CelebA: 178x218 (WxH) -> Resize(64) gives 78x64 (HxW), int(64 * 218 / 178) = 78.
        assert_eq!(resized_dims(218, 178, Size::Side(64)), (78, 64));
        assert_eq!(resized_dims(10, 20, Size::Side(5)), (5, 10));
        assert_eq!(resized_dims(10, 20, Size::Exact([3, 4])), (3, 4));
    }

    #[test]
    fn crop_offset_rounds_half_to_even() {
        assert_eq!(crop_offset(78, 64), 7);
        assert_eq!(crop_offset(5, 4), 0); // round(0.5) = 0 in Python
        assert_eq!(crop_offset(7, 4), 2); // round(1.5) = 2
    }

    #[test]
    fn center_crop_takes_the_middle() {
        let data = ramp(1, 1, 4, 4);
        let cropped = apply_geometry(
            data,
            &Geometry {
                resize: None,
                center_crop: Some(Size::Side(2)),
            },
        )
        .unwrap();
        assert_eq!(cropped.shape, [1, 1, 2, 2]);
        assert_eq!(cropped.images, vec![5, 6, 9, 10]);
    }

    #[test]
    fn crop_larger_than_image_is_an_error() {
        let err = apply_geometry(
            ramp(1, 3, 4, 4),
            &Geometry {
                resize: None,
                center_crop: Some(Size::Exact([5, 2])),
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TransformError::CropTooLarge {
                    crop_h: 5,
                    crop_w: 2,
                    height: 4,
                    width: 4
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn shrinking_averages_instead_of_sampling() {
        // A 1-pixel checkerboard shrunk 4x must come out flat grey, not black or white.
        let images = (0..64)
            .map(|i| if (i / 8 + i % 8) % 2 == 0 { 0 } else { 255 })
            .collect();
        let data =
            Dataset::new(images, [1, 1, 8, 8], vec![0], Dataset::digit_classes(), "t").unwrap();
        let small = apply_geometry(
            data,
            &Geometry {
                resize: Some(Size::Side(2)),
                center_crop: None,
            },
        )
        .unwrap();
        assert_eq!(small.shape, [1, 1, 2, 2]);
        assert!(
            small.images.iter().all(|&v| (100..=155).contains(&v)),
            "{:?}",
            small.images
        );
    }

    #[test]
    fn resize_keeps_rgb_channels_planar() {
        let images: Vec<u8> = [10u8, 20, 30].iter().flat_map(|&v| [v; 16]).collect();
        let data =
            Dataset::new(images, [1, 3, 4, 4], vec![1], Dataset::digit_classes(), "t").unwrap();
        let small = apply_geometry(
            data,
            &Geometry {
                resize: Some(Size::Exact([2, 2])),
                center_crop: None,
            },
        )
        .unwrap();
        assert_eq!(
            small.images,
            vec![10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30]
        );
    }

    #[test]
    fn grey_to_rgb_and_back() {
        let grey = ramp(2, 1, 2, 3);
        let rgb = to_channels(grey.clone(), 3).unwrap();
        assert_eq!(rgb.shape, [2, 3, 2, 3]);
        assert_eq!(&rgb.image(1)[6..12], grey.image(1));
        assert_eq!(to_channels(rgb, 1).unwrap(), grey);
        assert_eq!(luma(255, 0, 0), 76);
    }

    #[test]
    fn split_is_seeded_disjoint_and_ordered() {
        let data = ramp(20, 1, 1, 1);
        let (train, val) = split(&data, 0.25, 7).unwrap();
        assert_eq!((train.len(), val.len()), (15, 5));
        let (train2, val2) = split(&data, 0.25, 7).unwrap();
        assert_eq!((&train, &val), (&train2, &val2));
        let mut all: Vec<u8> = train.images.iter().chain(&val.images).copied().collect();
        assert!(val.images.windows(2).all(|w| w[0] < w[1]));
        all.sort_unstable();
        assert_eq!(all, data.images);
        assert_ne!(split(&data, 0.25, 8).unwrap().1, val);
        assert!(split(&data, 1.0, 0).is_err());
    }

    #[test]
    fn limit_keeps_the_first_images() {
        let data = ramp(5, 1, 1, 2);
        let first = limit(data.clone(), 2);
        assert_eq!(first.labels, vec![0, 1]);
        assert_eq!(first.images, data.images[..4]);
        assert_eq!(limit(data.clone(), 9), data);
    }
}
