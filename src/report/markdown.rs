//! The report as markdown (`report.md`), with figures linked from `figures/`, laid out like
//! `index.html` (see `html`): tables, the recipe's sections, the other figures, metrics, models.

use std::fmt::Write;

use super::{format_metric, hyperparameters, ReportData, Table};

pub fn render(report: &ReportData) -> String {
    let mut out = format!("# {}\n\n", report.title);
    if let Some(description) = &report.description {
        let _ = writeln!(out, "{description}\n");
    }
    for table in &report.tables {
        out.push_str(&table_markdown(table, 2));
        out.push('\n');
    }
    for part in &report.parts {
        let _ = writeln!(out, "## {}\n", part.title);
        if let Some(text) = &part.text {
            let _ = writeln!(out, "{text}\n");
        }
        for table in &part.tables {
            out.push_str(&table_markdown(table, 3));
            out.push('\n');
        }
        for figure in &part.figures {
            let _ = writeln!(out, "![{}]({})\n", figure.caption, figure.file);
        }
    }
    if !report.figures.is_empty() {
        let heading = if report.parts.is_empty() {
            "Figures"
        } else {
            "Other figures"
        };
        let _ = writeln!(out, "## {heading}\n");
        for figure in &report.figures {
            let _ = writeln!(out, "![{}]({})\n", figure.caption, figure.file);
        }
    }
    let with_metrics: Vec<_> = report
        .sections
        .iter()
        .filter(|s| !s.metrics.is_empty())
        .collect();
    if !with_metrics.is_empty() {
        out.push_str("## Metrics\n\n| input | stage | metric | value |\n|---|---|---|---|\n");
        for section in with_metrics {
            for (metric, value) in &section.metrics {
                let _ = writeln!(
                    out,
                    "| {} | {} | {metric} | {} |",
                    section.name,
                    section.stage,
                    format_metric(*value)
                );
            }
        }
        out.push('\n');
    }
    for section in report
        .sections
        .iter()
        .filter(|s| s.architecture.is_some() || s.kind.starts_with("train"))
    {
        let _ = writeln!(out, "## {} (`{}`)\n", section.name, section.kind);
        let params = hyperparameters(&section.params);
        if !params.is_empty() {
            out.push_str("| hyperparameter | value |\n|---|---|\n");
            for (name, value) in params {
                let _ = writeln!(out, "| {name} | {value} |");
            }
            out.push('\n');
        }
        if let Some(architecture) = &section.architecture {
            let _ = writeln!(out, "```\n{}\n```\n", architecture.trim_end());
        }
    }
    out
}

/// The table under a heading of `level` (2: `##`).
pub fn table_markdown(table: &Table, level: usize) -> String {
    let mut out = String::new();
    if let Some(title) = &table.title {
        let _ = writeln!(out, "{} {title}\n", "#".repeat(level));
    }
    let _ = writeln!(out, "| | {} |", table.columns.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(table.columns.len()));
    for (label, cells) in &table.rows {
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    if let Some(note) = &table.note {
        let _ = writeln!(out, "\n{note}");
    }
    out
}
