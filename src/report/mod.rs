//! Reports: what a `report` stage collects from its inputs ([`collect`] into [`ReportData`]),
//! and one file per output format turning it into text ([`markdown`], [`html`]). Over the seeds
//! of a seed sweep the tables show mean ± standard deviation ([`seeds`]).

pub mod collect;
pub mod html;
pub mod markdown;
pub mod seeds;

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
    /// A sentence under the table (what an aggregated cell means).
    pub note: Option<String>,
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
///
/// A cell whose input the report has once per seed (`src[seed=0]`, `src[seed=1]`, ...) shows the
/// mean ± sample standard deviation over the seeds ([`seeds`]); the table is then followed by a
/// second one with each seed's value.
pub fn fill_table(
    spec: &TableSpec,
    metrics_of: &BTreeMap<String, Metrics>,
) -> Result<Vec<Table>, String> {
    let seeds = seeds::seeds_of(
        spec.rows
            .iter()
            .flat_map(|r| r.cells.iter().map(String::as_str)),
        metrics_of,
    );
    let value = |metrics: &Metrics| metrics.get(&spec.metric).copied();
    let text = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), format_metric);
    let mut rows = Vec::with_capacity(spec.rows.len());
    let mut per_seed_rows = Vec::with_capacity(spec.rows.len() * seeds.len());
    for row in &spec.rows {
        if row.cells.len() != spec.columns.len() {
            return Err(format!(
                "row `{}` has {} cells for {} columns",
                row.label,
                row.cells.len(),
                spec.columns.len()
            ));
        }
        let mut cells = Vec::with_capacity(row.cells.len());
        let mut by_seed = vec![Vec::with_capacity(row.cells.len()); seeds.len()];
        for input in &row.cells {
            if input.is_empty() {
                cells.push(String::new());
                by_seed.iter_mut().for_each(|c| c.push(String::new()));
                continue;
            }
            if let Some(metrics) = metrics_of.get(input) {
                cells.push(text(value(metrics)));
                by_seed
                    .iter_mut()
                    .for_each(|c| c.push(text(value(metrics))));
                continue;
            }
            let replicas = seeds::replicas(input, metrics_of);
            if replicas.is_empty() {
                return Err(format!(
                    "cell `{input}` in row `{}` names no input of the report",
                    row.label
                ));
            }
            let values: Vec<Option<f64>> = seeds
                .iter()
                .map(|seed| replicas.get(seed).and_then(|m| value(m)))
                .collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            cells.push(match seeds::Spread::of(&present) {
                None => "n/a".to_owned(),
                Some(spread) if spread.n < seeds.len() => {
                    format!("{} ({} of {} seeds)", spread.text(), spread.n, seeds.len())
                }
                Some(spread) => spread.text(),
            });
            for (cells, v) in by_seed.iter_mut().zip(&values) {
                cells.push(text(*v));
            }
        }
        rows.push((row.label.clone(), cells));
        for (seed, cells) in seeds.iter().zip(by_seed) {
            per_seed_rows.push((format!("{}, seed {seed}", row.label), cells));
        }
    }
    let table = Table {
        title: spec.title.clone(),
        note: (!seeds.is_empty()).then(|| seeds::note(&seeds)),
        columns: spec.columns.clone(),
        rows,
    };
    if seeds.is_empty() {
        return Ok(vec![table]);
    }
    let per_seed = Table {
        title: Some(match &spec.title {
            Some(title) => format!("{title}, per seed"),
            None => "Per seed".to_owned(),
        }),
        note: None,
        columns: spec.columns.clone(),
        rows: per_seed_rows,
    };
    Ok(vec![table, per_seed])
}

/// A training stage's parameters as `(name, value)` rows, nested keys dotted.
pub fn hyperparameters(params: &serde_json::Value) -> Vec<(String, String)> {
    crate::dotted::leaves(params)
        .into_iter()
        .filter_map(|(path, leaf)| match leaf {
            // An empty table has no hyperparameter to list.
            serde_json::Value::Object(_) => None,
            serde_json::Value::String(text) => Some((path, text.clone())),
            other => Some((path, other.to_string())),
        })
        .collect()
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
        let tables = fill_table(&spec, &metrics).unwrap();
        assert_eq!(tables.len(), 1, "no seeds, no per-seed table");
        assert_eq!(tables[0].note, None);
        assert_eq!(
            tables[0].rows,
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

    #[test]
    fn cells_over_seeds_show_mean_and_sample_std_then_each_seed() {
        let spec = TableSpec {
            title: Some("Accuracy".into()),
            metric: "accuracy".into(),
            columns: vec!["USPS".into(), "SVHN".into()],
            rows: vec![
                RowSpec {
                    label: "DANN".into(),
                    cells: vec!["dann".into(), "".into()],
                },
                RowSpec {
                    label: "Source".into(),
                    cells: vec!["src".into(), "src".into()],
                },
            ],
        };
        let accuracy = |v: f64| Metrics::from([("accuracy".to_owned(), v)]);
        let metrics = BTreeMap::from([
            ("dann[seed=0]".to_owned(), accuracy(0.6)),
            ("dann[seed=1]".to_owned(), accuracy(0.7)),
            ("dann[seed=2]".to_owned(), accuracy(0.8)),
            ("src[seed=0]".to_owned(), accuracy(0.1)),
            ("src[seed=1]".to_owned(), Metrics::new()),
            ("src[seed=2]".to_owned(), accuracy(0.3)),
        ]);
        let tables = fill_table(&spec, &metrics).unwrap();
        assert_eq!(tables.len(), 2);
        let (mean, per_seed) = (&tables[0], &tables[1]);
        assert_eq!(
            mean.rows[0],
            (
                "DANN".to_owned(),
                vec!["0.7000 ± 0.1000".to_owned(), String::new()]
            )
        );
        // 0.1 and 0.3: mean 0.2, sample std sqrt(0.02 / 1).
        let src = "0.2000 ± 0.1414 (2 of 3 seeds)".to_owned();
        assert_eq!(mean.rows[1], ("Source".to_owned(), vec![src.clone(), src]));
        let note = mean.note.as_deref().unwrap();
        assert!(
            note.contains("n − 1") && note.contains("3 seeds (0, 1, 2)"),
            "{note}"
        );
        assert_eq!(per_seed.title.as_deref(), Some("Accuracy, per seed"));
        let labels: Vec<&str> = per_seed.rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            labels,
            [
                "DANN, seed 0",
                "DANN, seed 1",
                "DANN, seed 2",
                "Source, seed 0",
                "Source, seed 1",
                "Source, seed 2"
            ]
        );
        assert_eq!(per_seed.rows[2].1, ["0.8000", ""]);
        assert_eq!(per_seed.rows[4].1, ["n/a", "n/a"]);
    }
}
