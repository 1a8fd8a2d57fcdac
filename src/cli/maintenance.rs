//! `hwrun gc`, `hwrun fsck` and `hwrun stages`.

use std::collections::HashSet;
use std::fmt::Write;

use super::args::{FsckArgs, GcArgs, GlobalArgs, RecipeArgs};
use super::session::{open_cache, Access, Failure, Session};
use crate::cache::CacheKey;
use crate::error::exit_code;
use crate::output::{OutputMode, Printer};

pub fn gc(global: &GlobalArgs, args: &GcArgs, printer: &Printer) -> Result<i32, Failure> {
    let mut keep = HashSet::new();
    let mut cache = None;
    for recipe in &args.recipes {
        let recipe_args = RecipeArgs {
            recipe: Some(recipe.clone()),
            overrides: Vec::new(),
        };
        let access = if args.dry_run {
            Access::Read
        } else {
            Access::Write
        };
        let session = Session::open(global, &recipe_args, access)?;
        keep.extend(session.plan.graph.node_weights().map(|stage| stage.key));
        cache = Some(session.cache);
    }
    let Some(cache) = cache else {
        return Ok(exit_code::SUCCESS);
    };
    let json = printer.mode() == OutputMode::Json;
    if args.dry_run {
        let doomed: Vec<String> = cache
            .keys()
            .map_err(anyhow::Error::from)?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .map(|k| k.hex())
            .collect();
        if json {
            printer.result(
                &serde_json::json!({ "would_remove": doomed, "keep": keep.len() }).to_string(),
            );
        } else {
            printer.result(&format!(
                "would remove {} entries, keep {}\n{}",
                doomed.len(),
                keep.len(),
                doomed.join("\n")
            ));
        }
        return Ok(exit_code::SUCCESS);
    }
    let report = cache.gc(&keep).map_err(anyhow::Error::from)?;
    if json {
        printer.result(&serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?);
        return Ok(exit_code::SUCCESS);
    }
    let mut out = String::new();
    for (key, holder) in &report.held {
        let _ = writeln!(out, "kept {key}: a running hwrun ({holder}) reads it");
    }
    for key in &report.busy {
        let _ = writeln!(out, "kept {key}: another process holds its lock");
    }
    let _ = write!(
        out,
        "removed {} entries ({:.1} MB), kept {}",
        report.removed,
        report.bytes_freed as f64 / 1e6,
        report.kept + report.busy.len()
    );
    printer.result(&out);
    Ok(exit_code::SUCCESS)
}

pub fn fsck(global: &GlobalArgs, args: &FsckArgs, printer: &Printer) -> Result<i32, Failure> {
    let cache = open_cache(
        global,
        if args.repair {
            Access::Write
        } else {
            Access::Read
        },
    )?;
    let entries = cache.keys().map_err(anyhow::Error::from)?.len();
    let problems = cache.fsck().map_err(anyhow::Error::from)?;
    let mut rows = Vec::new();
    for problem in &problems {
        let quarantined = match (args.repair, CacheKey::from_hex(&problem.key)) {
            (true, Some(key))
                if !rows
                    .iter()
                    .any(|r: &serde_json::Value| r["key"] == problem.key.as_str()) =>
            {
                cache
                    .repair(&key)
                    .map_err(anyhow::Error::from)?
                    .map(|p| p.to_string())
            }
            _ => None,
        };
        rows.push(serde_json::json!({ "key": problem.key, "problem": problem.problem, "quarantined": quarantined }));
    }
    let code = if problems.is_empty() || args.repair {
        exit_code::SUCCESS
    } else {
        exit_code::STAGE_FAILED
    };
    if printer.mode() == OutputMode::Json {
        printer.result(&serde_json::json!({ "entries": entries, "problems": rows }).to_string());
        return Ok(code);
    }
    if problems.is_empty() {
        printer.result(&format!("{entries} entries verified, no problems"));
        return Ok(code);
    }
    let mut out = String::new();
    for row in &rows {
        let _ = writeln!(
            out,
            "corrupted {}: {}",
            row["key"].as_str().unwrap_or_default(),
            row["problem"].as_str().unwrap_or_default()
        );
        if let Some(moved) = row["quarantined"].as_str() {
            let _ = writeln!(out, "  moved to {moved}");
        }
    }
    if args.repair {
        let _ = write!(out, "{} problems in {entries} entries; the corrupt entries were quarantined and the next run redoes them", problems.len());
    } else {
        let _ = write!(
            out,
            "{} problems in {entries} entries; the next run quarantines and redoes them, or `hwrun fsck --repair` quarantines them now",
            problems.len()
        );
    }
    printer.result(&out);
    Ok(code)
}

pub fn stages(kind: Option<&str>, printer: &Printer) -> Result<i32, Failure> {
    let json = printer.mode() == OutputMode::Json;
    let Some(name) = kind else {
        if json {
            let kinds: Vec<serde_json::Value> = crate::stages::registry()
                .iter()
                .map(|kind| serde_json::json!({ "kind": kind.kind(), "version": kind.version(), "about": kind.about() }))
                .collect();
            printer.result(&serde_json::to_string_pretty(&kinds).map_err(anyhow::Error::from)?);
            return Ok(exit_code::SUCCESS);
        }
        let mut out = String::new();
        for kind in crate::stages::registry() {
            let _ = writeln!(
                out,
                "{:<18} v{:<3} {}",
                kind.kind(),
                kind.version(),
                kind.about()
            );
        }
        let _ = write!(out, "`hwrun stages KIND` documents one kind");
        printer.result(&out);
        return Ok(exit_code::SUCCESS);
    };
    let Some(kind) = crate::stages::find(name) else {
        let suggestion =
            crate::recipe::error::suggest(name, crate::stages::registry().iter().map(|k| k.kind()));
        let help = suggestion
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(Failure::Input(anyhow::anyhow!(
            "unknown stage kind `{name}`{help} (`hwrun stages` lists them)"
        )));
    };
    if json {
        let doc = serde_json::json!({
            "kind": kind.kind(),
            "version": kind.version(),
            "about": kind.about(),
            "params": kind.params(),
            "example": kind.example(),
        });
        printer.result(&serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?);
        return Ok(exit_code::SUCCESS);
    }
    printer.result(&describe_kind(kind));
    Ok(exit_code::SUCCESS)
}

/// `hwrun stages KIND`: what the kind does, its inputs, its parameters and an example.
fn describe_kind(kind: &dyn crate::stage::StageKind) -> String {
    use crate::stage::Inputs;
    let mut out = format!(
        "{} (version {})\n  {}\n\nInputs:\n",
        kind.kind(),
        kind.version(),
        kind.about()
    );
    match kind.inputs() {
        Inputs::Named([]) => out.push_str("  none\n"),
        Inputs::Named(specs) => {
            for spec in specs {
                let need = if spec.required {
                    "required"
                } else {
                    "optional"
                };
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
