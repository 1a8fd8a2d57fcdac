//! `hwrun compare`: one row per sweep variant with the swept values and the metrics its stages
//! recorded (cached stages only; run the recipe first).
//!
//! By default only the metrics that differ between variants are shown (a sweep's other
//! stages record the same numbers in every variant), without the breakdowns of a shown metric
//! (`eval.accuracy.class_3` beside `eval.accuracy`); `--metric PATTERN` chooses columns and
//! `--all` shows everything. The best variant per metric is marked, its direction decided by the
//! metric's name ([`Direction::of`]): lower is better for losses, errors and distances (`loss`,
//! `error`, `fid`, `kid`, `mse`, ...), higher for accuracies and scores (`accuracy`, `acc`,
//! `score`, `f1`, `precision`, `recall`, `auc`, `psnr`, ...); other metrics are not marked.
//!
//! In a sweep over `seed` the rows are the groups of variants that differ only in seed: the
//! other swept parameters, the seeds, and each metric as mean ± sample standard deviation (n - 1)
//! over the seeds (in `--json` an object with `mean`, `std`, `n` and the per-seed `values`), the
//! best group marked by its mean. Columns are chosen on the per-seed rows, so a metric that only
//! the seed changes is shown. `--per-seed` shows one row per variant instead.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::args::{CompareArgs, GlobalArgs};
use super::session::{Access, Failure, Session};
use crate::error::exit_code;
use crate::output::{OutputMode, Printer};
use crate::recipe::sweep::SEED_KEY;
use crate::report::format_metric;
use crate::report::seeds::Spread;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Higher,
    Lower,
}

const LOWER_IS_BETTER: &[&str] = &[
    "loss",
    "losses",
    "error",
    "errors",
    "err",
    "fid",
    "kid",
    "mse",
    "mae",
    "rmse",
    "nll",
    "perplexity",
    "lpips",
    "distance",
];
const HIGHER_IS_BETTER: &[&str] = &[
    "accuracy",
    "acc",
    "score",
    "f1",
    "precision",
    "recall",
    "auc",
    "iou",
    "psnr",
    "ssim",
    "trustworthiness",
    "is",
    "inception",
];

impl Direction {
    /// From the metric's name (the part after `stage.`), by its words: `val_loss` is a loss,
    /// `accuracy.class_3` an accuracy; `None` when the name says neither.
    pub fn of(metric: &str) -> Option<Direction> {
        let name = metric
            .split_once('.')
            .map_or(metric, |(_, name)| name)
            .to_ascii_lowercase();
        let words: Vec<&str> = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if words.iter().any(|w| LOWER_IS_BETTER.contains(w)) {
            Some(Direction::Lower)
        } else if words
            .iter()
            .any(|w| HIGHER_IS_BETTER.contains(w) || w.starts_with("acc"))
        {
            Some(Direction::Higher)
        } else {
            None
        }
    }
}

/// The comparison: swept-parameter columns, chosen metric columns, one row per variant.
struct Comparison {
    params: Vec<String>,
    metrics: Vec<String>,
    rows: Vec<Map<String, Value>>,
    /// Metrics left out because every variant has the same value.
    hidden: usize,
}

pub fn compare(global: &GlobalArgs, args: &CompareArgs, printer: &Printer) -> Result<i32, Failure> {
    let session = Session::open(global, &args.recipe, Access::Read)?;
    let plan = &session.plan;
    let params: Vec<String> = plan
        .recipe
        .sweep
        .axes
        .iter()
        .map(|a| a.dotted.clone())
        .collect();
    let mut all_metrics = BTreeSet::new();
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    let mut missing = 0;
    for variant in &plan.variants {
        let mut row = Map::new();
        for (name, value) in &variant.assignments {
            row.insert(
                name.clone(),
                serde_json::to_value(value).unwrap_or(Value::Null),
            );
        }
        for (decl, &node) in plan.recipe.stages.iter().zip(&variant.nodes) {
            let Some(manifest) = session.cache.lookup(&plan.graph[node].key) else {
                missing += 1;
                continue;
            };
            for (metric, value) in &manifest.outcome.metrics {
                let column = format!("{}.{metric}", decl.name);
                all_metrics.insert(column.clone());
                row.insert(column, Value::from(*value));
            }
        }
        rows.push(row);
    }
    if missing > 0 {
        printer.warn(&format!(
            "{missing} stage results are not in the cache yet: run the recipe first"
        ));
    }
    let over_seeds = plan.recipe.sweep.seed_axis().is_some() && !args.per_seed;
    let mut comparison = choose(params, all_metrics.into_iter().collect(), rows, args);
    if over_seeds {
        comparison = comparison.over_seeds();
    }
    if comparison.hidden > 0 {
        printer.status(&format!(
            "{} metrics not shown: equal in every variant, or per-class details of a metric shown (`--all` shows them, `--metric PATTERN` chooses)",
            comparison.hidden
        ));
    }
    let text = match printer.mode() {
        OutputMode::Json => {
            serde_json::to_string_pretty(&comparison.rows).map_err(anyhow::Error::from)?
        }
        _ if args.csv => comparison.csv(),
        _ if args.md => comparison.markdown(),
        _ => comparison.text(),
    };
    printer.result(&text);
    Ok(exit_code::SUCCESS)
}

