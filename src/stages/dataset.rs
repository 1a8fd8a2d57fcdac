//! `dataset`: reads a real data set from disk into `train` and `val` datasets.
//!
//! Formats (readers in [`crate::data::formats`]): `course` (an image folder plus
//! `image_name,label` CSVs, as in the course's `hw2_data`), `image_folder` (unlabelled PNG/JPEG
//! files, e.g. `hw2_data/face/train`), `celeba` (aligned JPEGs shrunk to `size` x `size`), `idx`
//! (MNIST / Fashion-MNIST), `svhn_mat` (SVHN's MATLAB files) and `usps_libsvm`.
//!
//! Where the files come from, for each source slot (`train`, `train_labels`, `val`,
//! `val_labels`, `images_dir`), is either
//! - `root`: a folder on disk (relative to the directory hwrun runs in), with every slot a path
//!   inside `root/subdir` (the files' content is part of the cache key, so editing them reruns
//!   the stage); or
//! - inputs: the input named like the slot if there is one (with the slot's field unset, a
//!   folder holding a single file, as a `download` stage leaves it, means that file), otherwise
//!   `subdir` inside the input `raw`; the slot's field is a path inside that directory.
//!
//! Unset slots take the format's usual file names (table below). `val` is read from its own
//! source when the format has one (course `val.csv`, MNIST `t10k`, SVHN `test`, USPS `usps.t`)
//! or `val` is given; otherwise, or when `val_fraction` is set, the `train` source is split with
//! the recipe seed ([`split`]; default fraction 0.1).
//!
//! | format | train | train_labels | val | val_labels |
//! |---|---|---|---|---|
//! | course | `train.csv` (images in `images_dir`, default `data`) | | `val.csv` | |
//! | image_folder | `.` (the folder itself) | | split | |
//! | celeba | `img_align_celeba` | | split | |
//! | idx | `train-images-idx3-ubyte.gz` | `train-labels-idx1-ubyte.gz` | `t10k-images-idx3-ubyte.gz` | `t10k-labels-idx1-ubyte.gz` |
//! | svhn_mat | `train_32x32.mat` | | `test_32x32.mat` | |
//! | usps_libsvm | `usps.bz2` | | `usps.t.bz2` | |
//!
//! Transforms, in this order: `limit` (the first N images of each source, before splitting;
//! folders decode only those), `resize`, `center_crop`, `channels`. Outputs: `train` and `val`,
//! each a directory holding a saved [`Dataset`]. The summary has one line per output; the
//! metrics are `train.n` and `val.n`.
//!
//! ```toml
//! # The course's digits, from the unzipped hw2_data on disk; USPS is greyscale, make it RGB.
//! [stages.usps]
//! kind = "dataset"
//! format = "course"
//! root = "hw2_data/digits/usps"       # holds train.csv, val.csv and data/*.png
//! domain = "usps"
//! channels = 3
//! resize = [28, 28]                   # optional
//!
//! # The same from the course zip fetched by a download stage (unpack = true).
//! [stages.mnistm]
//! kind = "dataset"
//! format = "course"
//! inputs = { raw = "hw2_zip" }
//! subdir = "hw2_data/digits/mnistm"
//! domain = "mnistm"
//!
//! # The course's faces: train and val folders, unlabelled.
//! [stages.faces]
//! kind = "dataset"
//! format = "image_folder"
//! root = "hw2_data/face"
//! train = "train"
//! val = "val"
//! domain = "faces"
//!
//! # CelebA as in the DCGAN tutorial: short side to 64, center crop 64x64; 2% held out.
//! [stages.celeba]
//! kind = "dataset"
//! format = "celeba"
//! inputs = { raw = "celeba_zip" }     # a download stage with unpack = true
//! domain = "celeba"
//! size = 64                           # default 64
//! val_fraction = 0.02
//! limit = 50000                       # the first 50,000 files by name
//!
//! # MNIST from four download stages (each leaves one file).
//! [stages.mnist]
//! kind = "dataset"
//! format = "idx"
//! inputs = { train = "mnist_train_images", train_labels = "mnist_train_labels", val = "mnist_test_images", val_labels = "mnist_test_labels" }
//! domain = "mnist"
//! channels = 3                        # to pair with MNIST-M
//!
//! # Fashion-MNIST from a local folder holding the four .gz files, with class names.
//! [stages.fashion]
//! kind = "dataset"
//! format = "idx"
//! root = "data/fashion"
//! domain = "fashion"
//! classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
//!
//! # SVHN: train_32x32.mat as train, test_32x32.mat as val.
//! [stages.svhn]
//! kind = "dataset"
//! format = "svhn_mat"
//! inputs = { train = "svhn_train_mat", val = "svhn_test_mat" }
//! domain = "svhn"
//! resize = [28, 28]
//!
//! # USPS from libsvm files in a raw folder; resized to 28x28 RGB for digit transfer.
//! [stages.usps_libsvm]
//! kind = "dataset"
//! format = "usps_libsvm"
//! inputs = { raw = "usps_files" }     # holds usps.bz2 and usps.t.bz2
//! domain = "usps"
//! resize = 28
//! channels = 3
//! ```

