//! `mnistm`: builds MNIST-M from MNIST and colour photos the classic way (see
//! [`crate::data::mnistm`]): each digit, binarised, is blended into a random 28x28 crop of a
//! random photo as `|crop - digit|`.
//!
//! Inputs:
//! - `mnist`: the whole output of a `dataset` stage (or any stage with `train` and `val`
//!   dataset outputs), referenced as `mnist`, not `mnist.train`: each of its splits becomes the
//!   same split of MNIST-M, image for image, with the same labels. Greyscale digits are
//!   replicated to RGB; RGB digits (`channels = 3`) are blended channel by channel, which gives
//!   the same pixels.
//! - `photos`: a directory holding the photos under `photos_subdir` — by default the train images
//!   of the unpacked BSDS500 archive `BSR_bsds500.tgz` (200 JPEGs of 481x321 or 321x481). Every
//!   `*.jpg`, `*.jpeg` and `*.png` there is decoded once, and each must be at least as large as
//!   the digits.
//!
//! Outputs: `train` and `val`, each a saved [`Dataset`] (u8 `[N, 3, H, W]`, the digits' labels
//! and classes, domain `domain`). Every photo and crop is drawn from ChaCha8 streams of the
//! recipe seed (one per image, separate for train and val), so the result depends only on the
//! seed and the inputs, not on the thread count. The summary has one line per output; the
//! metrics are `train.n`, `val.n` and `photos`.
//!
//! ```toml
//! [stages.mnist]
//! kind = "dataset"
//! format = "idx"
//! inputs = { train = "mnist_train_images", train_labels = "mnist_train_labels", val = "mnist_test_images", val_labels = "mnist_test_labels" }
//! domain = "mnist"
//!
//! [stages.bsds500]
//! kind = "download"
//! source = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
//! verify = false
//! unpack = true
//!
//! [stages.mnistm]
//! kind = "mnistm"
//! inputs = { mnist = "mnist", photos = "bsds500" }
//! photos_subdir = "BSR/BSDS500/data/images/train"   # the default
//! binarize = true                                   # default: (x > 0) * 255 as the classic builder
//! domain = "mnistm"                                 # the default
//!
//! [stages.source_only]
//! kind = "train_classifier"
//! inputs = { train = "mnistm.train", val = "mnistm.val" }
//! ```

use std::time::Instant;

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::data::dataset::output_dir;
use crate::data::mnistm::{build_range, Photos};
use crate::data::Dataset;
use crate::stage::{InputSpec, Inputs, Stage, StageContext, StageOutcome, StageShape};

/// Where BSDS500's train photos are inside the unpacked `BSR_bsds500.tgz`.
pub const DEFAULT_PHOTOS_SUBDIR: &str = "BSR/BSDS500/data/images/train";

/// Images blended between progress updates and cancellation checks.
const CHUNK: usize = 5_000;

/// The two outputs, each built from the split of the same name of the `mnist` input.
const SPLITS: [&str; 2] = ["train", "val"];

/// The `mnistm` stage kind.
pub struct MnistmStage;

/// Parameters of an `mnistm` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MnistmParams {
    /// Folder of the photos inside the `photos` input (`.` for the input itself).
    #[serde(default = "default_photos_subdir")]
    pub photos_subdir: String,
    /// Blend `(x > 0) * 255` (the classic builder) instead of the digit's grey levels.
    #[serde(default = "default_binarize")]
    pub binarize: bool,
    /// Domain name stored in the outputs.
    #[serde(default = "default_domain")]
    pub domain: String,
}

fn default_photos_subdir() -> String {
    DEFAULT_PHOTOS_SUBDIR.to_owned()
}

fn default_binarize() -> bool {
    true
}

fn default_domain() -> String {
    "mnistm".to_owned()
}