/// Picks the metric columns: `--all`, the ones `--metric` matches, or those that differ.
fn choose(
    params: Vec<String>,
    metrics: Vec<String>,
    mut rows: Vec<Map<String, Value>>,
    args: &CompareArgs,
) -> Comparison {
    let total = metrics.len();
    let metrics: Vec<String> = if args.all {
        metrics
    } else if !args.metric.is_empty() {
        metrics
            .into_iter()
            .filter(|m| args.metric.iter().any(|p| matches_pattern(p, m)))
            .collect()
    } else if rows.len() <= 1 {
        metrics
    } else {
        let details: Vec<bool> = metrics
            .iter()
            .map(|m| metrics.iter().any(|p| is_detail_of(m, p)))
            .collect();
        metrics
            .into_iter()
            .zip(details)
            .filter(|(m, detail)| !detail && differs(&rows, m))
            .map(|(m, _)| m)
            .collect()
    };
    let hidden = if args.all || !args.metric.is_empty() {
        0
    } else {
        total - metrics.len()
    };
    let keep: BTreeSet<&String> = params.iter().chain(&metrics).collect();
    for row in &mut rows {
        row.retain(|k, _| keep.contains(k));
    }
    Comparison {
        params,
        metrics,
        rows,
        hidden,
    }
}

/// Whether `metric` is a breakdown of `parent` (`eval.accuracy.class_3` of `eval.accuracy`).
fn is_detail_of(metric: &str, parent: &str) -> bool {
    metric.len() > parent.len() + 1
        && metric.starts_with(parent)
        && metric.as_bytes()[parent.len()] == b'.'
}

/// Whether variants recorded at least two different values of `column`.
fn differs(rows: &[Map<String, Value>], column: &str) -> bool {
    let mut values = rows.iter().filter_map(|r| r.get(column)?.as_f64());
    let Some(first) = values.next() else {
        return false;
    };
    values.any(|v| v != first)
}

/// `*` and `?` wildcards over the whole name when the pattern has any, else a substring.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    fn glob(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some('?'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    glob(
        &pattern.chars().collect::<Vec<_>>(),
        &name.chars().collect::<Vec<_>>(),
    )
}

