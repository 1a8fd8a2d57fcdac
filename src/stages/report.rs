//! `report`: the experiment's report, `report.md` and a self-contained `index.html`.
//!
//! Tables are laid out by the recipe: each cell shows one metric of one input, so the homework's
//! "source only / adapted / target only" table (and any other) comes from the stages the recipe
//! names. Besides the tables the report shows every input's figures (`*.png` in its output, e.g.
//! t-SNE plots), training curves drawn from `history.json`, each model's architecture
//! (`architecture.txt`), the training stages' hyperparameters, and all recorded metrics.
//!
//! In a recipe that sweeps `seed` the report is planned across seeds: one report per group of
//! variants that differ only in seed (not one per seed), whose cells show the mean ± sample
//! standard deviation over the seeds, followed by each seed's values (`crate::report::seeds`
//! says why). The inputs are then named `eval[seed=0]`, ...; the tables still name `eval`.
//!
//! A recipe may lay the report out like the homework: `sections`, each a heading (a problem's
//! title), a paragraph, its tables, then the figures of the inputs it names in its order. The
//! figures no section names follow them, folded away, then every input's metrics (folded away
//! too), hyperparameters and models. Without sections the report keeps its plain layout:
//! tables, then every figure by input name. A row may give published or reported numbers
//! (`reference`), shown in a column beside each of hwrun's.
//!
//! ```toml
//! [stages.report]
//! kind = "report"
//! title = "Domain adaptation"
//! inputs = { src = "eval_source_only", dann = "eval_dann", tgt = "eval_target_only", tsne = "tsne" }
//!
//! [[stages.report.sections]]
//! title = "Problem 3: domain adaptation"
//! figures = ["tsne"]
//!
//! [[stages.report.sections.tables]]
//! title = "Accuracy on the target domain"
//! metric = "accuracy"
//! columns = ["MNIST-M -> SVHN"]
//! rows = [
//!   { label = "Trained on source", cells = ["src"] },
//!   { label = "Adaptation (DANN)", cells = ["dann"], reference = { "report 003" = 0.6157 } },
//!   { label = "Trained on target", cells = ["tgt"] },
//! ]
//! ```

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::report::{collect::collect, html, markdown, SectionSpec, TableSpec};
use crate::stage::StageContext;
use crate::stage::{Inputs, ParamError, Stage, StageOutcome, StageShape};

pub struct ReportStage;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The report's heading.
    #[serde(default = "default_title")]
    pub title: String,
    /// A paragraph under the heading.
    #[serde(default)]
    pub description: Option<String>,
    /// Result tables; every input's metrics are also listed after them. In a recipe that sweeps
    /// `seed`, each cell is the mean ± sample standard deviation over the seeds, and a table of
    /// each seed's values follows.
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Sections in reading order (a homework problem each): a `title`, an optional `text`, their
    /// own `tables`, and `figures`, the inputs whose figures follow the tables in that order.
    #[serde(default)]
    pub sections: Vec<SectionSpec>,
}

fn default_title() -> String {
    "Results".to_owned()
}

impl Stage for ReportStage {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "Write report.md and a self-contained index.html: tables, figures, curves, models (mean ± std over a seed sweep)";
    const INPUTS: Inputs =
        Inputs::Any("the stages to show, each under the section name given here");
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnistm]
kind = "synthetic"
domain = "mnistm"
n_train = 200
n_val = 100

[stages.source_only]
kind = "train_classifier"
inputs = { train = "mnistm.train" }
epochs = 1

[stages.on_val]
kind = "evaluate"
inputs = { model = "source_only", data = "mnistm.val" }

[stages.report]
kind = "report"
title = "Example"
inputs = { src = "on_val" }

