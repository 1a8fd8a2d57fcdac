//! The course layout: a folder of images and a CSV naming them with their labels.
//!
//! As distributed in `hw2_data.zip` (DLCV course, homework 2):
//! `hw2_data/digits/{mnistm,svhn,usps}/data/*.png` with `train.csv` and `val.csv` next to `data/`,
//! each starting with the header `image_name,label` followed by rows such as `00000.png,5`.
//! USPS images are greyscale; pass `channels: Some(3)` in [`ReadOptions`] to get RGB. Images are
//! decoded in parallel (see [`super::images`]); rows keep the CSV's order.

use camino::{Utf8Path, Utf8PathBuf};

use super::images::decode_all;
use super::{io_error, limited, FormatError, ReadOptions};
use crate::data::Dataset;

/// The header line every course CSV starts with.
pub const CSV_HEADER: &str = "image_name,label";

/// One CSV row: image file name, label, 1-based line number.
struct Row {
    image: String,
    label: i64,
    line: usize,
}

/// Reads the images listed in `csv` from `images_dir`, with labels in `0..classes.len()`.
pub fn load_course(
    csv: &Utf8Path,
    images_dir: &Utf8Path,
    classes: Vec<String>,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let text = std::fs::read_to_string(csv).map_err(io_error(csv))?;
    let mut rows = parse_csv(&text, csv, classes.len())?;
    rows.truncate(limited(rows.len(), options));
    let files = image_paths(&rows, csv, images_dir)?;
    let decoded = decode_all(&files, options)?;
    let labels = rows.iter().map(|row| row.label).collect();
    Ok(Dataset::new(
        decoded.pixels,
        decoded.shape,
        labels,
        classes,
        domain,
    )?)
}

fn parse_csv(text: &str, csv: &Utf8Path, classes: usize) -> Result<Vec<Row>, FormatError> {
    // Spreadsheet programs often save CSVs with a UTF-8 byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()));
    let header = lines.next().map_or("", |(_, line)| line);
    if header != CSV_HEADER {
        return Err(syntax(csv, 1, format!("the header `{CSV_HEADER}`"), header));
    }
    lines
        .filter(|(_, line)| !line.is_empty())
        .map(|(line, text)| parse_row(text, line, csv, classes))
        .collect()
}

fn parse_row(text: &str, line: usize, csv: &Utf8Path, classes: usize) -> Result<Row, FormatError> {
    let Some((image, label)) = text.split_once(',') else {
        return Err(syntax(csv, line, "`image_name,label`".to_owned(), text));
    };
    let label_text = label.trim();
    let label: i64 = label_text
        .parse()
        .map_err(|_| syntax(csv, line, "an integer label".to_owned(), label_text))?;
    if !(0..classes as i64).contains(&label) {
        return Err(FormatError::LabelOutOfRange {
            path: csv.to_owned(),
            location: format!("line {line}"),
            label: label.to_string(),
            expected: format!("0..{classes}"),
        });
    }
    let image = image.trim();
    // The images' content is hashed into the cache key through `images_dir`: a row naming a file
    // outside it would be read without being part of the key.
    let inside = !image.is_empty()
        && Utf8Path::new(image).components().all(|c| {
            matches!(
                c,
                camino::Utf8Component::Normal(_) | camino::Utf8Component::CurDir
            )
        });
    if !inside {
        return Err(syntax(
            csv,
            line,
            "an image file name inside the image folder (no `..`, not absolute)".to_owned(),
            image,
        ));
    }
    Ok(Row {
        image: image.to_owned(),
        label,
        line,
    })
}

fn syntax(path: &Utf8Path, line: usize, expected: String, found: &str) -> FormatError {
    FormatError::Syntax {
        path: path.to_owned(),
        line,
        expected,
        found: found.to_owned(),
    }
}