impl Comparison {
    /// One row per group of rows that differ only in `seed`, in order of first appearance: the
    /// other parameters, the seeds (an array), and per metric the mean ± std over the seeds.
    fn over_seeds(self) -> Comparison {
        let params: Vec<String> = self
            .params
            .iter()
            .filter(|p| *p != SEED_KEY)
            .cloned()
            .collect();
        // (the other parameters' values, the rows that have them)
        type Group<'a> = (Vec<&'a Value>, Vec<&'a Map<String, Value>>);
        let mut groups: Vec<Group> = Vec::new();
        for row in &self.rows {
            let key: Vec<&Value> = params
                .iter()
                .map(|p| row.get(p).unwrap_or(&Value::Null))
                .collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(row),
                None => groups.push((key, vec![row])),
            }
        }
        let rows = groups
            .into_iter()
            .map(|(_, members)| {
                let mut row = Map::new();
                for param in &params {
                    if let Some(value) = members[0].get(param) {
                        row.insert(param.clone(), value.clone());
                    }
                }
                let seeds: Vec<Value> = members
                    .iter()
                    .filter_map(|m| m.get(SEED_KEY).cloned())
                    .collect();
                row.insert(SEED_KEY.to_owned(), Value::Array(seeds));
                for metric in &self.metrics {
                    let values: Vec<f64> = members
                        .iter()
                        .filter_map(|m| m.get(metric)?.as_f64())
                        .collect();
                    if let Some(spread) = Spread::of(&values) {
                        row.insert(
                            metric.clone(),
                            serde_json::json!({
                                "mean": spread.mean,
                                "std": spread.std,
                                "n": spread.n,
                                "values": values,
                            }),
                        );
                    }
                }
                row
            })
            .collect();
        let mut params = params;
        params.push(SEED_KEY.to_owned());
        Comparison {
            params,
            rows,
            ..self
        }
    }

    fn columns(&self) -> Vec<&String> {
        self.params.iter().chain(&self.metrics).collect()
    }

    /// Row index of the best value of each metric column with a known direction (none when
    /// every variant ties).
    fn best(&self) -> Vec<Option<usize>> {
        self.metrics
            .iter()
            .map(|metric| {
                let direction = Direction::of(metric)?;
                let values: Vec<(usize, f64)> = self
                    .rows
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| Some((i, number(r.get(metric)?)?)))
                    .collect();
                let better = |a: f64, b: f64| match direction {
                    Direction::Higher => a > b,
                    Direction::Lower => a < b,
                };
                let (best, value) =
                    values
                        .iter()
                        .copied()
                        .reduce(|x, y| if better(y.1, x.1) { y } else { x })?;
                let ties = values.iter().filter(|(_, v)| *v == value).count();
                (ties < values.len()).then_some(best)
            })
            .collect()
    }

    /// Cells of each row, with `mark` applied to the best values.
    fn cells(&self, mark: impl Fn(String) -> String) -> Vec<Vec<String>> {
        let best = self.best();
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let params = self
                    .params
                    .iter()
                    .map(|c| row.get(c).map_or(String::new(), cell));
                let metrics = self.metrics.iter().zip(&best).map(|(c, b)| {
                    let text = row.get(c).map_or(String::new(), cell);
                    if *b == Some(i) {
                        mark(text)
                    } else {
                        text
                    }
                });
                params.chain(metrics).collect()
            })
            .collect()
    }

    fn csv(&self) -> String {
        let mut out = join_line(self.columns().iter().map(|c| c.to_string()), ",");
        for row in self.cells(|s| s) {
            out.push_str(&join_line(row, ","));
        }
        out
    }

    fn markdown(&self) -> String {
        let columns = self.columns();
        let mut out = format!(
            "| {} |\n",
            columns
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        out.push_str(&format!("|{}\n", " --- |".repeat(columns.len())));
        for row in self.cells(|s| format!("**{s}**")) {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out.push_str(&self.legend("**bold**"));
        out
    }

    /// Aligned columns for a terminal.
    fn text(&self) -> String {
        let columns = self.columns();
        let rows = self.cells(|s| format!("{s} *"));
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([c.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut out = line(columns.iter().map(|c| c.to_string()).collect());
        for row in rows {
            out.push_str(&line(row));
        }
        out.push_str(&self.legend("*"));
        out
    }

    fn legend(&self, mark: &str) -> String {
        if self.best().iter().any(Option::is_some) {
            format!("\n{mark}: best variant (higher is better for accuracies and scores, lower for losses, errors and FID)\n")
        } else {
            String::new()
        }
    }
}

fn join_line(cells: impl IntoIterator<Item = String>, separator: &str) -> String {
    format!(
        "{}\n",
        cells.into_iter().collect::<Vec<_>>().join(separator)
    )
}

/// A metric's number: the value, or the mean over seeds.
fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.get("mean").and_then(Value::as_f64))
}

fn cell(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        // The seeds of a group: `0 1 2` (no commas, for `--csv`).
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(" "),
        Value::Object(spread) if spread.contains_key("mean") => {
            let mean = number(value).map_or_else(String::new, format_metric);
            match spread.get("std").and_then(Value::as_f64) {
                Some(std) => format!("{mean} ± {}", format_metric(std)),
                None => mean,
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(metric: &[&str], all: bool) -> CompareArgs {
        CompareArgs {
            recipe: Default::default(),
            csv: false,
            md: false,
            metric: metric.iter().map(|s| s.to_string()).collect(),
            all,
            per_seed: false,
        }
    }

    fn rows() -> Vec<Map<String, Value>> {
        [(0.001, 0.91, 0.5, 0.7), (0.01, 0.95, 0.3, 0.7)]
            .iter()
            .map(|&(lr, acc, loss, same)| {
                let mut row = Map::new();
                row.insert("train.lr".into(), Value::from(lr));
                row.insert("eval.accuracy".into(), Value::from(acc));
                row.insert("train.val_loss".into(), Value::from(loss));
                row.insert("eval.class_3_accuracy".into(), Value::from(same));
                row.insert("eval.accuracy.class_1".into(), Value::from(acc - 0.1));
                row
            })
            .collect()
    }

    fn metrics() -> Vec<String> {
        [
            "eval.accuracy",
            "eval.accuracy.class_1",
            "eval.class_3_accuracy",
            "train.val_loss",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn directions_come_from_the_name() {
        assert_eq!(Direction::of("eval.accuracy"), Some(Direction::Higher));
        assert_eq!(
            Direction::of("eval.class_3_accuracy"),
            Some(Direction::Higher)
        );
        assert_eq!(Direction::of("train.val_loss"), Some(Direction::Lower));
        assert_eq!(Direction::of("fid.fid"), Some(Direction::Lower));
        assert_eq!(
            Direction::of("gen.inception_score"),
            Some(Direction::Higher)
        );
        assert_eq!(
            Direction::of("eval.accuracy.class_3"),
            Some(Direction::Higher)
        );
        assert_eq!(Direction::of("train.lr"), None);
        assert_eq!(Direction::of("data.n_train"), None);
    }

    #[test]
    fn by_default_only_differing_metrics_with_the_best_marked() {
        let comparison = choose(
            vec!["train.lr".into()],
            metrics(),
            rows(),
            &args(&[], false),
        );
        assert_eq!(comparison.metrics, ["eval.accuracy", "train.val_loss"]);
        assert_eq!(
            comparison.hidden, 2,
            "the equal metric and the per-class detail"
        );
        let md = comparison.markdown();
        assert!(
            md.starts_with("| train.lr | eval.accuracy | train.val_loss |\n| --- | --- | --- |\n"),
            "{md}"
        );
        assert!(
            md.contains("| 0.0010 | 0.9100 | 0.5000 |\n| 0.0100 | **0.9500** | **0.3000** |\n"),
            "{md}"
        );
        let text = comparison.text();
        assert!(text.contains("0.0100    0.9500 *       0.3000 *"), "{text}");
    }

    #[test]
    fn patterns_and_all_choose_columns() {
        let chosen = |patterns: &[&str], all| {
            choose(
                vec!["train.lr".into()],
                metrics(),
                rows(),
                &args(patterns, all),
            )
            .metrics
        };
        assert_eq!(
            chosen(&["*accuracy"], false),
            ["eval.accuracy", "eval.class_3_accuracy"]
        );
        assert_eq!(
            chosen(&["eval.accuracy*"], false),
            ["eval.accuracy", "eval.accuracy.class_1"]
        );
        assert_eq!(chosen(&["loss"], false), ["train.val_loss"]);
        assert_eq!(chosen(&["eval.?ccuracy"], false), ["eval.accuracy"]);
        assert_eq!(chosen(&[], true).len(), 4);
    }

    #[test]
    fn ties_are_not_marked() {
        let comparison = choose(
            vec!["train.lr".into()],
            metrics(),
            rows(),
            &args(&["class_3"], false),
        );
        assert!(!comparison.markdown().contains("**"));
    }

    #[test]
    fn seeds_are_summarised_per_group_of_the_other_parameters() {
        let rows: Vec<Map<String, Value>> = [
            (0.001, 0, 0.5),
            (0.001, 1, 0.7),
            (0.001, 2, 0.9),
            (0.01, 0, 0.2),
            (0.01, 1, 0.4),
            (0.01, 2, 0.3),
        ]
        .iter()
        .map(|&(lr, seed, acc)| {
            let mut row = Map::new();
            row.insert("seed".into(), Value::from(seed));
            row.insert("train.lr".into(), Value::from(lr));
            row.insert("eval.accuracy".into(), Value::from(acc));
            row
        })
        .collect();
        let comparison = choose(
            vec!["seed".into(), "train.lr".into()],
            vec!["eval.accuracy".into()],
            rows,
            &args(&[], false),
        )
        .over_seeds();
        assert_eq!(comparison.params, ["train.lr", "seed"]);
        assert_eq!(comparison.rows.len(), 2);
        let spread = &comparison.rows[0]["eval.accuracy"];
        assert!((spread["mean"].as_f64().unwrap() - 0.7).abs() < 1e-12);
        assert!((spread["std"].as_f64().unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(spread["n"], 3);
        assert_eq!(spread["values"], serde_json::json!([0.5, 0.7, 0.9]));
        let md = comparison.markdown();
        assert!(
            md.starts_with("| train.lr | seed | eval.accuracy |\n"),
            "{md}"
        );
        assert!(
            md.contains("| 0.0010 | 0 1 2 | **0.7000 ± 0.2000** |\n"),
            "{md}"
        );
        assert!(
            md.contains("| 0.0100 | 0 1 2 | 0.3000 ± 0.1000 |\n"),
            "{md}"
        );
    }
}
