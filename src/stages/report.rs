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
//! ```toml
//! [stages.report]
//! kind = "report"
//! title = "Domain adaptation"
//! inputs = { src = "eval_source_only", dann = "eval_dann", tgt = "eval_target_only", tsne = "tsne" }
//!
//! [[stages.report.tables]]
//! title = "Accuracy on the target domain"
//! metric = "accuracy"
//! columns = ["MNIST-M -> SVHN"]
//! rows = [
//!   { label = "Trained on source", cells = ["src"] },
//!   { label = "Adaptation (DANN)", cells = ["dann"] },
//!   { label = "Trained on target", cells = ["tgt"] },
//! ]
//! ```

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::report::{collect::collect, html, markdown, TableSpec};
use crate::stage::StageContext;
use crate::stage::{Inputs, Stage, StageOutcome, StageShape};

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
}

fn default_title() -> String {
    "Results".to_owned()
}

impl Stage for ReportStage {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 2;
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
            &params.tables,
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
