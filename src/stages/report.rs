//! `report`: collects its inputs' metrics into tables laid out by the recipe and writes
//! `report.md`.
//!
//! ```toml
//! [stages.report]
//! kind = "report"
//! title = "Domain adaptation"
//! inputs = { src = "eval_source_only", dann = "eval_dann" }
//!
//! [[stages.report.tables]]
//! title = "Accuracy on the target domain"
//! metric = "accuracy"
//! columns = ["MNIST-M -> SVHN"]
//! rows = [
//!   { label = "Trained on source", cells = ["src"] },
//!   { label = "Adaptation (DANN)", cells = ["dann"] },
//! ]
//! ```

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::context::StageContext;
use super::stage::{Stage, StageOutcome};
use crate::report::{fill_table, markdown, ReportData, Section, TableSpec};

pub struct ReportStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The report's heading.
    #[serde(default = "default_title")]
    pub title: String,
    /// A paragraph under the heading.
    #[serde(default)]
    pub description: Option<String>,
    /// Result tables; every input's metrics are also listed after them.
    #[serde(default)]
    pub tables: Vec<TableSpec>,
}

fn default_title() -> String {
    "Results".to_owned()
}

impl Stage for ReportStage {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Collect the inputs' metrics into the report's tables (report.md)";

    fn run(params: ReportParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let sections: Vec<Section> = ctx
            .inputs()
            .iter()
            .map(|(name, input)| Section {
                name: name.clone(),
                stage: input.stage.clone(),
                kind: input.kind.clone(),
                params: input.params.clone(),
                metrics: input.outcome.metrics.clone(),
            })
            .collect();
        let metrics_of: BTreeMap<_, _> = sections.iter().map(|s| (s.name.clone(), s.metrics.clone())).collect();
        let tables = params
            .tables
            .iter()
            .map(|spec| fill_table(spec, &metrics_of).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("cannot fill the report's tables")?;
        let report = ReportData { title: params.title, description: params.description, tables, sections };
        let path = ctx.out_dir().join("report.md");
        std::fs::write(&path, markdown::render(&report)).with_context(|| format!("cannot write `{path}`"))?;
        Ok(StageOutcome { primary: Some("report.md".to_owned()), ..StageOutcome::default() })
    }
}