use std::time::Instant;

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::data::formats::{self, ReadOptions, CELEBA_SIZE};
use crate::data::transforms::{split, Geometry, Size};
use crate::data::Dataset;
use crate::stage::{InputSpec, Inputs, Stage, StageContext, StageOutcome, StageShape};

/// Share of `train` held out as `val` when the source has no val split and none is given.
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;

/// The `dataset` stage kind.
pub struct DatasetStage;

/// Which reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Course,
    ImageFolder,
    Idx,
    SvhnMat,
    UspsLibsvm,
    Celeba,
}

/// The fields of a `dataset` stage table, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetFields {
    /// `course`, `image_folder`, `idx`, `svhn_mat`, `usps_libsvm` or `celeba`.
    pub format: Format,
    /// Domain name stored in the datasets (colours t-SNE plots, names summaries).
    pub domain: String,
    /// A folder on disk holding the sources (instead of inputs); hashed into the cache key.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub root: Option<Utf8PathBuf>,
    /// A folder inside `root` or the `raw` input that the slots are relative to.
    #[serde(default)]
    pub subdir: Option<String>,
    /// The train source: CSV (course), folder (image_folder, celeba), IDX image file, .mat or libsvm file.
    #[serde(default)]
    pub train: Option<String>,
    /// IDX label file of the train split (idx only).
    #[serde(default)]
    pub train_labels: Option<String>,
    /// The val source, of the same kind as `train`.
    #[serde(default)]
    pub val: Option<String>,
    /// IDX label file of the val split (idx only).
    #[serde(default)]
    pub val_labels: Option<String>,
    /// Folder the course CSVs' image names are relative to (course only; default `data`).
    #[serde(default)]
    pub images_dir: Option<String>,
    /// Split `train` into train/val with this share in val (in [0, 1)) instead of reading `val`.
    #[serde(default)]
    pub val_fraction: Option<f64>,
    /// Class names for course and idx (default the digits "0".."9"); labels must index them.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Side of the square CelebA images (celeba only; default 64).
    #[serde(default)]
    pub size: Option<u32>,
    /// Resize each image: a number sets the short side (aspect kept), `[h, w]` the exact size; antialiased.
    #[serde(default)]
    pub resize: Option<Size>,
    /// Center crop after resizing: a number for a square, or `[h, w]`.
    #[serde(default)]
    pub center_crop: Option<Size>,
    /// Output channels: 1 (greyscale) or 3 (RGB); default the source's.
    #[serde(default)]
    pub channels: Option<usize>,
    /// Read only the first N images of each source (before splitting).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Parameters of a `dataset` stage: [`DatasetFields`] checked for consistency when the recipe is
/// read, so a misplaced field fails before anything runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "DatasetFields", into = "DatasetFields")]
pub struct DatasetParams(DatasetFields);

