//! The report as one self-contained `index.html`: tables, the recipe's sections (each a heading,
//! its tables, its figures), the other figures, figures embedded as data URIs, hyperparameters
//! and model architectures. Opens in any browser, also when mailed alone. Long strips are scaled
//! down to fit (the full image is a click on "open image" away in any browser), and the long
//! lists (all metrics, figures no section names) are folded away under `<details>`.

use std::fmt::Write;

use anyhow::Context;
use base64::Engine;
use camino::Utf8Path;

use super::{format_metric, hyperparameters, Figure, ReportData, Table};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .8em;text-align:right}\
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}\
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:520px;max-height:640px;border:1px solid #ddd}\
summary{cursor:pointer;color:#444}\
figcaption{font-size:.9em;color:#555;text-align:center}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}";

/// Renders the page; `report_dir` is where the figures named in `report` are.
pub fn render(report: &ReportData, report_dir: &Utf8Path) -> anyhow::Result<String> {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&report.title),
        escape(&report.title)
    );
    if let Some(description) = &report.description {
        let _ = writeln!(out, "<p>{}</p>", escape(description));
    }
    for table in &report.tables {
        out.push_str(&table_html(table, 2));
    }
    for part in &report.parts {
        let _ = writeln!(out, "<section>\n<h2>{}</h2>", escape(&part.title));
        if let Some(text) = &part.text {
            let _ = writeln!(out, "<p>{}</p>", escape(text));
        }
        for table in &part.tables {
            out.push_str(&table_html(table, 3));
        }
        for figure in &part.figures {
            out.push_str(&figure_html(figure, report_dir)?);
        }
        out.push_str("</section>\n");
    }
    if !report.figures.is_empty() {
        let folded = !report.parts.is_empty();
        if folded {
            let _ = writeln!(
                out,
                "<h2>Other figures</h2>\n<details><summary>{} figures no section shows</summary>",
                report.figures.len()
            );
        } else {
            out.push_str("<h2>Figures</h2>\n");
        }
        for figure in &report.figures {
            out.push_str(&figure_html(figure, report_dir)?);
        }
        if folded {
            out.push_str("</details>\n");
        }
    }
    let with_metrics: Vec<_> = report
        .sections
        .iter()
        .filter(|s| !s.metrics.is_empty())
        .collect();
    if !with_metrics.is_empty() {
        let count: usize = with_metrics.iter().map(|s| s.metrics.len()).sum();
        let _ = writeln!(
            out,
            "<h2>Metrics</h2>\n<details><summary>All {count} metrics of the inputs (per-class accuracies included)</summary>"
        );
        out.push_str("<table><thead><tr><th>input</th><th>stage</th><th>metric</th><th>value</th></tr></thead><tbody>\n");
        for section in with_metrics {
            for (metric, value) in &section.metrics {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&section.name),
                    escape(&section.stage),
                    escape(metric),
                    format_metric(*value)
                );
            }
        }
        out.push_str("</tbody></table>\n</details>\n");
    }
    for section in report
        .sections
        .iter()
        .filter(|s| s.architecture.is_some() || s.kind.starts_with("train"))
    {
        let _ = writeln!(
            out,
            "<h2>{} <small>({})</small></h2>",
            escape(&section.name),
            escape(&section.kind)
        );
        let params = hyperparameters(&section.params);
        if !params.is_empty() {
            out.push_str(
                "<table><thead><tr><th>hyperparameter</th><th>value</th></tr></thead><tbody>\n",
            );
            for (name, value) in params {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    escape(&name),
                    escape(&value)
                );
            }
            out.push_str("</tbody></table>\n");
        }
        if let Some(architecture) = &section.architecture {
            let _ = writeln!(out, "<pre>{}</pre>", escape(architecture.trim_end()));
        }
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// One figure, its PNG embedded.
fn figure_html(figure: &Figure, report_dir: &Utf8Path) -> anyhow::Result<String> {
    let path = report_dir.join(&figure.file);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read figure `{path}`"))?;
    Ok(format!(
        "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>\n",
        escape(&figure.caption),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The table under a heading of `level` (2: `<h2>`).
fn table_html(table: &Table, level: u8) -> String {
    let mut out = String::new();
    if let Some(title) = &table.title {
        let _ = writeln!(out, "<h{level}>{}</h{level}>", escape(title));
    }
    out.push_str("<table><thead><tr><th></th>");
    for column in &table.columns {
        let _ = write!(out, "<th>{}</th>", escape(column));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (label, cells) in &table.rows {
        let _ = write!(out, "<tr><th>{}</th>", escape(label));
        for cell in cells {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if let Some(note) = &table.note {
        let _ = writeln!(out, "<p>{}</p>", escape(note));
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Figure, Section};

    #[test]
    fn embeds_tables_figures_and_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(dir.join("figures")).unwrap();
        std::fs::write(dir.join("figures/a.png"), b"\x89PNG").unwrap();
        let report = ReportData {
            title: "DA <results>".into(),
            description: None,
            tables: vec![Table {
                title: Some("Accuracy".into()),
                note: Some("Mean ± std".into()),
                columns: vec!["MNIST-M -> SVHN".into()],
                rows: vec![("Trained on source".into(), vec!["0.4321".into()])],
            }],
            parts: vec![],
            figures: vec![Figure {
                caption: "curve".into(),
                file: "figures/a.png".into(),
            }],
            sections: vec![Section {
                name: "dann".into(),
                stage: "train_dann".into(),
                kind: "train_dann".into(),
                params: serde_json::json!({"lr": 0.01}),
                metrics: Default::default(),
                figures: vec![Figure {
                    caption: "curve".into(),
                    file: "figures/a.png".into(),
                }],
                architecture: Some("DigitCnn(\n  (conv1): Conv2d\n)".into()),
            }],
        };
        let html = render(&report, dir).unwrap();
        assert!(html.contains("<title>DA &lt;results&gt;</title>"));
        assert!(html.contains("<tr><th>Trained on source</th><td>0.4321</td></tr>"));
        assert!(html.contains("</table>\n<p>Mean ± std</p>"));
        assert!(html.contains("src=\"data:image/png;base64,iVBORw==\""));
        assert!(html.contains("<td>lr</td><td>0.01</td>"));
        assert!(html.contains("(conv1): Conv2d"));
    }
}
