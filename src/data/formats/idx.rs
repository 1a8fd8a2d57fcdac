//! IDX files, the format of MNIST and Fashion-MNIST (spec: <http://yann.lecun.com/exdb/mnist/>,
//! section "FILE FORMATS FOR THE MNIST DATABASE").
//!
//! Big-endian: an image file is magic `0x00000803` (u8 data, 3 dimensions), then N, rows and
//! columns as u32, then N*rows*cols pixels row-major; a label file is magic `0x00000801`, N, then
//! N u8 labels. Files may be gzipped (detected from their first bytes). The result is greyscale,
//! `[N, 1, rows, cols]`.

use camino::Utf8Path;

use super::{finish, limited, read_maybe_compressed, FormatError, ReadOptions};
use crate::data::Dataset;

/// Magic number of an IDX file of u8 images (`[N, rows, cols]`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels (`[N]`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an image file and its label file; labels must lie in `0..classes.len()`.
pub fn load_idx(
    images: &Utf8Path,
    labels: &Utf8Path,
    classes: Vec<String>,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let image_bytes = read_maybe_compressed(images)?;
    let label_bytes = read_maybe_compressed(labels)?;
    let (dims, pixels) = parse(
        &image_bytes,
        images,
        IMAGES_MAGIC,
        "IDX u8 images with 3 dimensions",
    )?;
    let (label_dims, label_data) = parse(
        &label_bytes,
        labels,
        LABELS_MAGIC,
        "IDX u8 labels with 1 dimension",
    )?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if label_dims[0] != n {
        return Err(FormatError::CountMismatch {
            path: labels.to_owned(),
            images: n,
            labels: label_dims[0],
        });
    }
    let keep = limited(n, options);
    let labels_out = check_labels(&label_data[..keep], labels, classes.len())?;
    let dataset = Dataset::new(
        pixels[..keep * rows * cols].to_vec(),
        [keep, 1, rows, cols],
        labels_out,
        classes,
        domain,
    )?;
    finish(dataset, options, images)
}

/// Checks the magic number and the length; returns the dimensions and the data after the header.
fn parse<'a>(
    bytes: &'a [u8],
    path: &Utf8Path,
    magic: u32,
    what: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), FormatError> {
    let truncated = |expected: usize| FormatError::Truncated {
        path: path.to_owned(),
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| truncated(4))?;
    if found != magic {
        return Err(FormatError::BadMagic {
            path: path.to_owned(),
            expected: magic,
            found,
            what,
        });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 * (1 + ndims);
    let dims: Vec<usize> = (1..=ndims)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| truncated(header))?;
    let expected = header + dims.iter().product::<usize>();
    if bytes.len() < expected {
        return Err(truncated(expected));
    }
    Ok((dims, &bytes[header..expected]))
}

fn check_labels(raw: &[u8], path: &Utf8Path, classes: usize) -> Result<Vec<i64>, FormatError> {
    match raw.iter().position(|&label| label as usize >= classes) {
        Some(index) => Err(FormatError::LabelOutOfRange {
            path: path.to_owned(),
            location: format!("item {index}"),
            label: raw[index].to_string(),
            expected: format!("0..{classes}"),
        }),
        None => Ok(raw.iter().map(|&label| label as i64).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use camino::Utf8PathBuf;

    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// Three 2x3 images with pixel value 10 * image + position, labels 7, 0, 9.
    fn write_pair(dir: &Utf8Path, compress: bool) -> (Utf8PathBuf, Utf8PathBuf) {
        let pixels: Vec<u8> = (0..3)
            .flat_map(|i| (0..6).map(move |p| 10 * i + p))
            .collect();
        let (images, labels) = (
            idx(IMAGES_MAGIC, &[3, 2, 3], &pixels),
            idx(LABELS_MAGIC, &[3], &[7, 0, 9]),
        );
        let (images, labels) = if compress {
            (gzip(&images), gzip(&labels))
        } else {
            (images, labels)
        };
        let (ip, lp) = (dir.join("images-idx3-ubyte"), dir.join("labels-idx1-ubyte"));
        std::fs::write(&ip, images).unwrap();
        std::fs::write(&lp, labels).unwrap();
        (ip, lp)
    }

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    fn load(
        images: &Utf8Path,
        labels: &Utf8Path,
        options: &ReadOptions,
    ) -> Result<Dataset, FormatError> {
        load_idx(images, labels, Dataset::digit_classes(), "mnist", options)
    }

    #[test]
    fn reads_plain_and_gzipped_files_alike() {
        let (_dir, path) = tmp();
        for compress in [false, true] {
            let (images, labels) = write_pair(&path, compress);
            let data = load(&images, &labels, &ReadOptions::default()).unwrap();
            assert_eq!(data.shape, [3, 1, 2, 3]);
            assert_eq!(data.labels, vec![7, 0, 9]);
            assert_eq!(data.image(2), &[20, 21, 22, 23, 24, 25]);
        }
    }

    #[test]
    fn limit_and_channels_apply() {
        let (_dir, path) = tmp();
        let (images, labels) = write_pair(&path, true);
        let data = load(
            &images,
            &labels,
            &ReadOptions {
                limit: Some(2),
                channels: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(data.shape, [2, 3, 2, 3]);
        assert_eq!(data.image(1)[12..], [10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn swapped_files_report_bad_magic() {
        let (_dir, path) = tmp();
        let (images, labels) = write_pair(&path, false);
        let err = load(&labels, &images, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("bad magic number: expected 0x00000803 (IDX u8 images with 3 dimensions), found 0x00000801"),
            "{err}"
        );
    }

    #[test]
    fn truncated_pixels_report_expected_and_found() {
        let (_dir, path) = tmp();
        let (images, labels) = write_pair(&path, false);
        let bytes = std::fs::read(&images).unwrap();
        std::fs::write(&images, &bytes[..bytes.len() - 1]).unwrap();
        let err = load(&images, &labels, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is truncated: expected 34 bytes, found 33"),
            "{err}"
        );
        std::fs::write(&images, &bytes[..6]).unwrap();
        let err = load(&images, &labels, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string().ends_with("expected 16 bytes, found 6"),
            "{err}"
        );
    }

    #[test]
    fn label_out_of_range_and_count_mismatch() {
        let (_dir, path) = tmp();
        let (images, labels) = write_pair(&path, false);
        std::fs::write(&labels, idx(LABELS_MAGIC, &[3], &[1, 12, 2])).unwrap();
        let err = load(&images, &labels, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("item 1: label 12 is outside 0..10"),
            "{err}"
        );
        std::fs::write(&labels, idx(LABELS_MAGIC, &[2], &[1, 2])).unwrap();
        let err = load(&images, &labels, &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().ends_with("3 images but 2 labels"), "{err}");
    }
}
