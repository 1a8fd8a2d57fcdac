//! SVHN cropped digits (`{train,test}_32x32.mat`, <http://ufldl.stanford.edu/housenumbers/>):
//! MATLAB v5 files (read by [`super::mat5`]) with two variables.
//!
//! `X` is u8 `[32, 32, 3, N]` (height, width, channel, image) in MATLAB's column-major order, so
//! image n is a contiguous block whose planes are stored column by column; `y` is `[N, 1]`
//! (double, or any integer type) with labels 1..=10 where 10 means the digit 0. The result is
//! `[N, 3, 32, 32]` with labels 0..=9.

use camino::Utf8Path;
use rayon::prelude::*;

use super::mat5::{self, MatArray};
use super::{finish, limited, read_maybe_compressed, FormatError, ReadOptions};
use crate::data::Dataset;

/// SVHN's label for the digit 0.
const ZERO_LABEL: f64 = 10.0;

/// Reads `X` and `y` of an SVHN `.mat` file.
pub fn load_svhn_mat(
    path: &Utf8Path,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let bytes = read_maybe_compressed(path)?;
    let mut arrays = mat5::parse(&bytes).map_err(|source| FormatError::Mat {
        path: path.to_owned(),
        source,
    })?;
    drop(bytes);
    let x = take(&mut arrays, "X", path)?;
    let y = take(&mut arrays, "y", path)?;
    let [height, width, channels, n] = image_dims(&x, path)?;
    if y.len() != n {
        return Err(FormatError::CountMismatch {
            path: path.to_owned(),
            images: n,
            labels: y.len(),
        });
    }
    let keep = limited(n, options);
    let labels = labels(&y.to_f64()[..keep], path)?;
    let column_major = x.into_u8().map_err(|source| FormatError::Mat {
        path: path.to_owned(),
        source,
    })?;
    let pixels = to_planar(
        &column_major[..keep * height * width * channels],
        height,
        width,
    );
    let dataset = Dataset::new(
        pixels,
        [keep, channels, height, width],
        labels,
        Dataset::digit_classes(),
        domain,
    )?;
    finish(dataset, options, path)
}

fn take(arrays: &mut Vec<MatArray>, name: &str, path: &Utf8Path) -> Result<MatArray, FormatError> {
    match arrays.iter().position(|a| a.name == name) {
        Some(index) => Ok(arrays.swap_remove(index)),
        None => Err(FormatError::MatVariable {
            path: path.to_owned(),
            name: name.to_owned(),
            problem: format!(
                "is missing; the file has {:?} (is this an SVHN `*_32x32.mat` file?)",
                arrays.iter().map(|a| a.name.as_str()).collect::<Vec<_>>()
            ),
        }),
    }
}

/// `[height, width, channels, N]` of `X`.
fn image_dims(x: &MatArray, path: &Utf8Path) -> Result<[usize; 4], FormatError> {
    match x.dims[..] {
        [h, w, c @ (1 | 3), n] => Ok([h, w, c, n]),
        _ => Err(FormatError::MatVariable {
            path: path.to_owned(),
            name: x.name.clone(),
            problem: format!(
                "has dimensions {:?}, expected [height, width, 1 or 3 channels, N]",
                x.dims
            ),
        }),
    }
}

/// SVHN labels 1..=10 to digits 0..=9.
fn labels(raw: &[f64], path: &Utf8Path) -> Result<Vec<i64>, FormatError> {
    raw.iter()
        .enumerate()
        .map(|(index, &label)| {
            if label.fract() != 0.0 || !(1.0..=ZERO_LABEL).contains(&label) {
                return Err(FormatError::LabelOutOfRange {
                    path: path.to_owned(),
                    location: format!("y[{index}]"),
                    label: label.to_string(),
                    expected: "1..=10 (10 means the digit 0)".to_owned(),
                });
            }
            Ok(if label == ZERO_LABEL { 0 } else { label as i64 })
        })
        .collect()
}

/// Column-major `[H, W, C, N]` to row-major `[N, C, H, W]`: each plane is transposed.
fn to_planar(column_major: &[u8], height: usize, width: usize) -> Vec<u8> {
    let plane = height * width;
    let mut out = vec![0; column_major.len()];
    out.par_chunks_mut(plane)
        .zip(column_major.par_chunks(plane))
        .for_each(|(dst, src)| {
            for col in 0..width {
                for row in 0..height {
                    dst[row * width + col] = src[col * height + row];
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_each_plane() {
        // One 2x3 (HxW) single-channel image stored column by column.
        let column_major = [0, 3, 1, 4, 2, 5];
        assert_eq!(to_planar(&column_major, 2, 3), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn ten_means_zero_and_other_labels_are_errors() {
        let path = Utf8Path::new("train_32x32.mat");
        assert_eq!(labels(&[10.0, 1.0, 9.0], path).unwrap(), vec![0, 1, 9]);
        let err = labels(&[3.0, 0.0], path).unwrap_err();
        assert!(
            err.to_string().contains("y[1]: label 0 is outside 1..=10"),
            "{err}"
        );
        assert!(labels(&[2.5], path).is_err());
    }
}
