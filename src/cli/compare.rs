//! `hwrun compare`: one row per sweep variant, the swept values and every metric its stages
//! recorded (cached stages only; run the recipe first).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::args::{CompareArgs, GlobalArgs};
use super::session::{Access, Failure, Session};
use crate::error::exit_code;
use crate::output::{OutputMode, Printer};

pub fn compare(global: &GlobalArgs, args: &CompareArgs, printer: &Printer) -> Result<i32, Failure> {
    let session = Session::open(global, &args.recipe, Access::Read)?;
    let plan = &session.plan;
    let mut columns: Vec<String> = plan.recipe.sweep.axes.iter().map(|a| a.dotted.clone()).collect();
    let mut metric_columns = BTreeSet::new();
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    let mut missing = 0;
    for variant in &plan.variants {
        let mut row = Map::new();
        for (name, value) in &variant.assignments {
            row.insert(name.clone(), toml_to_json(value));
        }
        for (decl, &node) in plan.recipe.stages.iter().zip(&variant.nodes) {
            let Some(manifest) = session.cache.lookup(&plan.graph[node].key) else {
                missing += 1;
                continue;
            };
            for (metric, value) in &manifest.outcome.metrics {
                let column = format!("{}.{metric}", decl.name);
                metric_columns.insert(column.clone());
                row.insert(column, Value::from(*value));
            }
        }
        rows.push(row);
    }
    if missing > 0 {
        printer.warn(&format!("{missing} stage results are not in the cache yet: run the recipe first"));
    }
    columns.extend(metric_columns);
    let text = match (printer.mode(), args.csv) {
        (OutputMode::Json, _) => serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?,
        (_, true) => table(&columns, &rows, ",", false),
        (_, false) => table(&columns, &rows, " | ", true),
    };
    printer.result(&text);
    Ok(exit_code::SUCCESS)
}

/// A CSV or markdown table; cells missing from a row stay empty.
fn table(columns: &[String], rows: &[Map<String, Value>], separator: &str, markdown: bool) -> String {
    let wrap = |cells: Vec<String>| {
        let line = cells.join(separator);
        if markdown {
            format!("| {line} |\n")
        } else {
            format!("{line}\n")
        }
    };
    let mut out = wrap(columns.to_vec());
    if markdown {
        out.push_str(&wrap(columns.iter().map(|_| "---".to_owned()).collect()));
    }
    for row in rows {
        out.push_str(&wrap(columns.iter().map(|c| row.get(c).map_or(String::new(), cell)).collect()));
    }
    out
}

fn cell(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn toml_to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_table_has_header_separator_and_rows() {
        let columns = vec!["train.lr".to_owned(), "eval.accuracy".to_owned()];
        let mut row = Map::new();
        row.insert("train.lr".into(), Value::from(0.001));
        row.insert("eval.accuracy".into(), Value::from(0.91234));
        let text = table(&columns, &[row], " | ", true);
        assert_eq!(text, "| train.lr | eval.accuracy |\n| --- | --- |\n| 0.0010 | 0.9123 |\n");
    }
}