/// The seed of one split's crop streams: a hash, so train and val never share a stream.
fn split_seed(seed: u64, split: &str) -> u64 {
    let hash = blake3::hash(
        &[
            b"hwrun.mnistm.".as_slice(),
            split.as_bytes(),
            &seed.to_le_bytes(),
        ]
        .concat(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// `base/rel`, with `.` and the empty path meaning `base` itself.
fn join(base: &Utf8Path, rel: &str) -> Utf8PathBuf {
    if rel.is_empty() || rel == "." {
        base.to_owned()
    } else {
        base.join(rel)
    }
}

impl Stage for MnistmStage {
    type Params = MnistmParams;
    const KIND: &'static str = "mnistm";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Build MNIST-M: MNIST digits blended into random crops of colour photos (BSDS500)";
    const INPUTS: Inputs = Inputs::Named(&[
        InputSpec::required(
            "mnist",
            "the MNIST digits (a dataset stage of format `idx`)",
        ),
        InputSpec::required("photos", "a folder of colour photos (BSDS500 train images)"),
    ]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnist_train_images]
kind = "download"
source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
md5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"
unpack = true

[stages.mnist_train_labels]
kind = "download"
source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz"
md5 = "d53e105ee54ea40749a09fcbcd1e9432"
unpack = true

[stages.mnist_test_images]
kind = "download"
source = "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"
md5 = "9fb629c4189551a2d022fa330f9573f3"
unpack = true

[stages.mnist_test_labels]
kind = "download"
source = "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"
md5 = "ec29112dd5afa0611ce80d1b7f02629c"
unpack = true

[stages.mnist]
kind = "dataset"
format = "idx"
inputs = { train = "mnist_train_images", train_labels = "mnist_train_labels", val = "mnist_test_images", val_labels = "mnist_test_labels" }
domain = "mnist"

[stages.bsds500]
kind = "download"
source = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
verify = false
unpack = true

[stages.mnistm]
kind = "mnistm"
inputs = { mnist = "mnist", photos = "bsds500" }
photos_subdir = "BSR/BSDS500/data/images/train"   # the default
binarize = true                                   # default: (x > 0) * 255 as the classic builder
domain = "mnistm"                                 # the default
"#;

    fn shape(_params: &MnistmParams) -> StageShape {
        StageShape {
            outputs: SPLITS.map(String::from).to_vec(),
            ..StageShape::default()
        }
    }

    fn run(params: MnistmParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let mnist_dir = ctx.input("mnist")?.dir.clone();
        if mnist_dir.join("dataset.json").is_file() {
            bail!(
                "input `mnist` of stage `{}` is a single dataset ({mnist_dir}); reference the whole data stage \
                 (e.g. `mnist`, not `mnist.train`) so that both its train and val splits are built",
                ctx.name()
            );
        }
        let photos = load_photos(ctx, &join(&ctx.input("photos")?.dir, &params.photos_subdir))?;
        let mut outcome = StageOutcome::default();
        outcome.metrics.insert("photos".into(), photos.len() as f64);
        for split in SPLITS {
            let digits = Dataset::load(&output_dir(&mnist_dir, split))
                .with_context(|| format!("reading the `{split}` split of input `mnist`"))?;
            let dataset = blend_split(ctx, &params, &photos, &digits, split)?;
            ctx.save_dataset(split, &dataset, &mut outcome)?;
        }
        Ok(outcome)
    }
}

/// Decodes the photos once, for both splits.
fn load_photos(ctx: &StageContext, dir: &Utf8Path) -> anyhow::Result<Photos> {
    let started = Instant::now();
    ctx.start_phase("decoding photos", 0);
    let photos = Photos::load(dir, ctx.progress()).with_context(|| {
        format!("reading the photos in {dir} (set `photos_subdir` to the folder of the photos inside input `photos`)")
    })?;
    ctx.log(format!(
        "decoded {} photos from {dir} in {:.1?}",
        photos.len(),
        started.elapsed()
    ));
    Ok(photos)
}

/// Blends one split in chunks, reporting progress and honouring Ctrl-C between chunks.
fn blend_split(
    ctx: &StageContext,
    params: &MnistmParams,
    photos: &Photos,
    digits: &Dataset,
    split: &str,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let n = digits.len();
    let seed = split_seed(ctx.seed(), split);
    let [_, _, h, w] = digits.shape;
    let mut pixels = Vec::with_capacity(n * 3 * h * w);
    ctx.in_chunks(format!("blending {split} digits"), n, CHUNK, |range| {
        let part = build_range(digits, photos, seed, params.binarize, range)
            .with_context(|| format!("building the `{split}` split"))?;
        pixels.extend_from_slice(&part);
        Ok(())
    })?;
    let dataset = Dataset::new(
        pixels,
        [n, 3, h, w],
        digits.labels.clone(),
        digits.classes.clone(),
        &params.domain,
    )?;
    ctx.log(format!(
        "{split}: blended {n} digits in {:.1?}",
        started.elapsed()
    ));
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use image::{Rgb, RgbImage};

    use super::*;
    use crate::stage::{InputArtifact, Registered, StageKind};

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn params_parse_with_defaults() {
        let params: MnistmParams = toml::from_str("").unwrap();
        assert_eq!(params.photos_subdir, DEFAULT_PHOTOS_SUBDIR);
        assert!(params.binarize);
        assert_eq!(params.domain, "mnistm");
        assert!(Registered::<MnistmStage>::new()
            .check(&table("photos = \"x\""))
            .is_err());
    }

    #[test]
    fn canonical_params_change_with_each_parameter() {
        let kind = Registered::<MnistmStage>::new();
        let canonical = |text: &str| kind.check(&table(text)).unwrap().canonical;
        let base = canonical("");
        assert_eq!(base, canonical("binarize = true"));
        assert_ne!(base, canonical("binarize = false"));
        assert_ne!(base, canonical("photos_subdir = \".\""));
        assert_ne!(base, canonical("domain = \"mnist_m\""));
        let shape = kind.check(&table("")).unwrap().shape;
        assert_eq!(
            (shape.outputs, shape.required_inputs),
            (
                vec!["train".into(), "val".into()],
                vec!["mnist".into(), "photos".into()]
            )
        );
    }

    fn input(dir: Utf8PathBuf) -> InputArtifact {
        InputArtifact {
            dir,
            stage: "upstream".into(),
            kind: "dataset".into(),
            params: serde_json::Value::Null,
            outcome: StageOutcome::default(),
        }
    }

    /// A fake `dataset` stage output: `n_train` and `n_val` 3x3 greyscale digits.
    fn write_mnist(dir: &Utf8Path, n_train: usize, n_val: usize) {
        for (split, n) in [("train", n_train), ("val", n_val)] {
            let images = (0..n * 9)
                .map(|v| if v % 4 == 0 { (v % 200) as u8 + 1 } else { 0 })
                .collect();
            let labels = (0..n as i64).map(|i| i % 10).collect();
            let digits = Dataset::new(
                images,
                [n, 1, 3, 3],
                labels,
                Dataset::digit_classes(),
                "mnist",
            )
            .unwrap();
            digits.save(&dir.join(split)).unwrap();
        }
    }

    fn run(
        base: &Utf8Path,
        mnist: &str,
        text: &str,
        seed: u64,
        out: &str,
    ) -> anyhow::Result<StageOutcome> {
        let inputs = BTreeMap::from([
            ("mnist".to_owned(), input(base.join(mnist))),
            ("photos".to_owned(), input(base.join("bsr"))),
        ]);
        let mut ctx = StageContext::new("mnistm", base.join(out), inputs, seed);
        MnistmStage::run(toml::from_str(text)?, &mut ctx)
    }

    fn setup() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        write_mnist(&base.join("mnist"), 12, 5);
        let photos = base.join("bsr").join(DEFAULT_PHOTOS_SUBDIR);
        std::fs::create_dir_all(&photos).unwrap();
        RgbImage::from_fn(9, 6, |x, y| Rgb([(20 * x) as u8, (30 * y) as u8, 77]))
            .save(photos.join("1.png"))
            .unwrap();
        RgbImage::from_fn(5, 8, |x, y| Rgb([(x * y) as u8, 255, 9]))
            .save(photos.join("2.jpg"))
            .unwrap();
        (dir, base)
    }

    #[test]
    fn run_builds_train_and_val_deterministically() {
        let (_dir, base) = setup();
        let outcome = run(&base, "mnist", "", 7, "out").unwrap();
        let train = Dataset::load(&base.join("out/train")).unwrap();
        let val = Dataset::load(&base.join("out/val")).unwrap();
        assert_eq!((train.shape, val.shape), ([12, 3, 3, 3], [5, 3, 3, 3]));
        assert_eq!(
            (val.labels.clone(), val.domain.as_str()),
            (vec![0, 1, 2, 3, 4], "mnistm")
        );
        assert_eq!(
            (
                outcome.metrics["train.n"],
                outcome.metrics["val.n"],
                outcome.metrics["photos"]
            ),
            (12.0, 5.0, 2.0)
        );
        assert_eq!(
            outcome.summary,
            [
                format!("train: {}", train.summary()),
                format!("val: {}", val.summary())
            ]
        );

        run(&base, "mnist", "", 7, "again").unwrap();
        assert_eq!(Dataset::load(&base.join("again/train")).unwrap(), train);
        run(&base, "mnist", "", 8, "other").unwrap();
        assert_ne!(
            Dataset::load(&base.join("other/train")).unwrap().images,
            train.images
        );
    }

    #[test]
    fn run_over_a_uniform_photo_is_exactly_the_inverted_binarised_digit() {
        let (_dir, base) = setup();
        let photos = base.join("bsr/flat");
        std::fs::create_dir_all(&photos).unwrap();
        RgbImage::from_pixel(3, 3, Rgb([200, 10, 0]))
            .save(photos.join("flat.png"))
            .unwrap();
        run(
            &base,
            "mnist",
            "photos_subdir = \"flat\"\ndomain = \"m\"",
            0,
            "out",
        )
        .unwrap();
        let digits = Dataset::load(&base.join("mnist/val")).unwrap();
        let built = Dataset::load(&base.join("out/val")).unwrap();
        for i in 0..digits.len() {
            let expected: Vec<u8> = [200u8, 10, 0]
                .iter()
                .flat_map(|&bg| {
                    digits
                        .image(i)
                        .iter()
                        .map(move |&d| if d > 0 { 255 - bg } else { bg })
                })
                .collect();
            assert_eq!(built.image(i), expected.as_slice(), "image {i}");
        }
    }

    #[test]
    fn run_explains_a_single_split_input_and_a_wrong_subdir() {
        let (_dir, base) = setup();
        let err = run(&base, "mnist/train", "", 0, "out").unwrap_err();
        assert!(err.to_string().contains("not `mnist.train`"), "{err}");
        let err = run(&base, "mnist", "photos_subdir = \"nope\"", 0, "out").unwrap_err();
        assert!(
            format!("{err:#}").contains("set `photos_subdir`"),
            "{err:#}"
        );
    }
}
