//! `hwrun gc`, `hwrun fsck` and `hwrun stages`.

use std::collections::HashSet;
use std::fmt::Write;

use super::args::{GcArgs, GlobalArgs, RecipeArgs};
use super::session::{Failure, Session};
use crate::error::exit_code;
use crate::output::Printer;

pub fn gc(global: &GlobalArgs, args: &GcArgs, printer: &Printer) -> Result<i32, Failure> {
    let mut keep = HashSet::new();
    let mut cache = None;
    for recipe in &args.recipes {
        let recipe_args = RecipeArgs { recipe: Some(recipe.clone()), overrides: Vec::new() };
        let session = Session::open(global, &recipe_args)?;
        keep.extend(session.plan.graph.node_weights().map(|stage| stage.key));
        cache = Some(session.cache);
    }
    let Some(cache) = cache else { return Ok(exit_code::SUCCESS) };
    if args.dry_run {
        let doomed: Vec<String> = cache
            .keys()
            .map_err(anyhow::Error::from)?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .map(|k| k.hex())
            .collect();
        printer.result(&format!("would remove {} entries, keep {}\n{}", doomed.len(), keep.len(), doomed.join("\n")));
        return Ok(exit_code::SUCCESS);
    }
    let report = cache.gc(&keep).map_err(anyhow::Error::from)?;
    printer.result(&format!(
        "removed {} entries ({:.1} MB), kept {}",
        report.removed,
        report.bytes_freed as f64 / 1e6,
        report.kept
    ));
    Ok(exit_code::SUCCESS)
}

pub fn fsck(global: &GlobalArgs, printer: &Printer) -> Result<i32, Failure> {
    let cache = super::session::open_cache(global)?;
    let entries = cache.keys().map_err(anyhow::Error::from)?.len();
    let problems = cache.fsck().map_err(anyhow::Error::from)?;
    if problems.is_empty() {
        printer.result(&format!("{entries} entries verified, no problems"));
        return Ok(exit_code::SUCCESS);
    }
    let mut out = String::new();
    for problem in &problems {
        let _ = writeln!(out, "corrupted {}: {}", problem.key, problem.problem);
    }
    let _ = write!(out, "{} problems in {entries} entries; `hwrun gc` or deleting the entry makes the next run redo it", problems.len());
    printer.result(&out);
    Ok(exit_code::STAGE_FAILED)
}

pub fn stages(printer: &Printer) -> Result<i32, Failure> {
    let mut out = String::new();
    for kind in crate::stages::registry() {
        let _ = writeln!(out, "{:<18} v{:<3} {}", kind.kind(), kind.version(), kind.about());
    }
    printer.result(&out);
    Ok(exit_code::SUCCESS)
}
