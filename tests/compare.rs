//! `hwrun compare` on a two-value sweep: the swept parameter, only the metrics that differ
//! (unless `--all` or `--metric`), the best variant marked by the metric's direction.

use crate::common;

use common::project::Project;

const SWEEP: &str = r#"
name = "two"
[stages.data]
kind = "command"
shell = "echo '{{\"n_images\": 100}}' > {out}/metrics.json"
[stages.train]
kind = "command"
inputs = { data = "data" }
shell = "echo \"{{\\\"accuracy\\\": $ACC, \\\"val_loss\\\": $LOSS, \\\"class_3_accuracy\\\": 0.5, \\\"lr\\\": $LR}}\" > {out}/metrics.json"
env = { ACC = "0.5", LOSS = "1.0", LR = "0.1" }
[sweep]
mode = "zip"
"train.env.LR" = ["0.001", "0.01"]
"train.env.ACC" = ["0.81", "0.93"]
"train.env.LOSS" = ["0.4", "0.6"]
"#;

fn compare(project: &Project, recipe: &str, args: &[&str]) -> String {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    all.push(recipe);
    let output = project.hwrun(&all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn compare_shows_what_differs_and_marks_the_best() {
    let project = Project::new();
    let recipe = project.write("two.toml", SWEEP);
    let recipe = recipe.to_str().unwrap();
    project.run_json_ok(&[recipe]);

    let md = compare(&project, recipe, &["--md"]);
    let header = md.lines().next().unwrap();
    assert_eq!(header, "| train.env.ACC | train.env.LOSS | train.env.LR | train.accuracy | train.lr | train.val_loss |", "{md}");
    // Higher accuracy is better, lower loss; `lr` has no direction.
    assert!(
        md.contains("| 0.81 | 0.4 | 0.001 | 0.8100 | 0.0010 | **0.4000** |"),
        "{md}"
    );
    assert!(
        md.contains("| 0.93 | 0.6 | 0.01 | **0.9300** | 0.0100 | 0.6000 |"),
        "{md}"
    );
    assert!(
        !md.contains("class_3") && !md.contains("n_images"),
        "metrics equal in both variants are hidden: {md}"
    );

    let text = compare(&project, recipe, &[]);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with("train.env.ACC  train.env.LOSS  train.env.LR"),
        "{text}"
    );
    assert!(text.contains("0.9300 *"), "{text}");

    let all = compare(&project, recipe, &["--all", "--csv"]);
    assert!(all.starts_with("train.env.ACC,train.env.LOSS,train.env.LR,data.n_images,train.accuracy,train.class_3_accuracy,train.lr,train.val_loss\n"), "{all}");
    assert_eq!(all.lines().count(), 3);

    let chosen = compare(&project, recipe, &["--csv", "--metric", "*accuracy"]);
    assert!(
        chosen.starts_with(
            "train.env.ACC,train.env.LOSS,train.env.LR,train.accuracy,train.class_3_accuracy\n"
        ),
        "{chosen}"
    );
    let substring = compare(&project, recipe, &["--csv", "--metric", "loss"]);
    assert!(
        substring.starts_with("train.env.ACC,train.env.LOSS,train.env.LR,train.val_loss\n"),
        "{substring}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&compare(&project, recipe, &["--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[1]["train.accuracy"], 0.93);
}
