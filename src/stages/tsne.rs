//! `tsne`: a 2-D Barnes-Hut t-SNE embedding of a feature set (see `hwrun::metrics::tsne`), plotted
//! twice: coloured by class (digit) and by domain, as in the DANN and ADDA papers' figures.
//!
//! Input: `features`, a feature set (the output of a `features` stage). At most `max_points` rows
//! are embedded: a seeded random subset, kept in input order.
//!
//! Outputs: `embedding.csv` (header `x,y,label,class,domain,domain_name`, one row per embedded
//! point), `tsne_by_class.png` and `tsne_by_domain.png`. Metrics: `trustworthiness` (k = 10,
//! scikit-learn's definition, on at most `trustworthiness_points` of the embedded points),
//! `kl_divergence` of the final embedding, `points`, and the numbers that say what the pictures
//! show (`hwrun::metrics::knn`, leave-one-out, k = 10, over all embedded points), in the 2-D
//! embedding and, suffixed `_features`, in the input feature space:
//! - `knn_domain_accuracy`: a k-NN classifier of the domain (about 0.5: domains mixed, as an
//!   adapted model should leave them; 1.0: apart);
//! - `knn_class_accuracy_<domain>`: a k-NN classifier of the class among that domain's labelled
//!   points alone (how well its digits cluster).
//!
//! The figure captions repeat them, with the feature set's note (which batch-norm statistics
//! made the features).
//!
//! ```toml
//! [stages.dann_tsne]
//! kind = "tsne"
//! inputs = { features = "dann_features" }
//! perplexity = 30
//! iterations = 1000
//! theta = 0.5
//! max_points = 3000
//! init = "pca"                  # or "random"
//! # learning_rate = 200.0       # default: scikit-learn's "auto", max(n / 48, 50)
//! trustworthiness_points = 2000
//! ```

use std::fmt::Write as _;
use std::ops::ControlFlow;

use anyhow::Context as _;
use camino::Utf8Path;
use rand::seq::{index::sample, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::dataset::UNLABELLED;
use crate::data::FeatureSet;
use crate::metrics::{
    knn_accuracy, trustworthiness, tsne, Embedding, Init, KnnError, TsneConfig, TsneError,
};
use crate::stage::{
    Cancelled, InputSpec, Inputs, Metrics, ParamError, Stage, StageContext, StageOutcome,
    StageShape,
};
use crate::viz::{scatter_png, ScatterPlot, DEFAULT_SIZE};

/// Neighbours considered by the trustworthiness metric.
const TRUST_K: usize = 10;

/// Neighbours of the k-NN domain and class accuracies.
const KNN_K: usize = 10;

/// The `tsne` stage kind.
pub struct TsneStage;

/// Parameters of a `tsne` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TsneParams {
    /// Effective number of neighbours per point (5-50 is usual); below the number of points.
    #[serde(default = "default_perplexity")]
    pub perplexity: f64,
    /// Gradient steps in total, the 250 early-exaggeration steps included.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Barnes-Hut accuracy: 0 is exact (quadratic in the points), 0.5 the usual trade-off, at most 1.
    #[serde(default = "default_theta")]
    pub theta: f64,
    /// Points embedded at most: a seeded random subset of larger feature sets.
    #[serde(default = "default_max_points")]
    pub max_points: usize,
    /// How the embedding starts: `"pca"` (scikit-learn's default) or `"random"`.
    #[serde(default = "default_init")]
    pub init: Init,
    /// Step size; absent means scikit-learn's "auto", `max(n / 48, 50)`.
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Embedded points the trustworthiness metric uses at most (its cost is quadratic).
    #[serde(default = "default_trustworthiness_points")]
    pub trustworthiness_points: usize,
}

fn default_perplexity() -> f64 {
    30.0
}
fn default_iterations() -> usize {
    1000
}
fn default_theta() -> f64 {
    0.5
}
fn default_max_points() -> usize {
    3000
}
fn default_init() -> Init {
    Init::Pca
}
fn default_trustworthiness_points() -> usize {
    2000
}

impl Stage for TsneStage {
    type Params = TsneParams;
    const KIND: &'static str = "tsne";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "2-D t-SNE of a feature set, plotted by class and by domain, with trustworthiness";
    const INPUTS: Inputs = Inputs::Named(&[InputSpec::required("features", "a features stage")]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.usps]
kind = "synthetic"
domain = "usps"
n_train = 200
n_val = 100

[stages.dann]
kind = "train_dann"
inputs = { source = "mnistm.train", target = "usps.train" }
epochs = 1

[stages.dann_features]
kind = "features"
inputs = { model = "dann", source = "mnistm.val", target = "usps.val" }
max_per_domain = 1000

[stages.dann_tsne]
kind = "tsne"
inputs = { features = "dann_features" }
perplexity = 30
iterations = 1000
theta = 0.5
max_points = 3000
init = "pca"                  # or "random"
trustworthiness_points = 2000
"#;