impl DatasetParams {
    pub fn fields(&self) -> &DatasetFields {
        &self.0
    }
}

impl From<DatasetParams> for DatasetFields {
    fn from(params: DatasetParams) -> Self {
        params.0
    }
}

impl TryFrom<DatasetFields> for DatasetParams {
    type Error = String;

    fn try_from(fields: DatasetFields) -> Result<Self, String> {
        fields.validate()?;
        Ok(DatasetParams(fields))
    }
}

/// A field that only some formats read.
fn only_for(name: &str, set: bool, allowed: bool, formats: &str) -> Result<(), String> {
    if set && !allowed {
        return Err(format!("`{name}` only applies to format {formats}"));
    }
    Ok(())
}

impl DatasetFields {
    fn validate(&self) -> Result<(), String> {
        use Format::*;
        let f = self.format;
        only_for(
            "train_labels",
            self.train_labels.is_some(),
            f == Idx,
            "`idx`",
        )?;
        only_for("val_labels", self.val_labels.is_some(), f == Idx, "`idx`")?;
        only_for(
            "images_dir",
            self.images_dir.is_some(),
            f == Course,
            "`course`",
        )?;
        only_for(
            "classes",
            self.classes.is_some(),
            matches!(f, Course | Idx),
            "`course` or `idx`",
        )?;
        only_for("size", self.size.is_some(), f == Celeba, "`celeba`")?;
        let geometry = self.resize.is_some() || self.center_crop.is_some();
        only_for(
            "resize/center_crop",
            geometry,
            f != Celeba,
            "other than `celeba` (set `size`)",
        )?;
        if self.val.is_some() && self.val_fraction.is_some() {
            return Err(
                "give either `val` (a val source) or `val_fraction` (split train), not both".into(),
            );
        }
        if let Some(fraction) = self.val_fraction.filter(|v| !(0.0..1.0).contains(v)) {
            return Err(format!(
                "`val_fraction` must be in [0, 1), found {fraction}"
            ));
        }
        if let Some(channels) = self.channels.filter(|c| ![1, 3].contains(c)) {
            return Err(format!("`channels` must be 1 or 3, found {channels}"));
        }
        if self.limit == Some(0)
            || self.size == Some(0)
            || self.classes.as_ref().is_some_and(Vec::is_empty)
        {
            return Err("`limit`, `size` and `classes` must not be zero or empty".into());
        }
        Ok(())
    }
}

/// The two outputs and the source slots each reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Split {
    Train,
    Val,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }

    fn labels_slot(self) -> &'static str {
        match self {
            Split::Train => "train_labels",
            Split::Val => "val_labels",
        }
    }
}

/// The usual file names of a format, by slot.
struct Defaults {
    train: &'static str,
    train_labels: &'static str,
    val: Option<&'static str>,
    val_labels: &'static str,
}

impl Format {
    fn defaults(self) -> Defaults {
        let (train, train_labels, val, val_labels) = match self {
            Format::Course => ("train.csv", "", Some("val.csv"), ""),
            Format::ImageFolder => (".", "", None, ""),
            Format::Celeba => ("img_align_celeba", "", None, ""),
            Format::Idx => (
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                Some("t10k-images-idx3-ubyte.gz"),
                "t10k-labels-idx1-ubyte.gz",
            ),
            Format::SvhnMat => ("train_32x32.mat", "", Some("test_32x32.mat"), ""),
            Format::UspsLibsvm => ("usps.bz2", "", Some("usps.t.bz2"), ""),
        };
        Defaults {
            train,
            train_labels,
            val,
            val_labels,
        }
    }
}

const DEFAULT_IMAGES_DIR: &str = "data";

/// `base/rel`, with `.` and the empty path meaning `base` itself.
fn join(base: &Utf8Path, rel: &str) -> Utf8PathBuf {
    if rel.is_empty() || rel == "." {
        base.to_owned()
    } else {
        base.join(rel)
    }
}

