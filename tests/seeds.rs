//! A seed sweep end to end: `recipes/p3_seeds.toml` (the quickstart's domain-adaptation pipeline
//! over `[sweep] seed = [0, 1, 2]`) shrunk to a few hundred images and one epoch. Every stage runs
//! once per seed and the report once; its cells must be the mean ± sample standard deviation of
//! the per-seed accuracies that `hwrun compare --per-seed` reads from the evaluate stages, its
//! per-seed table must list them, and `hwrun compare` must show the same mean ± std.

use crate::common;

use std::path::Path;

use common::project::{stage, Project};
use serde_json::Value;

const TINY: &[&str] = &[
    "--set",
    "defaults.synthetic.n_train=128",
    "--set",
    "defaults.synthetic.n_val=60",
    "--set",
    "defaults.train_classifier.epochs=1",
    "--set",
    "defaults.train_dann.epochs=1",
];

/// The (row, column) cells of the report table and the evaluate stage behind each.
const CELLS: &[(&str, usize, &str)] = &[
    ("Trained on source", 0, "source_only_on_svhn"),
    ("Trained on source", 1, "source_only_on_usps"),
    ("Adaptation (DANN)", 0, "dann_on_svhn"),
    ("Adaptation (DANN)", 1, "dann_on_usps"),
    ("Trained on target", 0, "target_on_svhn"),
    ("Trained on target", 1, "target_on_usps"),
];

fn with_tiny<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend_from_slice(TINY);
    all
}

fn compare_json(project: &Project, recipe: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "compare", "--metric", "accuracy"];
    args.extend_from_slice(extra);
    args.push(recipe);
    let output = project.hwrun(&with_tiny(&args));
    assert!(
        output.status.success(),
        "{}",
        common::project::stderr(&output)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The cells of the markdown table row labelled `label` after the heading `title`.
fn row<'a>(report: &'a str, title: &str, label: &str) -> Vec<&'a str> {
    let table = &report[report
        .find(&format!("## {title}\n"))
        .unwrap_or_else(|| panic!("no table `{title}` in\n{report}"))..];
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no row `{label}` under `{title}` in\n{report}"));
    line.trim_matches('|')
        .split('|')
        .skip(1)
        .map(str::trim)
        .collect()
}

fn mean_and_sample_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `0.7412 ± 0.0123` as numbers.
fn parse_spread(cell: &str) -> (f64, f64) {
    let (mean, std) = cell
        .split_once(" ± ")
        .unwrap_or_else(|| panic!("`{cell}` is not `mean ± std`"));
    (mean.parse().unwrap(), std.parse().unwrap())
}

#[test]
fn a_seed_sweep_reports_mean_and_std_over_its_seeds() {
    let project = Project::new();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/p3_seeds.toml");
    let recipe = recipe.to_str().unwrap();
    let summary = project.run_json_ok(&with_tiny(&[recipe]));

    for seed in 0..3 {
        assert_eq!(
            stage(&summary, &format!("dann_usps[seed={seed}]"))["result"],
            "ran"
        );
    }
    let reports: Vec<&Value> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("report"))
        .collect();
    assert_eq!(reports.len(), 1, "one report for the three seeds");
    assert_eq!(reports[0]["name"], "report");

    // The per-seed accuracies, as the evaluate stages recorded them.
    let per_seed = compare_json(&project, recipe, &["--per-seed"]);
    let seeds: Vec<i64> = per_seed
        .iter()
        .map(|r| r["seed"].as_i64().unwrap())
        .collect();
    assert_eq!(seeds, [0, 1, 2]);
    let accuracies = |evaluate: &str| -> Vec<f64> {
        per_seed
            .iter()
            .map(|r| {
                r[format!("{evaluate}.accuracy")]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no {evaluate}.accuracy in {r}"))
            })
            .collect()
    };

    let report =
        std::fs::read_to_string(project.path().join("results/p3_seeds/report/report.md")).unwrap();
    let title = "Accuracy on the target domain's validation set";
    assert!(
        report
            .contains("mean ± sample standard deviation (divided by n − 1) over 3 seeds (0, 1, 2)"),
        "{report}"
    );
    let over_seeds = compare_json(&project, recipe, &[]);
    assert_eq!(over_seeds.len(), 1, "one group: only the seed is swept");
    assert_eq!(over_seeds[0]["seed"], serde_json::json!([0, 1, 2]));
    let mut spread_seen = false;
    for &(label, column, evaluate) in CELLS {
        let values = accuracies(evaluate);
        let (mean, std) = mean_and_sample_std(&values);
        let (shown_mean, shown_std) = parse_spread(row(&report, title, label)[column]);
        // Four decimals shown: within half a unit of the last one.
        assert!(
            (shown_mean - mean).abs() <= 5.01e-5 && (shown_std - std).abs() <= 5.01e-5,
            "{evaluate}: report says {shown_mean} ± {shown_std}, the seeds {values:?} give {mean} ± {std}"
        );
        for (seed, value) in values.iter().enumerate() {
            let shown = row(
                &report,
                &format!("{title}, per seed"),
                &format!("{label}, seed {seed}"),
            )[column];
            assert_eq!(shown, format!("{value:.4}"), "{evaluate} seed {seed}");
        }
        let summarised = &over_seeds[0][format!("{evaluate}.accuracy")];
        assert!((summarised["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!((summarised["std"].as_f64().unwrap() - std).abs() < 1e-12);
        assert_eq!(summarised["n"], 3);
        spread_seen |= std > 0.0;
    }
    assert!(
        spread_seen,
        "the seeds gave identical accuracies everywhere"
    );

    // The per-seed evaluate sections are in the report too.
    assert!(report.contains("| dann_on_usps[seed=2] |"), "{report}");
}