    fn validate(params: &Self::Params) -> Result<(), ParamError> {
        ParamError::check(
            params.perplexity.is_finite() && params.perplexity > 0.0,
            "perplexity",
            "a finite number > 0",
        )?;
        ParamError::check(params.iterations >= 1, "iterations", "at least 1")?;
        ParamError::check(
            params.theta.is_finite() && params.theta >= 0.0,
            "theta",
            "a finite number >= 0 (0: exact gradients)",
        )?;
        if let Some(rate) = params.learning_rate {
            ParamError::check(
                rate.is_finite() && rate > 0.0,
                "learning_rate",
                "a finite number > 0",
            )?;
        }
        Ok(())
    }

    fn shape(_params: &Self::Params) -> StageShape {
        StageShape::default()
    }

    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let input = &ctx.input("features")?.dir;
        let all = FeatureSet::load(input)
            .with_context(|| format!("input `features` of stage `{}`", ctx.name()))?;
        if all.n == 0 {
            anyhow::bail!(
                "input `features` of stage `{}` has no rows: nothing to embed",
                ctx.name()
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed());
        let set = all.select(&subset(all.n, params.max_points, &mut rng));
        let embedding = embed(&set, &params, ctx)?;
        let out = ctx.out_dir();
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {out}"))?;
        write_csv(&out.join("embedding.csv"), &set, &embedding)?;
        plot(out, &set, &embedding, &mut rng)?;

        let mut metrics = Metrics::from([
            ("points".to_owned(), set.n as f64),
            ("kl_divergence".to_owned(), embedding.kl_divergence),
        ]);
        let mut line = format!(
            "t-SNE of {} of {} points: KL {:.3}",
            set.n, all.n, embedding.kl_divergence
        );
        if let Some(value) =
            trustworthiness_on_subset(&set, &embedding, params.trustworthiness_points, &mut rng)?
        {
            metrics.insert("trustworthiness".to_owned(), value);
            write!(line, ", trustworthiness@{TRUST_K} {value:.4}")?;
        }
        let in_2d = Neighbourhood::of(&embedding.coords, 2, &set)?;
        let in_features = Neighbourhood::of(&set.features, set.dim, &set)?;
        in_2d.record(&mut metrics, "");
        in_features.record(&mut metrics, "_features");
        let note = set
            .note
            .as_ref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        let class_caption = format!(
            "t-SNE by class{note}; {KNN_K}-NN class accuracy in 2-D (in feature space): {}",
            in_2d
                .classes
                .iter()
                .zip(&in_features.classes)
                .map(|((domain, a), (_, b))| format!("{domain} {a:.3} ({b:.3})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let domain_caption = match (in_2d.domain, in_features.domain) {
            (Some(a), Some(b)) => format!(
                "t-SNE by domain{note}; {KNN_K}-NN domain accuracy {a:.3} in 2-D, {b:.3} in feature space (0.5: mixed, 1: apart)"
            ),
            _ => format!("t-SNE by domain{note}"),
        };
        write!(line, "; {domain_caption}; {class_caption}")?;
        ctx.log(&line);
        let mut outcome = StageOutcome {
            metrics,
            summary: vec![line],
            ..StageOutcome::default()
        };
        outcome.figure("tsne_by_class.png", &class_caption);
        outcome.figure("tsne_by_domain.png", &domain_caption);
        Ok(outcome)
    }
}

/// The k-NN accuracies of the points of `set` placed at `values` (`[n, dim]`: the features
/// themselves or their embedding).
struct Neighbourhood {
    /// Of the domain, over all points; `None` with one domain or too few points.
    domain: Option<f64>,
    /// Of the class, among each domain's labelled points (domains with too few left out).
    classes: Vec<(String, f64)>,
}

impl Neighbourhood {
    fn of(values: &[f32], dim: usize, set: &FeatureSet) -> Result<Self, KnnError> {
        let several_domains = set.domains.iter().any(|&d| d != set.domains[0]);
        let domain = if several_domains && set.n > KNN_K {
            Some(knn_accuracy(values, dim, &set.domains, KNN_K)?)
        } else {
            None
        };
        let mut classes = Vec::new();
        for (index, name) in set.domain_names.iter().enumerate() {
            let rows: Vec<usize> = (0..set.n)
                .filter(|&i| set.domains[i] == index as i64 && set.labels[i] != UNLABELLED)
                .collect();
            if rows.len() <= KNN_K {
                continue;
            }
            let points: Vec<f32> = rows
                .iter()
                .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            let labels: Vec<i64> = rows.iter().map(|&i| set.labels[i]).collect();
            classes.push((name.clone(), knn_accuracy(&points, dim, &labels, KNN_K)?));
        }
        Ok(Neighbourhood { domain, classes })
    }

    /// Adds `knn_domain_accuracy{suffix}` and `knn_class_accuracy_<domain>{suffix}`.
    fn record(&self, metrics: &mut Metrics, suffix: &str) {
        if let Some(value) = self.domain {
            metrics.insert(format!("knn_domain_accuracy{suffix}"), value);
        }
        for (domain, value) in &self.classes {
            metrics.insert(format!("knn_class_accuracy_{domain}{suffix}"), *value);
        }
    }
}

/// Sorted row indices: all rows, or a seeded random `max` of them.
fn subset(n: usize, max: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut indices = sample(rng, n, max).into_vec();
    indices.sort_unstable();
    indices
}

/// Runs t-SNE with progress, one log line per KL report, and cancellation.
fn embed(set: &FeatureSet, params: &TsneParams, ctx: &StageContext) -> anyhow::Result<Embedding> {
    let config = TsneConfig {
        perplexity: params.perplexity,
        iterations: params.iterations,
        theta: params.theta,
        learning_rate: params.learning_rate,
        init: params.init,
        seed: ctx.seed(),
        ..TsneConfig::default()
    };
    ctx.start_phase("t-SNE", params.iterations as u64);
    let result = tsne(&set.features, set.dim, &config, |progress| {
        ctx.progress().inc(1);
        if let Some(kl) = progress.kl_divergence {
            ctx.log(format!(
                "iteration {}: KL divergence {kl:.4}",
                progress.iteration
            ));
        }
        match ctx.check_cancelled() {
            Ok(()) => ControlFlow::Continue(()),
            Err(Cancelled) => ControlFlow::Break(()),
        }
    });
    match result {
        Err(TsneError::Stopped { .. }) => Err(Cancelled.into()),
        other => Ok(other?),
    }
}

/// One row per point: coordinates, label and domain (as indices and names).
fn write_csv(path: &Utf8Path, set: &FeatureSet, embedding: &Embedding) -> anyhow::Result<()> {
    let mut text = String::from("x,y,label,class,domain,domain_name\n");
    for (i, xy) in embedding.coords.chunks_exact(2).enumerate() {
        let (label, domain) = (set.labels[i], set.domains[i]);
        let class = usize::try_from(label)
            .ok()
            .and_then(|l| set.class_names.get(l))
            .map_or("", String::as_str);
        let domain_name = set
            .domain_names
            .get(domain as usize)
            .map_or("", String::as_str);
        let (class, domain_name) = (csv_field(class), csv_field(domain_name));
        writeln!(
            text,
            "{},{},{label},{class},{domain},{domain_name}",
            xy[0], xy[1]
        )?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {path}"))
}

/// Quotes a CSV field when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The two figures. Points are drawn in a seeded random order so that no class or domain
/// systematically hides another.
fn plot(
    out: &Utf8Path,
    set: &FeatureSet,
    embedding: &Embedding,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let mut order: Vec<usize> = (0..set.n).collect();
    order.shuffle(rng);
    let points: Vec<f32> = order
        .iter()
        .flat_map(|&i| [embedding.coords[2 * i], embedding.coords[2 * i + 1]])
        .collect();

    let (classes, class_names) = class_categories(set);
    let by_class: Vec<usize> = order.iter().map(|&i| classes[i]).collect();
    let title = format!("t-SNE by class ({} points)", set.n);
    let plot = ScatterPlot {
        title: &title,
        points: &points,
        categories: &by_class,
        names: &class_names,
    };
    scatter_png(&out.join("tsne_by_class.png"), &plot, DEFAULT_SIZE)?;

    let by_domain: Vec<usize> = order.iter().map(|&i| set.domains[i] as usize).collect();
    let title = format!("t-SNE by domain ({})", set.domain_names.join(" vs "));
    let plot = ScatterPlot {
        title: &title,
        points: &points,
        categories: &by_domain,
        names: &set.domain_names,
    };
    scatter_png(&out.join("tsne_by_domain.png"), &plot, DEFAULT_SIZE)?;
    Ok(())
}

/// Category per point for the class plot; unlabelled points get an extra last category.
fn class_categories(set: &FeatureSet) -> (Vec<usize>, Vec<String>) {
    let unlabelled = set.class_names.len();
    let categories: Vec<usize> = set
        .labels
        .iter()
        .map(|&l| {
            if l == UNLABELLED {
                unlabelled
            } else {
                l as usize
            }
        })
        .collect();
    let mut names = set.class_names.clone();
    if categories.contains(&unlabelled) {
        names.push("unlabelled".to_owned());
    }
    (categories, names)
}

/// Trustworthiness on a seeded subset of at most `max` points; `None` when there are too few
/// points for k = 10 neighbours.
fn trustworthiness_on_subset(
    set: &FeatureSet,
    embedding: &Embedding,
    max: usize,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Option<f64>> {
    let rows = subset(set.n, max, rng);
    if rows.len() <= 2 * TRUST_K {
        return Ok(None);
    }
    let features: Vec<f32> = rows
        .iter()
        .flat_map(|&i| set.row(i).iter().copied())
        .collect();
    let coords: Vec<f32> = rows
        .iter()
        .flat_map(|&i| [embedding.coords[2 * i], embedding.coords[2 * i + 1]])
        .collect();
    Ok(Some(trustworthiness(
        &features, set.dim, &coords, 2, TRUST_K,
    )?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stage::{InputArtifact, Registered, StageKind};

    /// Three 8-d clusters (labels 0..3, one row unlabelled) split over two domains.
    fn clustered(n: usize) -> FeatureSet {
        let features = (0..n * 8)
            .map(|v| {
                let (row, axis) = (v / 8, v % 8);
                let jitter = ((v * 7919) % 97) as f32 / 97.0;
                jitter + if axis == row % 3 { 6.0 } else { 0.0 }
            })
            .collect();
        let mut labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        labels[0] = UNLABELLED;
        FeatureSet {
            features,
            n,
            dim: 8,
            labels,
            domains: (0..n as i64).map(|i| (i / 2) % 2).collect(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            domain_names: vec!["mnistm".into(), "usps".into()],
            note: None,
        }
    }

    fn params(toml_text: &str) -> TsneParams {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn parameters_default_and_reject_unknown_keys() {
        let defaults = params("");
        assert_eq!(
            (
                defaults.perplexity,
                defaults.iterations,
                defaults.max_points
            ),
            (30.0, 1000, 3000)
        );
        assert_eq!(defaults.init, Init::Pca);
        assert!(toml::from_str::<TsneParams>("perplexty = 5").is_err());
        let kind = Registered::<TsneStage>::new();
        let a = kind
            .check(&toml::from_str("perplexity = 20").unwrap())
            .unwrap();
        let b = kind
            .check(&toml::from_str("perplexity = 30").unwrap())
            .unwrap();
        assert_ne!(a.canonical, b.canonical);
        assert_eq!(a.shape.required_inputs, vec!["features".to_owned()]);
    }

    #[test]
    fn embeds_plots_and_scores_a_subset() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        clustered(150).save(&root.join("features")).unwrap();
        let artifact = InputArtifact {
            dir: root.join("features"),
            stage: "feats".into(),
            kind: "features".into(),
            params: serde_json::Value::Null,
            outcome: Default::default(),
        };
        let inputs = BTreeMap::from([("features".to_owned(), artifact)]);
        let mut ctx = StageContext::new("tsne", root.join("out"), inputs, 3);
        let p = params("perplexity = 10\nmax_points = 120\ntrustworthiness_points = 100");
        let outcome = TsneStage::run(p, &mut ctx).unwrap();

        assert_eq!(outcome.metrics["points"], 120.0);
        assert!(outcome.metrics["trustworthiness"] > 0.9, "{outcome:?}");
        // The clusters are the classes; the domains alternate in pairs through every cluster.
        for space in ["", "_features"] {
            let class = outcome.metrics[&format!("knn_class_accuracy_usps{space}")];
            let domain = outcome.metrics[&format!("knn_domain_accuracy{space}")];
            assert!(class > 0.9, "{space}: {class}");
            assert!(domain < 0.7, "{space}: {domain}");
        }
        let captions: Vec<&str> = outcome.figures.iter().map(|f| f.caption.as_str()).collect();
        assert!(
            captions[0].contains("10-NN class accuracy in 2-D"),
            "{captions:?}"
        );
        assert!(
            captions[1].contains("10-NN domain accuracy"),
            "{captions:?}"
        );
        let csv = std::fs::read_to_string(root.join("out/embedding.csv")).unwrap();
        assert_eq!(csv.lines().count(), 121);
        for figure in ["tsne_by_class.png", "tsne_by_domain.png"] {
            assert_eq!(
                image::image_dimensions(root.join("out").join(figure)).unwrap(),
                DEFAULT_SIZE
            );
        }
    }

    #[test]
    fn nonsense_optimisation_settings_are_refused() {
        let path = |text: &str| crate::testing::params::<TsneStage>(text).unwrap_err().path;
        assert_eq!(path("perplexity = nan"), ["perplexity"]);
        assert_eq!(path("perplexity = -5.0"), ["perplexity"]);
        assert_eq!(path("theta = inf"), ["theta"]);
        assert_eq!(path("learning_rate = 0.0"), ["learning_rate"]);
        assert_eq!(path("iterations = 0"), ["iterations"]);
        assert!(crate::testing::params::<TsneStage>("theta = 0.0").is_ok());
    }
}
