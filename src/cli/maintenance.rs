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

pub fn stages(kind: Option<&str>, printer: &Printer) -> Result<i32, Failure> {
    let Some(name) = kind else {
        let mut out = String::new();
        for kind in crate::stages::registry() {
            let _ = writeln!(out, "{:<18} v{:<3} {}", kind.kind(), kind.version(), kind.about());
        }
        let _ = write!(out, "`hwrun stages KIND` documents one kind");
        printer.result(&out);
        return Ok(exit_code::SUCCESS);
    };
    let Some(kind) = crate::stages::find(name) else {
        let suggestion = crate::recipe::error::suggest(name, crate::stages::registry().iter().map(|k| k.kind()));
        let help = suggestion.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
        return Err(Failure::Input(anyhow::anyhow!("unknown stage kind `{name}`{help} (`hwrun stages` lists them)")));
    };
    printer.result(&describe_kind(kind));
    Ok(exit_code::SUCCESS)
}

/// `hwrun stages KIND`: what the kind does, its inputs, its parameters and an example.
fn describe_kind(kind: &dyn crate::stage::StageKind) -> String {
    use crate::stage::Inputs;
    let mut out = format!("{} (version {})\n  {}\n\nInputs:\n", kind.kind(), kind.version(), kind.about());
    match kind.inputs() {
        Inputs::Named([]) => out.push_str("  none\n"),
        Inputs::Named(specs) => {
            for spec in specs {
                let need = if spec.required { "required" } else { "optional" };
                let _ = writeln!(out, "  {:<14} {need:<9} {}", spec.name, spec.about);
            }
        }
        Inputs::Any(about) => {
            let _ = writeln!(out, "  {about}");
        }
    }
    out.push_str("\nParameters:\n");
    for param in kind.params() {
        let default = match &param.default {
            Some(value) => format!(" = {value}"),
            None => " (required)".to_owned(),
        };
        let _ = writeln!(out, "  {}: {}{default}", param.name, param.kind);
        if !param.doc.is_empty() {
            let _ = writeln!(out, "      {}", param.doc);
        }
    }
    let _ = write!(out, "\nExample:\n{}", kind.example());
    out
}
