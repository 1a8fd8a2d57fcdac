//! Parallel decoding of image files (PNG, JPEG) into one u8 `[N, C, H, W]` buffer.
//!
//! The first image is decoded alone and fixes C, H and W (after the geometry of the
//! [`ReadOptions`]); the rest are decoded with rayon straight into their slot of the buffer, and
//! any image of another size is an error naming both files.

use camino::{Utf8Path, Utf8PathBuf};
use image::DynamicImage;
use rayon::prelude::*;

use super::{io_error, FormatError, ReadOptions};
use crate::data::transforms;

/// Decoded pixels of many images: `shape` is `[N, C, H, W]`.
pub(super) struct Decoded {
    pub pixels: Vec<u8>,
    pub shape: [usize; 4],
}

/// Decodes `files` in parallel, advancing `options.progress` once per file.
pub(super) fn decode_all(
    files: &[Utf8PathBuf],
    options: &ReadOptions,
) -> Result<Decoded, FormatError> {
    options.progress.set_length(files.len() as u64);
    let Some((first_path, rest)) = files.split_first() else {
        return Ok(Decoded {
            pixels: Vec::new(),
            shape: [0, options.channels.unwrap_or(3), 0, 0],
        });
    };
    let first = open(first_path, options)?;
    let channels = options
        .channels
        .unwrap_or(if first.color().has_color() { 3 } else { 1 });
    let spec = [channels, first.height() as usize, first.width() as usize];
    let per_image = spec.iter().product::<usize>();
    let mut pixels = vec![0; per_image * files.len()];
    let (head, tail) = pixels.split_at_mut(per_image);
    head.copy_from_slice(&to_chw(first, channels, first_path)?);
    options.progress.inc(1);
    let results: Vec<Result<(), FormatError>> = tail
        .par_chunks_mut(per_image)
        .zip(rest)
        .map(|(slot, path)| {
            let decoded = decode_one(path, options, spec, first_path)?;
            slot.copy_from_slice(&decoded);
            options.progress.inc(1);
            Ok(())
        })
        .collect();
    // The first failing file in source order, so the message does not depend on thread timing.
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(Decoded {
        pixels,
        shape: [files.len(), spec[0], spec[1], spec[2]],
    })
}

/// Reads, decodes and reshapes one file.
fn open(path: &Utf8Path, options: &ReadOptions) -> Result<DynamicImage, FormatError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let image = image::load_from_memory(&bytes).map_err(|source| FormatError::Decode {
        path: path.to_owned(),
        source,
    })?;
    options
        .geometry
        .apply(image)
        .map_err(|source| FormatError::Transform {
            path: path.to_owned(),
            source,
        })
}

fn to_chw(image: DynamicImage, channels: usize, path: &Utf8Path) -> Result<Vec<u8>, FormatError> {
    transforms::image_to_chw(image, channels).map_err(|source| FormatError::Transform {
        path: path.to_owned(),
        source,
    })
}

/// One image as `[C, H, W]` bytes, checked against the size `spec` of `reference`.
fn decode_one(
    path: &Utf8Path,
    options: &ReadOptions,
    spec: [usize; 3],
    reference: &Utf8Path,
) -> Result<Vec<u8>, FormatError> {
    let image = open(path, options)?;
    let found = [spec[0], image.height() as usize, image.width() as usize];
    if found != spec {
        return Err(FormatError::ImageSize {
            path: path.to_owned(),
            expected: spec,
            found,
            reference: reference.to_owned(),
        });
    }
    to_chw(image, spec[0], path)
}
