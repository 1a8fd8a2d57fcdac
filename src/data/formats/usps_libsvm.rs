//! USPS handwritten digits in libsvm format (`usps.bz2` / `usps.t.bz2`,
//! <https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps>).
//!
//! One text line per image: `label index:value ...` with labels 1..=10 (digit + 1), indices
//! 1..=256 over the 16x16 image in row-major order, values in [-1, 1]; an index that is absent
//! has the value -1 (sparse format, black). Pixels become u8 `round((v + 1) / 2 * 255)`. The file
//! may be bzip2- or gzip-compressed (detected from its first bytes). The result is greyscale,
//! `[N, 1, 16, 16]` with labels 0..=9.

use camino::Utf8Path;

use super::{finish, limited, read_maybe_compressed, FormatError, ReadOptions};
use crate::data::Dataset;

/// Side of a USPS image.
pub const SIDE: usize = 16;
const PIXELS: usize = SIDE * SIDE;
/// Values may overshoot [-1, 1] by float noise; anything further out is an error.
const TOLERANCE: f64 = 1e-6;

/// Reads a USPS libsvm file.
pub fn load_usps_libsvm(
    path: &Utf8Path,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let bytes = read_maybe_compressed(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let keep = limited(lines.len(), options);
    let mut pixels = Vec::with_capacity(keep * PIXELS);
    let mut labels = Vec::with_capacity(keep);
    for &(line, text) in &lines[..keep] {
        let (label, image) = parse_line(text, line, path)?;
        labels.push(label);
        pixels.extend_from_slice(&image);
    }
    let dataset = Dataset::new(
        pixels,
        [keep, 1, SIDE, SIDE],
        labels,
        Dataset::digit_classes(),
        domain,
    )?;
    finish(dataset, options, path)
}

fn syntax(path: &Utf8Path, line: usize, expected: &str, found: &str) -> FormatError {
    FormatError::Syntax {
        path: path.to_owned(),
        line,
        expected: expected.to_owned(),
        found: found.to_owned(),
    }
}

/// One line to its digit and pixels.
fn parse_line(
    text: &str,
    line: usize,
    path: &Utf8Path,
) -> Result<(i64, [u8; PIXELS]), FormatError> {
    let mut fields = text.split_whitespace();
    let label_text = fields.next().unwrap_or_default();
    let label = label_text
        .parse::<f64>()
        .map_err(|_| syntax(path, line, "a numeric label", label_text))?;
    if label.fract() != 0.0 || !(1.0..=10.0).contains(&label) {
        return Err(FormatError::LabelOutOfRange {
            path: path.to_owned(),
            location: format!("line {line}"),
            label: label_text.to_owned(),
            expected: "1..=10 (digit + 1)".to_owned(),
        });
    }
    let mut image = [0u8; PIXELS];
    for field in fields {
        let (index, value) = parse_pair(field).ok_or_else(|| {
            syntax(
                path,
                line,
                "`index:value` with index in 1..=256 and value in [-1, 1]",
                field,
            )
        })?;
        image[index - 1] = value;
    }
    Ok((label as i64 - 1, image))
}

fn parse_pair(field: &str) -> Option<(usize, u8)> {
    let (index, value) = field.split_once(':')?;
    let index: usize = index.parse().ok().filter(|i| (1..=PIXELS).contains(i))?;
    let value: f64 = value
        .parse()
        .ok()
        .filter(|v: &f64| v.abs() <= 1.0 + TOLERANCE)?;
    Some((index, to_u8(value)))
}

/// [-1, 1] to 0..=255.
fn to_u8(value: f64) -> u8 {
    ((value + 1.0) / 2.0 * 255.0).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use camino::Utf8PathBuf;

    use super::*;

    /// Two lines: digit 0 (label 10) with pixel 1 white and pixel 256 at 0; digit 4 all given.
    fn text() -> String {
        let full: Vec<String> = (1..=256)
            .map(|i| format!("{i}:{}", if i % 2 == 0 { "1" } else { "-1" }))
            .collect();
        format!("10 1:1 256:0.0\n5 {}\n", full.join(" "))
    }

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    fn check(data: &Dataset) {
        assert_eq!(data.shape, [2, 1, 16, 16]);
        assert_eq!(data.labels, vec![9, 4]);
        let first = data.image(0);
        assert_eq!((first[0], first[1], first[255]), (255, 0, 128));
        assert_eq!(&data.image(1)[..4], &[0, 255, 0, 255]);
    }

    #[test]
    fn reads_plain_and_bzip2_files() {
        let (_dir, dir) = tmp();
        std::fs::write(dir.join("usps"), text()).unwrap();
        check(&load_usps_libsvm(&dir.join("usps"), "usps", &ReadOptions::default()).unwrap());
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(text().as_bytes()).unwrap();
        std::fs::write(dir.join("usps.bz2"), bz.finish().unwrap()).unwrap();
        check(&load_usps_libsvm(&dir.join("usps.bz2"), "usps", &ReadOptions::default()).unwrap());
    }

    #[test]
    fn limit_reads_the_first_lines() {
        let (_dir, dir) = tmp();
        std::fs::write(dir.join("usps"), text()).unwrap();
        let data = load_usps_libsvm(
            &dir.join("usps"),
            "usps",
            &ReadOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(data.labels, vec![9]);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let (_dir, dir) = tmp();
        let path = dir.join("usps");
        for (content, expected) in [
            ("3 1:0\n11 1:0\n", "line 2: label 11 is outside 1..=10"),
            ("3 1:0\n0 1:0\n", "line 2: label 0 is outside"),
            ("3 257:0\n", "line 1: expected `index:value` with index in 1..=256 and value in [-1, 1], found `257:0`"),
            ("3 1:2.5\n", "found `1:2.5`"),
            ("x 1:0\n", "line 1: expected a numeric label, found `x`"),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = load_usps_libsvm(&path, "usps", &ReadOptions::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn maps_values_to_bytes() {
        assert_eq!(
            (to_u8(-1.0), to_u8(1.0), to_u8(0.0), to_u8(1.0000001)),
            (0, 255, 128, 255)
        );
    }
}
