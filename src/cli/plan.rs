//! `hwrun plan` and `hwrun dag`: what would run and why, without running anything.

use std::fmt::Write;

use serde::Serialize;

use super::args::{DagArgs, GlobalArgs, RecipeArgs};
use super::session::{Access, Failure, Session};
use crate::error::exit_code;
use crate::graph::{render, Status};
use crate::output::{OutputMode, Printer};

/// One row of `hwrun plan --json`.
#[derive(Serialize)]
struct PlanRow<'a> {
    name: &'a str,
    kind: &'a str,
    key: String,
    status: Status,
    reasons: &'a [String],
    variants: Vec<&'a str>,
}

pub fn plan(global: &GlobalArgs, args: &RecipeArgs, printer: &Printer) -> Result<i32, Failure> {
    let session = Session::open(global, args, Access::Read)?;
    let plan = &session.plan;
    let mut variants_of: Vec<Vec<&str>> = vec![Vec::new(); plan.graph.node_count()];
    for variant in plan.variants.iter().filter(|v| !v.label.is_empty()) {
        for node in &variant.nodes {
            let labels = &mut variants_of[node.index()];
            if labels.last() != Some(&variant.label.as_str()) {
                labels.push(variant.label.as_str());
            }
        }
    }
    let rows: Vec<PlanRow> = plan
        .topological()
        .into_iter()
        .map(|node| {
            let stage = &plan.graph[node];
            let status = &session.statuses[node.index()];
            PlanRow {
                name: &stage.label,
                kind: stage.kind.kind(),
                key: stage.key.hex(),
                status: status.status,
                reasons: &status.reasons,
                variants: std::mem::take(&mut variants_of[node.index()]),
            }
        })
        .collect();
    if printer.mode() == OutputMode::Json {
        printer.result(&serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?);
        return Ok(exit_code::SUCCESS);
    }
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:<16} {:<12}  {:<6}  why\n",
        "stage", "kind", "key", "status"
    );
    for row in &rows {
        let status = match row.status {
            Status::Cached => "cached",
            Status::Run => "run",
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<16} {:<12}  {:<6}  {}",
            row.name,
            row.kind,
            &row.key[..12],
            status,
            row.reasons.join("; ")
        );
    }
    let to_run = rows.iter().filter(|r| r.status == Status::Run).count();
    let _ = write!(
        out,
        "\n{} stages ({} variants): {} cached, {} to run",
        rows.len(),
        plan.variants.len(),
        rows.len() - to_run,
        to_run
    );
    printer.result(&out);
    Ok(exit_code::SUCCESS)
}

pub fn dag(global: &GlobalArgs, args: &DagArgs, printer: &Printer) -> Result<i32, Failure> {
    let session = Session::open(global, &args.recipe, Access::Read)?;
    if printer.mode() == OutputMode::Json {
        printer.result(
            &serde_json::to_string_pretty(&render::json(&session.plan, &session.statuses))
                .map_err(anyhow::Error::from)?,
        );
        return Ok(exit_code::SUCCESS);
    }
    let text = if args.mermaid {
        render::mermaid(&session.plan, &session.statuses)
    } else {
        render::dot(&session.plan, &session.statuses)
    };
    printer.result(&text);
    Ok(exit_code::SUCCESS)
}
