//! `hwrun net FILE --input 3x64x64`: a network given as PyTorch's printout (or a TOML
//! `[network]` table) described the way PyTorch would: its `print(model)` text, parameter count,
//! every `state_dict` entry with its shape, and the output shape for an input shape.
//!
//! All of it is arithmetic over [`crate::network`]'s tree, so this command, like `plan`, never
//! loads libtorch.

use anyhow::Context;

use super::args::NetArgs;
use super::session::Failure;
use crate::error::exit_code;
use crate::models::summary::architecture_text;
use crate::network::shape::{infer, Shapes};
use crate::network::{printout, toml_form, Described, NetworkError};
use crate::output::{OutputMode, Printer};

pub fn net(args: &NetArgs, printer: &Printer) -> Result<i32, Failure> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the network `{}`", args.file))?;
    let located = |error: NetworkError| Failure::Network {
        error,
        source_name: args.file.to_string(),
        text: text.clone(),
    };
    let described = if args.file.extension() == Some("toml") {
        toml_form::parse(&text)
    } else {
        printout::parse(&text)
    }
    .map_err(located)?;
    let shapes = args
        .input
        .as_ref()
        .map(|input| infer(&described.network, &input.0, &described.locations))
        .transpose()
        .map_err(located)?;
    let text = match printer.mode() {
        OutputMode::Json => json(&described, shapes.as_ref()).to_string(),
        _ => human(&described, shapes.as_ref()),
    };
    printer.result(&text);
    Ok(exit_code::SUCCESS)
}

/// `{"params": N, "state_dict": {"name": [shape...]}, "output": [shape...]}` (`output` is null
/// without `--input`).
fn json(described: &Described, shapes: Option<&Shapes>) -> serde_json::Value {
    let state_dict: serde_json::Map<String, serde_json::Value> = described
        .network
        .state_dict()
        .into_iter()
        .map(|entry| (entry.name, serde_json::json!(entry.shape)))
        .collect();
    serde_json::json!({
        "params": described.network.parameter_count(),
        "state_dict": state_dict,
        "output": shapes.map(|shapes| &shapes.output),
    })
}

fn human(described: &Described, shapes: Option<&Shapes>) -> String {
    let network = &described.network;
    let mut out = architecture_text(&network.tree(), network.parameter_count());
    out.push_str("\nstate_dict:\n");
    let entries = network.state_dict();
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for entry in &entries {
        let kind = if entry.parameter { "" } else { "  (buffer)" };
        out.push_str(&format!(
            "  {:width$}  {:?}{kind}\n",
            entry.name, entry.shape
        ));
    }
    if let Some(shapes) = shapes {
        for reshape in &shapes.reshapes {
            out.push_str(&format!(
                "\nnote: `{}` reads its {:?} input as {:?} (a reshape in the forward code, not in the printout)",
                reshape.path, reshape.from, reshape.to
            ));
        }
        out.push_str(&format!("\noutput: {:?}\n", shapes.output));
    }
    out
}
