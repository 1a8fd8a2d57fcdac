//! Gathers what a report shows from its inputs' output directories: metrics, the figures each
//! input declared in its outcome,
//! training curves (`history.json`, drawn here), model architectures (`architecture.txt`) and
//! hyperparameters. Figures are copied into the report's `figures/` folder so `report.md` works
//! on its own. The recipe's sections then take their tables and the figures of the inputs they
//! name, in their order; the figures no section names are left for the end.

use std::collections::BTreeMap;

use anyhow::Context;
use camino::Utf8Path;
use serde::Deserialize;

use super::{fill_table, Figure, Part, ReportData, Section, SectionSpec, TableSpec};
use crate::stage::{split_seed_input_name, InputArtifact};
use crate::viz::{curves_png, CurvesPlot, Series};

/// Where figures go inside the report directory.
pub const FIGURES_DIR: &str = "figures";
const CURVE_SIZE: (u32, u32) = (720, 480);

/// `history.json` as the training stages write it: one object of numbers per epoch.
#[derive(Deserialize)]
struct History {
    epochs: Vec<BTreeMap<String, f64>>,
}

/// Builds the report data and writes its figures under `out_dir/figures`.
pub fn collect(
    title: String,
    description: Option<String>,
    (table_specs, section_specs): (&[TableSpec], &[SectionSpec]),
    inputs: &BTreeMap<String, InputArtifact>,
    out_dir: &Utf8Path,
) -> anyhow::Result<ReportData> {
    let figures_dir = out_dir.join(FIGURES_DIR);
    std::fs::create_dir_all(&figures_dir)
        .with_context(|| format!("cannot create `{figures_dir}`"))?;
    let mut sections = Vec::with_capacity(inputs.len());
    for (name, input) in inputs {
        let mut figures = copy_figures(name, input, out_dir)?;
        figures.extend(draw_curves(name, &input.dir, out_dir)?);
        let architecture_path = input.dir.join("architecture.txt");
        let architecture = architecture_path
            .exists()
            .then(|| std::fs::read_to_string(&architecture_path))
            .transpose()?;
        sections.push(Section {
            name: name.clone(),
            stage: input.stage.clone(),
            kind: input.kind.clone(),
            params: input.params.clone(),
            metrics: input.outcome.metrics.clone(),
            figures,
            architecture,
        });
    }
    let metrics_of: BTreeMap<_, _> = sections
        .iter()
        .map(|s| (s.name.clone(), s.metrics.clone()))
        .collect();
    let fill = |specs: &[TableSpec]| -> anyhow::Result<Vec<_>> {
        let mut tables = Vec::with_capacity(specs.len());
        for spec in specs {
            tables.extend(
                fill_table(spec, &metrics_of)
                    .map_err(anyhow::Error::msg)
                    .context("cannot fill the report's tables")?,
            );
        }
        Ok(tables)
    };
    let tables = fill(table_specs)?;
    let mut placed = std::collections::BTreeSet::new();
    let mut parts = Vec::with_capacity(section_specs.len());
    for spec in section_specs {
        let mut figures = Vec::new();
        for wanted in &spec.figures {
            // In a seed sweep the recipe's `tsne` is the report's `tsne[seed=0]`, `tsne[seed=1]`...
            let named: Vec<&Section> = sections
                .iter()
                .filter(|s| {
                    s.name == *wanted
                        || split_seed_input_name(&s.name).is_some_and(|(b, _)| b == wanted)
                })
                .collect();
            if named.is_empty() {
                anyhow::bail!(
                    "section `{}` shows the figures of `{wanted}`, which is no input of the report",
                    spec.title
                );
            }
            for section in named {
                placed.insert(section.name.as_str());
                figures.extend(section.figures.iter().cloned());
            }
        }
        parts.push(Part {
            title: spec.title.clone(),
            text: spec.text.clone(),
            tables: fill(&spec.tables)?,
            figures,
        });
    }
    let figures = sections
        .iter()
        .filter(|s| !placed.contains(s.name.as_str()))
        .flat_map(|s| s.figures.iter().cloned())
        .collect();
    Ok(ReportData {
        title,
        description,
        tables,
        parts,
        figures,
        sections,
    })
}

/// Copies the figures an input declared in its outcome.
fn copy_figures(
    name: &str,
    input: &InputArtifact,
    out_dir: &Utf8Path,
) -> anyhow::Result<Vec<Figure>> {
    input
        .outcome
        .figures
        .iter()
        .map(|figure| {
            let source = input.dir.join(&figure.file);
            // `progress/strip.png` -> `<name>-progress_strip.png`: unique within the report.
            let flat = figure.file.replace(['/', '\\'], "_");
            let file = format!("{FIGURES_DIR}/{}-{flat}", file_stem(name));
            std::fs::copy(&source, out_dir.join(&file))
                .with_context(|| format!("cannot copy `{source}`"))?;
            Ok(Figure {
                caption: format!("{name}: {}", figure.caption),
                file,
            })
        })
        .collect()
}

/// Plots the losses and the accuracies of an input's `history.json`, if it has one.
fn draw_curves(name: &str, dir: &Utf8Path, out_dir: &Utf8Path) -> anyhow::Result<Vec<Figure>> {
    let path = dir.join("history.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let history: History = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("`{path}` is not a training history"))?;
    let mut figures = Vec::new();
    for (what, matches) in [
        ("loss", is_loss as fn(&str) -> bool),
        ("accuracy", is_accuracy),
    ] {
        let names: Vec<&String> = history
            .epochs
            .iter()
            .flat_map(|epoch| epoch.keys())
            .filter(|key| matches(key))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if names.is_empty() {
            continue;
        }
        let values: Vec<Vec<f64>> = names
            .iter()
            .map(|key| {
                history
                    .epochs
                    .iter()
                    .map(|e| e.get(*key).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let series: Vec<Series> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| Series { name: n, values: v })
            .collect();
        let file = format!("{FIGURES_DIR}/{}-{what}.png", file_stem(name));
        let title = format!("{name}: {what}");
        let plot = CurvesPlot {
            title: &title,
            x_label: "epoch",
            y_label: what,
            series: &series,
        };
        curves_png(&out_dir.join(&file), &plot, CURVE_SIZE)?;
        figures.push(Figure {
            caption: format!("{name}: training {what}"),
            file,
        });
    }
    Ok(figures)
}

/// An input name as a file name that markdown links take as is: `eval[seed=1]` -> `eval_seed_1`.
fn file_stem(name: &str) -> String {
    name.chars()
        .filter(|c| *c != ']')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn is_loss(key: &str) -> bool {
    key.ends_with("loss")
}

fn is_accuracy(key: &str) -> bool {
    key.ends_with("acc") || key.ends_with("accuracy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_of_seed_inputs_are_plain_file_names() {
        assert_eq!(file_stem("dann_on_usps[seed=12]"), "dann_on_usps_seed_12");
        assert_eq!(file_stem("tsne-svhn_2"), "tsne-svhn_2");
    }
}
