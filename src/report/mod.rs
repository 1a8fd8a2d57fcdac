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
    /// Published or reported numbers to show beside hwrun's, by source (`{ "report 003" =
    /// [0.52, 0.6157] }`): each source gets a column after every column of the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reference: BTreeMap<String, Reference>,
}

/// One source's reference numbers for a row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Reference {
    /// The number of a one-column table.
    One(f64),
    /// One number per column.
    PerColumn(Vec<f64>),
    /// Numbers of some columns, by column heading.
    ByColumn(BTreeMap<String, f64>),
}

impl Reference {
    /// The number for column `index` (headed `heading`), if the source gives one.
    fn at(&self, index: usize, heading: &str) -> Option<f64> {
        match self {
            Reference::One(value) => (index == 0).then_some(*value),
            Reference::PerColumn(values) => values.get(index).copied(),
            Reference::ByColumn(values) => values.get(heading).copied(),
        }
    }

    fn values(&self) -> Vec<f64> {
        match self {
            Reference::One(value) => vec![*value],
            Reference::PerColumn(values) => values.clone(),
            Reference::ByColumn(values) => values.values().copied().collect(),
        }
    }
}

/// A section of the report as the recipe declares it: a heading, then its tables, then the
/// figures of the inputs it names, in that order (a homework problem and its answers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionSpec {
    /// The section's heading (`Problem 3: domain adaptation`).
    pub title: String,
    /// A paragraph under the heading.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Inputs whose figures follow the tables, in this order (each with all its figures).
    #[serde(default)]
    pub figures: Vec<String>,
}

impl TableSpec {
    /// The checks a table passes before any input is read: cells and reference numbers agree
    /// with the columns, reference numbers are finite.
    pub fn check(&self) -> Result<(), String> {
        let columns = self.columns.len();
        for row in &self.rows {
            if row.cells.len() != columns {
                return Err(format!(
                    "row `{}` has {} cells for {columns} columns",
                    row.label,
                    row.cells.len(),
                ));
            }
            for (source, reference) in &row.reference {
                let fits = match reference {
                    Reference::One(_) => columns == 1,
                    Reference::PerColumn(values) => values.len() == columns,
                    Reference::ByColumn(values) => {
                        values.keys().all(|heading| self.columns.contains(heading))
                    }
                };
                if !fits {
                    return Err(format!(
                        "reference `{source}` of row `{}` must give one number per column ({columns}), a single number for a one-column table, or numbers by column heading ({})",
                        row.label,
                        self.columns.join(", ")
                    ));
                }
                if reference.values().iter().any(|v| !v.is_finite()) {
                    return Err(format!(
                        "reference `{source}` of row `{}` holds a number that is not finite",
                        row.label
                    ));
                }
            }
        }
        Ok(())
    }
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

/// A section the recipe declared, filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub title: String,
    pub text: Option<String>,
    pub tables: Vec<Table>,
    pub figures: Vec<Figure>,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub title: String,
    pub description: Option<String>,
    /// Tables declared outside any section, shown first.
    pub tables: Vec<Table>,
    /// The recipe's sections, in its order.
    pub parts: Vec<Part>,
    /// The figures no section names, in input order (all of them in a report without sections).
    pub figures: Vec<Figure>,
    /// Every input's contribution (metrics, figures, architecture, hyperparameters).
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
    spec.check()?;
    let mut rows = Vec::with_capacity(spec.rows.len());
    let mut per_seed_rows = Vec::with_capacity(spec.rows.len() * seeds.len());
    for row in &spec.rows {
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
        let cells = with_references(spec, cells, |index, heading, source| {
            row.reference
                .get(source)
                .and_then(|r| r.at(index, heading))
                .map_or_else(String::new, format_metric)
        });
        rows.push((row.label.clone(), cells));
        for (seed, cells) in seeds.iter().zip(by_seed) {
            per_seed_rows.push((format!("{}, seed {seed}", row.label), cells));
        }
    }
    let table = Table {
        title: spec.title.clone(),
        note: (!seeds.is_empty()).then(|| seeds::note(&seeds)),
        columns: with_references(spec, spec.columns.clone(), |_, heading, source| {
            format!("{heading} ({source})")
        }),
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

/// The sources of reference numbers of a table, in name order.
fn reference_sources(spec: &TableSpec) -> std::collections::BTreeSet<&str> {
    spec.rows
        .iter()
        .flat_map(|row| row.reference.keys().map(String::as_str))
        .collect()
}

/// `cells` with, after every column, one cell per reference source: `fill(column index,
/// column heading, source)`.
fn with_references(
    spec: &TableSpec,
    cells: Vec<String>,
    fill: impl Fn(usize, &str, &str) -> String,
) -> Vec<String> {
    let sources = reference_sources(spec);
    let mut out = Vec::with_capacity(cells.len() * (1 + sources.len()));
    for (index, (cell, heading)) in cells.into_iter().zip(&spec.columns).enumerate() {
        out.push(cell);
        out.extend(sources.iter().map(|source| fill(index, heading, source)));
    }
    out
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
                reference: BTreeMap::new(),
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
                reference: BTreeMap::new(),
            }],
            ..spec
        };
        assert!(fill_table(&bad, &metrics).unwrap_err().contains("`zz`"));
    }

    #[test]
    fn reference_numbers_stand_beside_their_column() {
        let spec: TableSpec = toml::from_str(
            r#"
            metric = "accuracy"
            columns = ["SVHN", "USPS"]
            rows = [
              { label = "DANN", cells = ["a", "b"], reference = { "report 003" = [0.52, 0.6157] } },
              { label = "Source", cells = ["a", ""], reference = { "paper" = { USPS = 0.75 } } },
            ]
            "#,
        )
        .unwrap();
        let metrics = BTreeMap::from([
            (
                "a".to_owned(),
                Metrics::from([("accuracy".to_owned(), 0.5)]),
            ),
            (
                "b".to_owned(),
                Metrics::from([("accuracy".to_owned(), 0.6)]),
            ),
        ]);
        let table = &fill_table(&spec, &metrics).unwrap()[0];
        assert_eq!(
            table.columns,
            [
                "SVHN",
                "SVHN (paper)",
                "SVHN (report 003)",
                "USPS",
                "USPS (paper)",
                "USPS (report 003)"
            ]
        );
        assert_eq!(
            table.rows[0].1,
            ["0.5000", "", "0.5200", "0.6000", "", "0.6157"]
        );
        assert_eq!(table.rows[1].1, ["0.5000", "", "", "", "0.7500", ""]);

        let mut wrong = spec.clone();
        wrong.rows[0].reference = BTreeMap::from([("x".to_owned(), Reference::One(0.5))]);
        assert!(wrong
            .check()
            .unwrap_err()
            .contains("reference `x` of row `DANN`"));
        wrong.rows[0].reference =
            BTreeMap::from([("x".to_owned(), Reference::PerColumn(vec![0.5, f64::NAN]))]);
        assert!(wrong.check().unwrap_err().contains("not finite"));
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
                    reference: BTreeMap::new(),
                },
                RowSpec {
                    label: "Source".into(),
                    cells: vec!["src".into(), "src".into()],
                    reference: BTreeMap::new(),
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
