//! `synthetic`: draws a procedurally generated digit domain (`mnist`, `mnistm`, `svhn` or
//! `usps`, see [`crate::data::synthetic`]), the offline stand-in for the course's digit data.
//!
//! Inputs: none. Outputs: `train` and `val`, each a directory holding a saved
//! [`Dataset`] (u8 `[N, C, H, W]`, classes `"0"..="9"`, balanced labels). `train` is images
//! `0..n_train` of the recipe's seed; `val` comes from a separate seed derived from it
//! ([`val_seed`]), so the two never share an image and changing `n_train` leaves `val` as it
//! was. The summary has one line per output; the metrics are `train.n` and `val.n`.
//!
//! ```toml
//! [stages.source]
//! kind = "synthetic"
//! domain = "mnistm"          # mnist | mnistm | svhn | usps
//! n_train = 5000             # default 5000
//! n_val = 1000               # default 1000
//!
//! [stages.target]
//! kind = "synthetic"
//! domain = "svhn"
//!
//! [stages.train_src]
//! kind = "train_classifier"
//! inputs = { train = "source.train", val = "source.val" }
//! ```

use std::num::NonZeroUsize;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::synthetic::{generate_range, DigitDomain};
use crate::data::Dataset;
use crate::stage::{Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};

/// Images drawn between progress updates and cancellation checks.
const CHUNK: usize = 10_000;

/// The `synthetic` stage kind.
pub struct SyntheticStage;

/// Parameters of a `synthetic` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticParams {
    /// Which domain to draw: `mnist`, `mnistm`, `svhn` or `usps`.
    pub domain: DigitDomain,
    /// Images in the `train` output.
    #[serde(default = "default_n_train")]
    pub n_train: NonZeroUsize,
    /// Images in the `val` output.
    #[serde(default = "default_n_val")]
    pub n_val: NonZeroUsize,
}

/// The most images a split may have.
const MAX_IMAGES: usize = 10_000_000;

fn default_n_train() -> NonZeroUsize {
    const N: NonZeroUsize = NonZeroUsize::new(5000).unwrap();
    N
}

fn default_n_val() -> NonZeroUsize {
    const N: NonZeroUsize = NonZeroUsize::new(1000).unwrap();
    N
}

