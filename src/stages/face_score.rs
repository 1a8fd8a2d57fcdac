//! `face_score`: the course's face score of a set of images: the share in which a face detector
//! finds exactly one face ([`crate::metrics::face_score`]: SeetaFace through `rustface`, offline).
//!
//! Input `images`: a `sample` stage (its `images/` folder of PNGs) or any stage output holding
//! image files (PNG/JPEG, read in name order); unreadable files are dropped from the total, as in
//! the course, and listed in the log. `limit` scores only the first N files.
//!
//! Metrics: `face_score` (in [0, 1]), `faces_one` (images with exactly one face), `images`
//! (readable images scored), `unreadable`.
//!
//! ```toml
//! [stages.faces_a]
//! kind = "face_score"
//! inputs = { images = "samples_a" }
//! limit = 1000      # optional
//! ```

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::metrics::face_score::face_score;
use crate::stage::{InputSpec, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};

/// The `face_score` stage kind.
pub struct FaceScoreStage;

/// Parameters of a `face_score` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FaceScoreParams {
    /// Score only the first this many files (in name order).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Where a `sample` stage keeps its PNGs.
const IMAGES_DIR: &str = "images";

impl Stage for FaceScoreStage {
    type Params = FaceScoreParams;
    const KIND: &'static str = "face_score";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Share of images in which a face detector (SeetaFace) finds exactly one face";
    const INPUTS: Inputs = Inputs::Named(&[InputSpec::required(
        "images",
        "a sample stage, or any stage output holding PNG/JPEG files",
    )]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.digits]
kind = "synthetic"
domain = "mnistm"
n_train = 64
n_val = 10

[stages.gan]
kind = "train_gan"
inputs = { train = "digits.train" }
model = { image_size = 28, ngf = 8, ndf = 8 }
epochs = 1

[stages.samples]
kind = "sample"
inputs = { model = "gan" }
n = 100

[stages.faces]
kind = "face_score"
inputs = { images = "samples" }
limit = 1000
"#;

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(params.limit != Some(0), "limit", "at least 1")
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape::default()
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let input = &ctx.input("images")?.dir;
        let dir = if input.join(IMAGES_DIR).is_dir() {
            input.join(IMAGES_DIR)
        } else {
            input.clone()
        };
        let mut files = image_files(&dir)?;
        if let Some(limit) = params.limit {
            files.truncate(limit);
        }
        ctx.start_phase("detecting faces", files.len() as u64);
        let score = face_score(&files, &dir, || ctx.progress().inc(1))?;
        for file in &score.unreadable {
            ctx.log(format!("{file}: unreadable, not counted"));
        }
        let mut outcome = StageOutcome::default();
        outcome.metrics.insert("face_score".into(), score.score);
        outcome
            .metrics
            .insert("faces_one".into(), score.one_face as f64);
        outcome
            .metrics
            .insert("images".into(), score.readable as f64);
        outcome
            .metrics
            .insert("unreadable".into(), score.unreadable.len() as f64);
        outcome.summary.push(format!(
            "face score {:.4}: exactly one face in {} of {} readable images ({} unreadable)",
            score.score,
            score.one_face,
            score.readable,
            score.unreadable.len()
        ));
        Ok(outcome)
    }
}

/// PNG and JPEG files directly in `dir`, in name order.
fn image_files(dir: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut files: Vec<Utf8PathBuf> = dir
        .read_dir_utf8()
        .with_context(|| format!("cannot list {dir}"))?
        .filter_map(Result::ok)
        .map(|entry| entry.into_path())
        .filter(|path| {
            matches!(
                path.extension().map(str::to_ascii_lowercase).as_deref(),
                Some("png" | "jpg" | "jpeg")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}