[[stages.report.tables]]
title = "Accuracy"
metric = "accuracy"
columns = ["MNIST-M"]
rows = [{ label = "Trained on source", cells = ["src"] }]
"#;

    fn validate(params: &ReportParams) -> Result<(), ParamError> {
        let table_error = |key: &str, why: String| ParamError {
            path: key.split('.').map(str::to_owned).collect(),
            message: format!("`{key}`: {why}"),
        };
        for table in &params.tables {
            table.check().map_err(|why| table_error("tables", why))?;
        }
        for section in &params.sections {
            ParamError::check(
                !section.title.trim().is_empty(),
                "sections.title",
                "a heading (not empty)",
            )?;
            for table in &section.tables {
                table
                    .check()
                    .map_err(|why| table_error("sections.tables", why))?;
            }
        }
        Ok(())
    }

    fn shape(_params: &ReportParams) -> StageShape {
        StageShape {
            across_seeds: true,
            ..StageShape::default()
        }
    }

    fn run(params: ReportParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let out_dir = ctx.out_dir().to_owned();
        let report = collect(
            params.title,
            params.description,
            (&params.tables, &params.sections),
            ctx.inputs(),
            &out_dir,
        )?;
        let write = |name: &str, text: String| {
            let path = out_dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("cannot write `{path}`"))
        };
        write("report.md", markdown::render(&report))?;
        write("index.html", html::render(&report, &out_dir)?)?;
        ctx.log(format!(
            "report with {} tables and {} inputs",
            report.tables.len(),
            report.sections.len()
        ));
        Ok(StageOutcome {
            primary: Some("index.html".to_owned()),
            ..StageOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use camino::Utf8Path;

    use super::*;
    use crate::stage::{InputArtifact, Metrics, StageContext};

    /// An input with `figures` (files written, content irrelevant) and an accuracy.
    fn input(root: &Utf8Path, name: &str, figures: &[&str], accuracy: f64) -> InputArtifact {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut outcome = StageOutcome {
            metrics: Metrics::from([("accuracy".to_owned(), accuracy)]),
            ..StageOutcome::default()
        };
        for figure in figures {
            std::fs::write(dir.join(figure), b"\x89PNG").unwrap();
            outcome.figure(*figure, format!("{name} {figure}"));
        }
        InputArtifact {
            dir,
            stage: name.into(),
            kind: "test".into(),
            params: serde_json::Value::Null,
            outcome,
        }
    }

    /// `index.html` of a report of three inputs with `layout` (TOML of the report's params).
    fn render(layout: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let inputs = BTreeMap::from([
            (
                "acgan".to_owned(),
                input(root, "acgan", &["strip.png"], 0.9),
            ),
            (
                "tsne".to_owned(),
                input(root, "tsne", &["by_class.png", "by_domain.png"], 0.8),
            ),
            (
                "eval".to_owned(),
                input(root, "eval", &["confusion.png"], 0.7),
            ),
        ]);
        let mut ctx = StageContext::new("report", root.join("out"), inputs, 0);
        let params = crate::testing::params::<ReportStage>(layout).unwrap();
        ReportStage::run(params, &mut ctx).unwrap();
        std::fs::read_to_string(root.join("out/index.html")).unwrap()
    }

    /// Byte offsets of `needles` in `haystack`, each required present.
    fn positions(haystack: &str, needles: &[&str]) -> Vec<usize> {
        needles
            .iter()
            .map(|n| haystack.find(n).unwrap_or_else(|| panic!("no `{n}`")))
            .collect()
    }

    #[test]
    fn sections_come_in_recipe_order_with_tables_before_their_figures() {
        let html = render(
            r#"
            [[sections]]
            title = "Problem 3: domain adaptation"
            figures = ["tsne", "eval"]
            [[sections.tables]]
            title = "Accuracy on the target"
            metric = "accuracy"
            columns = ["USPS"]
            rows = [{ label = "DANN", cells = ["eval"], reference = { "report 003" = 0.6157 } }]

            [[sections]]
            title = "Problem 1: GAN"
            figures = ["acgan"]
            "#,
        );
        let order = positions(
            &html,
            &[
                "<h2>Problem 3: domain adaptation</h2>",
                "<h3>Accuracy on the target</h3>",
                "<th>USPS (report 003)</th>",
                "<td>0.7000</td><td>0.6157</td>",
                "tsne by_class.png",
                "tsne by_domain.png",
                "eval confusion.png",
                "<h2>Problem 1: GAN</h2>",
                "acgan strip.png",
                "<h2>Metrics</h2>\n<details>",
            ],
        );
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(!html.contains("Other figures"), "every figure is placed");
        assert!(html.contains("max-height:640px"));
    }

    #[test]
    fn figures_no_section_names_are_folded_after_the_sections() {
        let html = render("[[sections]]\ntitle = \"Problem 3\"\nfigures = [\"tsne\"]");
        let order = positions(
            &html,
            &[
                "<h2>Problem 3</h2>",
                "tsne by_domain.png",
                "<h2>Other figures</h2>\n<details><summary>2 figures",
                "acgan strip.png",
                "eval confusion.png",
            ],
        );
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }

    #[test]
    fn without_sections_every_figure_follows_the_tables_by_input_name() {
        let html = render("");
        let order = positions(
            &html,
            &[
                "<h2>Figures</h2>",
                "acgan strip.png",
                "eval confusion.png",
                "tsne by_class.png",
            ],
        );
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(!html.contains("<section>"));
    }

    #[test]
    fn sections_are_checked_at_plan_time() {
        let err = crate::testing::params::<ReportStage>("[[sections]]\ntitle = \" \"").unwrap_err();
        assert_eq!(err.path, ["sections", "title"]);
        let err = crate::testing::params::<ReportStage>(
            "[[sections]]\ntitle = \"P\"\n[[sections.tables]]\nmetric = \"a\"\ncolumns = [\"x\", \"y\"]\nrows = [{ label = \"r\", cells = [\"e\"] }]",
        )
        .unwrap_err();
        assert_eq!(err.path, ["sections", "tables"]);
        assert!(err.message.contains("1 cells for 2 columns"), "{err}");
    }
}