/// The only entry of `dir`, if it has exactly one (the file a `download` stage leaves).
fn single_entry(dir: &Utf8Path) -> Option<Utf8PathBuf> {
    let mut entries = dir.read_dir_utf8().ok()?;
    let first = entries.next()?.ok()?.into_path();
    entries.next().is_none().then_some(first)
}

impl DatasetFields {
    /// Whether `val` comes from its own source rather than a split of `train`.
    fn val_from_source(&self, has_val_input: bool) -> bool {
        self.val_fraction.is_none()
            && (self.val.is_some() || has_val_input || self.format.defaults().val.is_some())
    }

    /// A slot's field and default name.
    fn slot(&self, slot: &str) -> (Option<&str>, &'static str) {
        let d = self.format.defaults();
        match slot {
            "train" => (self.train.as_deref(), d.train),
            "train_labels" => (self.train_labels.as_deref(), d.train_labels),
            "val" => (self.val.as_deref(), d.val.unwrap_or(".")),
            "val_labels" => (self.val_labels.as_deref(), d.val_labels),
            _ => (self.images_dir.as_deref(), DEFAULT_IMAGES_DIR),
        }
    }

    /// The slots a split reads.
    fn slots(&self, split: Split) -> Vec<&'static str> {
        let mut slots = vec![split.name()];
        match self.format {
            Format::Idx => slots.push(split.labels_slot()),
            Format::Course => slots.push("images_dir"),
            _ => {}
        }
        slots
    }

    /// `base/subdir/rel`.
    fn under(&self, base: &Utf8Path, rel: &str) -> Utf8PathBuf {
        join(&join(base, self.subdir.as_deref().unwrap_or_default()), rel)
    }

    /// Where a slot's file is, given the stage's inputs (see the module docs).
    fn locate(&self, ctx: &StageContext, slot: &str) -> anyhow::Result<Utf8PathBuf> {
        let (field, default) = self.slot(slot);
        if let Some(root) = &self.root {
            return Ok(self.under(root, field.unwrap_or(default)));
        }
        if let Some(input) = ctx.inputs().get(slot) {
            return Ok(match (field, single_entry(&input.dir)) {
                (Some(rel), _) => join(&input.dir, rel),
                (None, Some(only)) => only,
                (None, None) => join(&input.dir, default),
            });
        }
        match ctx.inputs().get("raw") {
            Some(raw) => Ok(self.under(&raw.dir, field.unwrap_or(default))),
            None => bail!(
                "stage `{}` has no source for `{slot}`: set `root`, or add an input named `raw` or `{slot}`",
                ctx.name()
            ),
        }
    }

    fn read_options(&self, ctx: &StageContext) -> ReadOptions {
        ReadOptions {
            geometry: Geometry {
                resize: self.resize,
                center_crop: self.center_crop,
            },
            channels: self.channels,
            limit: self.limit,
            progress: ctx.progress().clone(),
        }
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone().unwrap_or_else(Dataset::digit_classes)
    }

    /// Reads one source with the format's reader.
    fn read(&self, ctx: &StageContext, split: Split) -> anyhow::Result<Dataset> {
        let started = Instant::now();
        ctx.start_phase(format!("reading {} ({:?})", split.name(), self.format), 0);
        let paths = self
            .slots(split)
            .into_iter()
            .map(|slot| self.locate(ctx, slot))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (main, second) = (&paths[0], paths.get(1));
        let options = self.read_options(ctx);
        let domain = &self.domain;
        let dataset = match (self.format, second) {
            (Format::Course, Some(images)) => {
                formats::load_course(main, images, self.classes(), domain, &options)?
            }
            (Format::Idx, Some(labels)) => {
                formats::load_idx(main, labels, self.classes(), domain, &options)?
            }
            (Format::ImageFolder, _) => formats::load_image_folder(main, domain, &options)?,
            (Format::Celeba, _) => {
                formats::load_celeba(main, self.size.unwrap_or(CELEBA_SIZE), domain, &options)?
            }
            (Format::SvhnMat, _) => formats::load_svhn_mat(main, domain, &options)?,
            (Format::UspsLibsvm, _) => formats::load_usps_libsvm(main, domain, &options)?,
            (Format::Course | Format::Idx, None) => {
                bail!("format {:?} reads two sources", self.format)
            }
        };
        if dataset.is_empty() {
            bail!(
                "the {} source `{main}` of stage `{}` has no images: a data set must hold at least one",
                split.name(),
                ctx.name()
            );
        }
        ctx.log(format!(
            "{}: read {} images from {main} in {:.1?}",
            split.name(),
            dataset.len(),
            started.elapsed()
        ));
        Ok(dataset)
    }
}

