//! The report as markdown (`report.md`).

use std::fmt::Write;

use super::{format_metric, ReportData, Table};

pub fn render(report: &ReportData) -> String {
    let mut out = format!("# {}\n\n", report.title);
    if let Some(description) = &report.description {
        let _ = writeln!(out, "{description}\n");
    }
    for table in &report.tables {
        out.push_str(&table_markdown(table));
        out.push('\n');
    }
    let with_metrics: Vec<_> = report.sections.iter().filter(|s| !s.metrics.is_empty()).collect();
    if !with_metrics.is_empty() {
        out.push_str("## Metrics\n\n| input | stage | metric | value |\n|---|---|---|---|\n");
        for section in with_metrics {
            for (metric, value) in &section.metrics {
                let _ = writeln!(out, "| {} | {} | {metric} | {} |", section.name, section.stage, format_metric(*value));
            }
        }
    }
    out
}

pub fn table_markdown(table: &Table) -> String {
    let mut out = String::new();
    if let Some(title) = &table.title {
        let _ = writeln!(out, "## {title}\n");
    }
    let _ = writeln!(out, "| | {} |", table.columns.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(table.columns.len()));
    for (label, cells) in &table.rows {
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    out
}