/// The seed of the `val` split for a recipe seed: a hash, so it never collides with the train
/// stream of any practical seed.
pub fn val_seed(seed: u64) -> u64 {
    let hash = blake3::hash(&[b"hwrun.synthetic.val".as_slice(), &seed.to_le_bytes()].concat());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

impl Stage for SyntheticStage {
    type Params = SyntheticParams;
    const KIND: &'static str = "synthetic";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Draw a procedural digit domain (mnist, mnistm, svhn, usps) as train/val datasets";
    const INPUTS: Inputs = Inputs::Named(&[]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.source]
kind = "synthetic"
domain = "mnistm"          # mnist | mnistm | svhn | usps
n_train = 5000             # default 5000
n_val = 1000               # default 1000
"#;

    fn validate(params: &SyntheticParams) -> Result<(), ParamError> {
        // 3x32x32 bytes per image: ten million images is 30 GB, beyond any machine this runs on.
        ParamError::check(
            params.n_train.get() <= MAX_IMAGES,
            "n_train",
            &format!("at most {MAX_IMAGES}"),
        )?;
        ParamError::check(
            params.n_val.get() <= MAX_IMAGES,
            "n_val",
            &format!("at most {MAX_IMAGES}"),
        )
    }

    fn shape(_params: &SyntheticParams) -> StageShape {
        StageShape {
            outputs: vec!["train".into(), "val".into()],
            ..StageShape::default()
        }
    }

    fn run(params: SyntheticParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let splits = [
            ("train", params.n_train, ctx.seed()),
            ("val", params.n_val, val_seed(ctx.seed())),
        ];
        let mut outcome = StageOutcome::default();
        for (split, n, seed) in splits {
            let dataset = draw(ctx, params.domain, split, n.get(), seed)?;
            ctx.save_dataset(split, &dataset, &mut outcome)?;
        }
        Ok(outcome)
    }
}

/// Draws one split in chunks, reporting progress and honouring Ctrl-C between chunks.
fn draw(
    ctx: &StageContext,
    domain: DigitDomain,
    split: &str,
    n: usize,
    seed: u64,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let [c, h, w] = domain.image_shape();
    let mut images = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    ctx.in_chunks(
        format!("drawing {split} {domain} digits"),
        n,
        CHUNK,
        |range| {
            let part = generate_range(domain, range, seed);
            images.extend_from_slice(&part.images);
            labels.extend_from_slice(&part.labels);
            Ok(())
        },
    )?;
    let dataset = Dataset::new(
        images,
        [n, c, h, w],
        labels,
        Dataset::digit_classes(),
        domain.name(),
    )?;
    ctx.log(format!(
        "{split}: drew {n} {domain} images in {:.1?}",
        started.elapsed()
    ));
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use camino::Utf8Path;

    use super::*;
    use crate::stage::{Registered, StageKind};

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn params_parse_with_defaults() {
        let params: SyntheticParams = toml::from_str(r#"domain = "svhn""#).unwrap();
        assert_eq!(params.domain, DigitDomain::Svhn);
        assert_eq!((params.n_train.get(), params.n_val.get()), (5000, 1000));
    }

    #[test]
    fn bad_params_are_rejected() {
        let kind = Registered::<SyntheticStage>::new();
        let err = kind.check(&table(r#"domain = "mnist-m""#)).unwrap_err();
        assert!(err.message.contains("mnistm"), "{err}");
        let err = kind
            .check(&table("domain = \"usps\"\nn_train = 0"))
            .unwrap_err();
        assert_eq!(err.path, vec!["n_train".to_owned()]);
        assert!(kind.check(&table("domain = \"usps\"\nn = 10")).is_err());
    }

    #[test]
    fn canonical_params_change_with_each_parameter() {
        let kind = Registered::<SyntheticStage>::new();
        let canonical = |text: &str| kind.check(&table(text)).unwrap().canonical;
        let base = canonical(r#"domain = "mnistm""#);
        assert_eq!(base, canonical("domain = \"mnistm\"\nn_train = 5000"));
        assert_ne!(base, canonical(r#"domain = "svhn""#));
        assert_ne!(base, canonical("domain = \"mnistm\"\nn_train = 10"));
        assert_ne!(base, canonical("domain = \"mnistm\"\nn_val = 10"));
        let shape = kind.check(&table(r#"domain = "usps""#)).unwrap().shape;
        assert_eq!(shape.outputs, vec!["train".to_owned(), "val".to_owned()]);
    }

    #[test]
    fn run_writes_disjoint_train_and_val_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        let mut ctx = StageContext::new("digits", out.clone(), BTreeMap::new(), 4);
        let params: SyntheticParams =
            toml::from_str("domain = \"mnistm\"\nn_train = 60\nn_val = 30").unwrap();
        let outcome = SyntheticStage::run(params, &mut ctx).unwrap();

        let train = Dataset::load(&out.join("train")).unwrap();
        let val = Dataset::load(&out.join("val")).unwrap();
        assert_eq!((train.shape, val.shape), ([60, 3, 28, 28], [30, 3, 28, 28]));
        let train_images: HashSet<&[u8]> = (0..train.len()).map(|i| train.image(i)).collect();
        assert!((0..val.len()).all(|i| !train_images.contains(val.image(i))));

        assert_eq!(outcome.metrics["train.n"], 60.0);
        assert_eq!(outcome.metrics["val.n"], 30.0);
        assert_eq!(outcome.summary.len(), 2);
        assert!(
            outcome.summary[0].starts_with("train: mnistm: 60 x [3, 28, 28]"),
            "{:?}",
            outcome.summary
        );
    }
}