impl Stage for DatasetStage {
    type Params = DatasetParams;
    const KIND: &'static str = "dataset";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Read a real data set (course folders, image folders, CelebA, IDX, SVHN .mat, USPS libsvm) as train/val datasets";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::optional(
            "raw",
            "a folder holding the data (a download stage with `unpack = true`), instead of `root`",
        ),
        InputSpec::optional(
            "train",
            "the training file of a per-split format (`idx`, `svhn_mat`)",
        ),
        InputSpec::optional("train_labels", "the training labels file (`idx`)"),
        InputSpec::optional("val", "the validation file of a per-split format"),
        InputSpec::optional("val_labels", "the validation labels file (`idx`)"),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.hw2_zip]
kind = "download"
source = "https://example.org/hw2_data.zip"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
unpack = true

[stages.mnistm]
kind = "dataset"
format = "course"             # course | image_folder | celeba | idx | svhn_mat | usps_libsvm
inputs = { raw = "hw2_zip" }  # or root = "hw2_data/digits/mnistm"
subdir = "hw2_data/digits/mnistm"
domain = "mnistm"
channels = 3
resize = [28, 28]             # optional
"#;

    fn shape(params: &DatasetParams) -> StageShape {
        let fields = params.fields();
        let external_paths = match &fields.root {
            Some(root) => {
                let mut slots = fields.slots(Split::Train);
                if fields.val_from_source(false) {
                    slots.extend(fields.slots(Split::Val));
                }
                slots.sort_unstable();
                slots.dedup();
                slots
                    .into_iter()
                    .map(|slot| {
                        let (field, default) = fields.slot(slot);
                        fields.under(root, field.unwrap_or(default))
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        StageShape {
            outputs: vec!["train".into(), "val".into()],
            external_paths,
            ..StageShape::default()
        }
    }

    fn run(params: DatasetParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let fields = params.fields();
        if fields.root.is_some() && !ctx.inputs().is_empty() {
            bail!(
                "stage `{}` sets `root` and has inputs: read from one or the other",
                ctx.name()
            );
        }
        let train = fields.read(ctx, Split::Train)?;
        ctx.check_cancelled()?;
        let (train, val) =
            if fields.val_from_source(fields.root.is_none() && ctx.inputs().contains_key("val")) {
                let val = fields.read(ctx, Split::Val)?;
                (train, val)
            } else {
                let fraction = fields.val_fraction.unwrap_or(DEFAULT_VAL_FRACTION);
                split(&train, fraction, ctx.seed()).context("splitting train into train/val")?
            };
        ctx.check_cancelled()?;
        let mut outcome = StageOutcome::default();
        for (name, dataset) in [("train", &train), ("val", &val)] {
            ctx.save_dataset(name, dataset, &mut outcome)?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use super::*;
    use crate::data::formats::{IMAGES_MAGIC, LABELS_MAGIC};
    use crate::stage::{InputArtifact, Registered, StageKind};

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        (dir, path)
    }

    #[test]
    fn params_parse_with_sizes_as_number_or_pair() {
        let params: DatasetParams = toml::from_str(
            "format = \"svhn_mat\"\ndomain = \"svhn\"\nresize = 28\ncenter_crop = [24, 20]",
        )
        .unwrap();
        assert_eq!(params.fields().resize, Some(Size::Side(28)));
        assert_eq!(params.fields().center_crop, Some(Size::Exact([24, 20])));
    }

    #[test]
    fn inconsistent_params_are_rejected_at_check_time() {
        let kind = Registered::<DatasetStage>::new();
        let base = "format = \"course\"\ndomain = \"d\"\n";
        for (extra, message) in [
            ("val = \"v.csv\"\nval_fraction = 0.2", "either `val`"),
            ("val_fraction = 1.0", "[0, 1)"),
            (
                "train_labels = \"x\"",
                "`train_labels` only applies to format `idx`",
            ),
            ("size = 64", "`size` only applies"),
            ("channels = 2", "1 or 3"),
            ("limit = 0", "must not be zero"),
            ("resize = [1, 2, 3]", ""),
            ("colour = true", "unknown field `colour`"),
        ] {
            let err = kind.check(&table(&format!("{base}{extra}"))).unwrap_err();
            assert!(err.message.contains(message), "{extra}: {err}");
        }
        assert!(kind
            .check(&table("format = \"celeba\"\ndomain = \"c\"\nresize = 64"))
            .is_err());
        assert!(kind
            .check(&table("format = \"png\"\ndomain = \"c\""))
            .is_err());
    }

    #[test]
    fn canonical_params_change_with_each_parameter() {
        let kind = Registered::<DatasetStage>::new();
        let canonical = |text: &str| kind.check(&table(text)).unwrap().canonical;
        let base = canonical("format = \"idx\"\ndomain = \"mnist\"");
        assert_ne!(base, canonical("format = \"idx\"\ndomain = \"fashion\""));
        assert_ne!(
            base,
            canonical("format = \"idx\"\ndomain = \"mnist\"\nchannels = 3")
        );
        assert_ne!(
            base,
            canonical("format = \"idx\"\ndomain = \"mnist\"\nval_fraction = 0.2")
        );
        assert_ne!(
            base,
            canonical("format = \"idx\"\ndomain = \"mnist\"\nlimit = 100")
        );
    }

    #[test]
    fn shape_hashes_the_files_read_under_root() {
        let kind = Registered::<DatasetStage>::new();
        let shape = |text: &str| kind.check(&table(text)).unwrap().shape;
        let course =
            shape("format = \"course\"\ndomain = \"usps\"\nroot = \"hw2\"\nsubdir = \"usps\"");
        assert_eq!(course.outputs, ["train", "val"]);
        assert_eq!(
            course.external_paths,
            ["hw2/usps/data", "hw2/usps/train.csv", "hw2/usps/val.csv"].map(Utf8PathBuf::from)
        );
        let split =
            shape("format = \"usps_libsvm\"\ndomain = \"usps\"\nroot = \"u\"\nval_fraction = 0.1");
        assert_eq!(split.external_paths, [Utf8PathBuf::from("u/usps.bz2")]);
        assert!(shape("format = \"idx\"\ndomain = \"m\"")
            .external_paths
            .is_empty());
    }

    /// A course folder: `n` 2x2 greyscale PNGs, first `n_train` rows in train.csv, rest in val.csv.
    fn write_course(root: &Utf8Path, n: usize, n_train: usize) {
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut csvs = [
            String::from("image_name,label\n"),
            String::from("image_name,label\n"),
        ];
        for i in 0..n {
            let name = format!("{i:05}.png");
            image::GrayImage::from_pixel(2, 2, image::Luma([i as u8]))
                .save(root.join("data").join(&name))
                .unwrap();
            csvs[usize::from(i >= n_train)].push_str(&format!("{name},{}\n", i % 10));
        }
        std::fs::write(root.join("train.csv"), &csvs[0]).unwrap();
        std::fs::write(root.join("val.csv"), &csvs[1]).unwrap();
    }

    fn run(
        text: &str,
        inputs: BTreeMap<String, InputArtifact>,
        out: &Utf8Path,
    ) -> anyhow::Result<StageOutcome> {
        let params: DatasetParams = toml::from_str(text)?;
        let mut ctx = StageContext::new("data", out.to_owned(), inputs, 3);
        DatasetStage::run(params, &mut ctx)
    }

    #[test]
    fn run_reads_a_course_folder_into_rgb_train_and_val() {
        let (_dir, base) = tmp();
        write_course(&base.join("usps"), 7, 5);
        let text = format!(
            "format = \"course\"\ndomain = \"usps\"\nroot = \"{}\"\nchannels = 3",
            base.join("usps")
        );
        let outcome = run(&text, BTreeMap::new(), &base.join("out")).unwrap();
        let train = Dataset::load(&base.join("out/train")).unwrap();
        let val = Dataset::load(&base.join("out/val")).unwrap();
        assert_eq!((train.shape, val.shape), ([5, 3, 2, 2], [2, 3, 2, 2]));
        assert_eq!((val.labels.clone(), val.image(1)[11]), (vec![5, 6], 6));
        assert_eq!(
            (outcome.metrics["train.n"], outcome.metrics["val.n"]),
            (5.0, 2.0)
        );
        assert_eq!(outcome.summary[1], format!("val: {}", val.summary()));
    }

    #[test]
    fn run_reads_raw_subdir_splits_by_fraction_and_limits_first() {
        let (_dir, base) = tmp();
        write_course(&base.join("raw/hw2/c"), 12, 12);
        let inputs = BTreeMap::from([("raw".to_owned(), input(base.join("raw")))]);
        let text = "format = \"course\"\ndomain = \"m\"\nsubdir = \"hw2/c\"\nval_fraction = 0.25\nlimit = 8";
        let outcome = run(text, inputs, &base.join("out")).unwrap();
        assert_eq!(
            (outcome.metrics["train.n"], outcome.metrics["val.n"]),
            (6.0, 2.0)
        );
    }

    fn input(dir: Utf8PathBuf) -> InputArtifact {
        InputArtifact {
            dir,
            stage: "dl".into(),
            kind: "download".into(),
            params: serde_json::Value::Null,
            outcome: StageOutcome::default(),
        }
    }

    fn gz_idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        dims.iter()
            .for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
        bytes.extend_from_slice(data);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn run_takes_the_single_file_of_each_slot_input() {
        let (_dir, base) = tmp();
        let mut inputs = BTreeMap::new();
        for (slot, magic, dims, data) in [
            ("train", IMAGES_MAGIC, vec![2, 1, 2], vec![1, 2, 3, 4]),
            ("train_labels", LABELS_MAGIC, vec![2], vec![3, 4]),
            ("val", IMAGES_MAGIC, vec![1, 1, 2], vec![5, 6]),
            ("val_labels", LABELS_MAGIC, vec![1], vec![9]),
        ] {
            let dir = base.join(slot);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(format!("{slot}-ubyte")),
                gz_idx(magic, &dims, &data),
            )
            .unwrap();
            inputs.insert(slot.to_owned(), input(dir));
        }
        run(
            "format = \"idx\"\ndomain = \"mnist\"",
            inputs,
            &base.join("out"),
        )
        .unwrap();
        let val = Dataset::load(&base.join("out/val")).unwrap();
        assert_eq!(
            (val.shape, val.labels, val.images),
            ([1, 1, 1, 2], vec![9], vec![5, 6])
        );
    }

    #[test]
    fn a_header_only_csv_is_an_error_not_an_empty_dataset() {
        let (_dir, base) = tmp();
        write_course(&base.join("c"), 3, 3);
        std::fs::write(base.join("c/train.csv"), "image_name,label\n").unwrap();
        let text = format!(
            "format = \"course\"\ndomain = \"d\"\nroot = \"{}\"",
            base.join("c")
        );
        let err = run(&text, BTreeMap::new(), &base.join("out")).unwrap_err();
        assert!(err.to_string().contains("has no images"), "{err}");
    }

    #[test]
    fn run_without_a_source_says_what_to_add() {
        let (_dir, base) = tmp();
        let err = run(
            "format = \"svhn_mat\"\ndomain = \"svhn\"",
            BTreeMap::new(),
            &base,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("set `root`, or add an input named `raw` or `train`"),
            "{err}"
        );
    }
}
