//! Reports: what a `report` stage collects from its inputs ([`collect`] into [`ReportData`]),
//! and one file per output format turning it into text ([`markdown`], [`html`]).

pub mod collect;
pub mod html;
pub mod markdown;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stage::Metrics;

/// A results table as the recipe lays it out: each cell is the metric of one input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Heading above the table.
    #[serde(default)]
    pub title: Option<String>,
    /// The metric every cell shows (e.g. `accuracy`).
    pub metric: String,
    /// Column headings.
    pub columns: Vec<String>,
    pub rows: Vec<RowSpec>,
}

/// One table row: a label and, per column, the input whose metric fills the cell (empty: blank).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    pub label: String,
    pub cells: Vec<String>,
}

/// A filled table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: Option<String>,
    pub columns: Vec<String>,
    /// Row label and one cell text per column.
    pub rows: Vec<(String, Vec<String>)>,
}

/// One input's contribution to the report.
#[derive(Debug, Clone)]
pub struct Section {
    /// The input's name in the report stage and the stage that produced it.
    pub name: String,
    pub stage: String,
    pub kind: String,
    pub params: serde_json::Value,
    pub metrics: Metrics,
    /// Figures of this input, copied or drawn into the report directory.
    pub figures: Vec<Figure>,
    /// The model's module tree, for training stages.
    pub architecture: Option<String>,
}

/// A PNG in the report directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub caption: String,
    /// Relative to the report directory.
    pub file: String,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub title: String,
    pub description: Option<String>,
    pub tables: Vec<Table>,
    pub sections: Vec<Section>,
}

/// Fills a table spec from the inputs' metrics; a cell naming no input is an error.
pub fn fill_table(
    spec: &TableSpec,
    metrics_of: &BTreeMap<String, Metrics>,
) -> Result<Table, String> {
    let mut rows = Vec::with_capacity(spec.rows.len());
    for row in &spec.rows {
        if row.cells.len() != spec.columns.len() {
            return Err(format!(
                "row `{}` has {} cells for {} columns",
                row.label,
                row.cells.len(),
                spec.columns.len()
            ));
        }
        let cells = row
            .cells
            .iter()
            .map(|input| {
                if input.is_empty() {
                    return Ok(String::new());
                }
                let metrics = metrics_of.get(input).ok_or_else(|| {
                    format!(
                        "cell `{input}` in row `{}` names no input of the report",
                        row.label
                    )
                })?;
                Ok(metrics
                    .get(&spec.metric)
                    .map_or_else(|| "n/a".to_owned(), |v| format_metric(*v)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        rows.push((row.label.clone(), cells));
    }
    Ok(Table {
        title: spec.title.clone(),
        columns: spec.columns.clone(),
        rows,
    })
}

/// A training stage's parameters as `(name, value)` rows, nested keys dotted.
pub fn hyperparameters(params: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, item, out);
                }
            }
            serde_json::Value::String(text) => out.push((prefix.to_owned(), text.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", params, &mut out);
    out
}

/// Four significant decimals, the precision the homework tables use.
pub fn format_metric(value: f64) -> String {
    format!("{value:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_cells_from_named_inputs() {
        let spec = TableSpec {
            title: None,
            metric: "accuracy".into(),
            columns: vec!["A".into(), "B".into()],
            rows: vec![RowSpec {
                label: "source".into(),
                cells: vec!["a".into(), "".into()],
            }],
        };
        let metrics = BTreeMap::from([(
            "a".to_owned(),
            Metrics::from([("accuracy".to_owned(), 0.5)]),
        )]);
        let table = fill_table(&spec, &metrics).unwrap();
        assert_eq!(
            table.rows,
            vec![(
                "source".to_owned(),
                vec!["0.5000".to_owned(), String::new()]
            )]
        );
        let bad = TableSpec {
            rows: vec![RowSpec {
                label: "x".into(),
                cells: vec!["zz".into(), "".into()],
            }],
            ..spec
        };
        assert!(fill_table(&bad, &metrics).unwrap_err().contains("`zz`"));
    }
}
