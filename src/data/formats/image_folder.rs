//! An unlabelled folder of images, such as the course's `hw2_data/face/{train,val}` (64x64 RGB
//! PNGs) that GANs and diffusion models train on and FID compares against.
//!
//! Every `*.png`, `*.jpg` and `*.jpeg` file directly inside the folder (extension in any case) is
//! read in file-name order; sub-folders are ignored. Labels are [`UNLABELLED`] and the class list
//! is empty.
//!
//! FID reads folders as pytorch-fid does ([`list_images_like_pytorch_fid`]): the files matching
//! `*.{ext}` for its `IMAGE_EXTENSIONS` (lower case only, as `pathlib.Path.glob` matches on
//! Linux; other files are skipped), sorted by path, converted to RGB like PIL's
//! `convert('RGB')` (grey replicated, alpha dropped).

use camino::{Utf8Path, Utf8PathBuf};

use super::images::decode_all;
use super::{io_error, limited, FormatError, ReadOptions};
use crate::data::dataset::UNLABELLED;
use crate::data::Dataset;

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// pytorch-fid's `IMAGE_EXTENSIONS` (`fid_score.py`).
pub const PYTORCH_FID_EXTENSIONS: &[&str] = &[
    "bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp",
];

/// Image files directly inside `dir`, sorted by name; an error if there are none.
pub fn list_images(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>, FormatError> {
    list_matching(dir, "*.png, *.jpg, *.jpeg in any case", |ext| {
        EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}

/// The files pytorch-fid reads from `dir`: extensions of [`PYTORCH_FID_EXTENSIONS`] in lower
/// case, sorted by path; an error if there are none.
pub fn list_images_like_pytorch_fid(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>, FormatError> {
    let looked_for = format!(
        "*.{{{}}}, lower case, as pytorch-fid",
        PYTORCH_FID_EXTENSIONS.join(",")
    );
    list_matching(dir, &looked_for, |ext| {
        PYTORCH_FID_EXTENSIONS.contains(&ext)
    })
}

fn list_matching(
    dir: &Utf8Path,
    looked_for: &str,
    accept: impl Fn(&str) -> bool,
) -> Result<Vec<Utf8PathBuf>, FormatError> {
    let mut files = Vec::new();
    for entry in dir.read_dir_utf8().map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.into_path();
        if path.extension().is_some_and(&accept) && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(FormatError::NoImages {
            path: dir.to_owned(),
            looked_for: looked_for.to_owned(),
        });
    }
    files.sort_unstable();
    Ok(files)
}

/// The images pytorch-fid reads from `dir`, as RGB, decoded in parallel; all must have one size
/// (pytorch-fid stacks them into batches).
pub fn load_rgb_folder_like_pytorch_fid(
    dir: &Utf8Path,
    progress: indicatif::ProgressBar,
) -> Result<Dataset, FormatError> {
    let files = list_images_like_pytorch_fid(dir)?;
    let options = ReadOptions {
        channels: Some(3),
        progress,
        ..ReadOptions::default()
    };
    let domain = dir.file_name().unwrap_or("images");
    unlabelled(&files, domain, &options)
}

/// Reads the images of `dir` (the first `options.limit` by name) as an unlabelled dataset.
pub fn load_image_folder(
    dir: &Utf8Path,
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let mut files = list_images(dir)?;
    files.truncate(limited(files.len(), options));
    unlabelled(&files, domain, options)
}

/// `files` decoded into a dataset without classes.
fn unlabelled(
    files: &[Utf8PathBuf],
    domain: &str,
    options: &ReadOptions,
) -> Result<Dataset, FormatError> {
    let decoded = decode_all(files, options)?;
    let labels = vec![UNLABELLED; files.len()];
    Ok(Dataset::new(
        decoded.pixels,
        decoded.shape,
        labels,
        Vec::new(),
        domain,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transforms::{Geometry, Size};

    fn folder() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        for (name, value) in [("b.png", 20u8), ("a.PNG", 10), ("c.jpg", 30)] {
            image::RgbImage::from_pixel(8, 6, image::Rgb([value; 3]))
                .save_with_format(
                    path.join(name),
                    if name.ends_with("jpg") {
                        image::ImageFormat::Jpeg
                    } else {
                        image::ImageFormat::Png
                    },
                )
                .unwrap();
        }
        std::fs::write(path.join("notes.txt"), "not an image").unwrap();
        std::fs::create_dir(path.join("sub.png")).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_pngs_and_jpegs_in_name_order_unlabelled() {
        let (_dir, path) = folder();
        let data = load_image_folder(&path, "faces", &ReadOptions::default()).unwrap();
        assert_eq!(data.shape, [3, 3, 6, 8]);
        assert_eq!(data.labels, vec![UNLABELLED; 3]);
        assert!(data.classes.is_empty());
        assert_eq!((data.image(0)[0], data.image(1)[0]), (10, 20));
        assert!(
            data.image(2).iter().all(|&v| v.abs_diff(30) <= 2),
            "JPEG stays close to 30"
        );
    }

    #[test]
    fn applies_geometry_per_image_and_limit() {
        let (_dir, path) = folder();
        let options = ReadOptions {
            geometry: Geometry {
                resize: Some(Size::Side(3)),
                center_crop: Some(Size::Side(3)),
            },
            channels: Some(1),
            limit: Some(2),
            ..Default::default()
        };
        let data = load_image_folder(&path, "faces", &options).unwrap();
        assert_eq!(data.shape, [2, 1, 3, 3]);
        assert_eq!(data.image(1), &[20; 9]);
    }

    #[test]
    fn pytorch_fid_listing_takes_its_extensions_in_lower_case_only() {
        let (_dir, path) = folder();
        std::fs::write(path.join("a.webp"), "x").unwrap();
        let names: Vec<String> = list_images_like_pytorch_fid(&path)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.webp", "b.png", "c.jpg"]);
    }

    #[test]
    fn pytorch_fid_folder_is_rgb_and_names_an_undecodable_file() {
        let (_dir, path) = folder();
        image::GrayImage::from_pixel(8, 6, image::Luma([7]))
            .save(path.join("d.png"))
            .unwrap();
        let data =
            load_rgb_folder_like_pytorch_fid(&path, indicatif::ProgressBar::hidden()).unwrap();
        assert_eq!(data.shape, [3, 3, 6, 8]);
        assert!(data.image(2).iter().all(|&v| v == 7));
        std::fs::write(path.join("e.png"), "not a png").unwrap();
        let err =
            load_rgb_folder_like_pytorch_fid(&path, indicatif::ProgressBar::hidden()).unwrap_err();
        assert!(err.to_string().contains("e.png"), "{err}");
    }

    #[test]
    fn empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap();
        let err = load_image_folder(path, "faces", &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no images"), "{err}");
    }
}