/// Paths of the rows' images; the first missing one is an error naming its CSV line.
fn image_paths(
    rows: &[Row],
    csv: &Utf8Path,
    images_dir: &Utf8Path,
) -> Result<Vec<Utf8PathBuf>, FormatError> {
    rows.iter()
        .map(|row| {
            let path = images_dir.join(&row.image);
            if path.is_file() {
                Ok(path)
            } else {
                Err(FormatError::MissingImage {
                    csv: csv.to_owned(),
                    line: row.line,
                    image: row.image.clone(),
                    dir: images_dir.to_owned(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A course folder with `n` images `{i:05}.png` of `size` (HxW), pixel value = 10 * i + channel.
    fn write_course(root: &Utf8Path, n: usize, grey: bool) {
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut csv = format!("{CSV_HEADER}\n");
        for i in 0..n {
            let name = format!("{i:05}.png");
            if grey {
                image::GrayImage::from_fn(3, 2, |x, y| {
                    image::Luma([(10 * i as u32 + x + 3 * y) as u8])
                })
                .save(data.join(&name))
                .unwrap();
            } else {
                image::RgbImage::from_fn(3, 2, |x, _| {
                    image::Rgb([10 * i as u8, 10 * i as u8 + 1, x as u8])
                })
                .save(data.join(&name))
                .unwrap();
            }
            csv.push_str(&format!("{name},{}\n", i % 10));
        }
        std::fs::write(root.join("train.csv"), csv).unwrap();
    }

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    fn load(root: &Utf8Path, options: &ReadOptions) -> Result<Dataset, FormatError> {
        load_course(
            &root.join("train.csv"),
            &root.join("data"),
            Dataset::digit_classes(),
            "mnistm",
            options,
        )
    }

    #[test]
    fn reads_rgb_pngs_planar_in_csv_order() {
        let (_dir, root) = tmp();
        write_course(&root, 12, false);
        let data = load(&root, &ReadOptions::default()).unwrap();
        assert_eq!(data.shape, [12, 3, 2, 3]);
        assert_eq!(data.labels[11], 1);
        assert_eq!(
            data.image(11),
            &[110, 110, 110, 110, 110, 110, 111, 111, 111, 111, 111, 111, 0, 1, 2, 0, 1, 2]
        );
        assert_eq!(data.domain, "mnistm");
    }

    #[test]
    fn greyscale_pngs_convert_to_rgb_and_limit_reads_first_rows() {
        let (_dir, root) = tmp();
        write_course(&root, 4, true);
        let grey = load(&root, &ReadOptions::default()).unwrap();
        assert_eq!(grey.shape, [4, 1, 2, 3]);
        assert_eq!(grey.image(2), &[20, 21, 22, 23, 24, 25]);
        let rgb = load(
            &root,
            &ReadOptions {
                channels: Some(3),
                limit: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(rgb.shape, [3, 3, 2, 3]);
        assert_eq!(&rgb.image(2)[6..12], grey.image(2));
    }

    #[test]
    fn missing_image_names_the_csv_line() {
        let (_dir, root) = tmp();
        write_course(&root, 3, false);
        std::fs::remove_file(root.join("data/00001.png")).unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, FormatError::MissingImage { line: 3, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("train.csv line 3: image `00001.png`"),
            "{err}"
        );
    }

    #[test]
    fn label_out_of_range_names_the_line() {
        let (_dir, root) = tmp();
        write_course(&root, 2, false);
        std::fs::write(
            root.join("train.csv"),
            "image_name,label\n00000.png,3\n00001.png,10\n",
        )
        .unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("train.csv line 3: label 10 is outside 0..10"),
            "{err}"
        );
    }

    #[test]
    fn wrong_header_and_bad_label_are_syntax_errors() {
        let (_dir, root) = tmp();
        write_course(&root, 1, false);
        std::fs::write(root.join("train.csv"), "file,label\n00000.png,3\n").unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 1: expected the header `image_name,label`, found `file,label`"),
            "{err}"
        );
        std::fs::write(
            root.join("train.csv"),
            "image_name,label\n00000.png,three\n",
        )
        .unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2: expected an integer label, found `three`"),
            "{err}"
        );
    }

    #[test]
    fn rows_outside_the_image_folder_are_refused_with_their_line() {
        let (_dir, root) = tmp();
        write_course(&root, 1, false);
        for bad in ["../../x.png", "/etc/passwd", "data/../../x.png"] {
            std::fs::write(
                root.join("train.csv"),
                format!("image_name,label\n00000.png,3\n{bad},1\n"),
            )
            .unwrap();
            let err = load(&root, &ReadOptions::default()).unwrap_err();
            assert!(
                err.to_string().contains("line 3") && err.to_string().contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_header_is_accepted() {
        let (_dir, root) = tmp();
        write_course(&root, 2, false);
        std::fs::write(
            root.join("train.csv"),
            "\u{feff}image_name,label\n00000.png,3\n00001.png,4\n",
        )
        .unwrap();
        assert_eq!(
            load(&root, &ReadOptions::default()).unwrap().labels,
            vec![3, 4]
        );
    }

    #[test]
    fn image_of_another_size_is_an_error() {
        let (_dir, root) = tmp();
        write_course(&root, 3, false);
        image::RgbImage::new(4, 2)
            .save(root.join("data/00002.png"))
            .unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("00002.png: image is 3x2x4 (CxHxW), expected 3x2x3 like"),
            "{text}"
        );
    }

    #[test]
    fn corrupt_png_is_a_decode_error() {
        let (_dir, root) = tmp();
        write_course(&root, 2, false);
        std::fs::write(root.join("data/00001.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = load(&root, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, FormatError::Decode { .. }), "{err}");
    }
}
