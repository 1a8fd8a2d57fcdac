//! Every stage kind declares its inputs and checks its parameters at plan time: a misspelt input
//! or an out-of-range value is an error at its recipe line (exit 2, nothing runs), `hwrun stages
//! KIND` documents a kind, and every kind's example recipe plans.

use crate::common;

use common::project::{stderr, Project};

fn plan_error(text: &str) -> String {
    let project = Project::new();
    let recipe = project.write("r.toml", text);
    let output = project.hwrun(&["plan", recipe.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(!project.cache().exists(), "a rejected plan writes nothing");
    stderr(&output)
}

const DATA: &str = "name = \"r\"\n[stages.d]\nkind = \"synthetic\"\ndomain = \"mnistm\"\nn_train = 50\nn_val = 20\n";

#[test]
fn a_misspelt_input_name_is_refused_with_a_suggestion() {
    let text = format!("{DATA}[stages.t]\nkind = \"train_classifier\"\ninputs = {{ train = \"d.train\", vall = \"d.val\" }}\n");
    let error = plan_error(&text);
    assert!(
        error.contains("unknown key `vall`") && error.contains("did you mean `val`?"),
        "{error}"
    );
    assert!(
        error.contains("r.toml:9:31"),
        "points at the input: {error}"
    );
}

#[test]
fn out_of_range_values_fail_at_their_line() {
    let text = format!("{DATA}[stages.t]\nkind = \"train_classifier\"\ninputs = {{ train = \"d.train\" }}\n\n[stages.t.optimizer]\nlr = -1\n");
    let error = plan_error(&text);
    assert!(
        error.contains("`optimizer.lr` must be a finite number > 0"),
        "{error}"
    );
    assert!(error.contains("r.toml:12:"), "points at `lr = -1`: {error}");
    for (bad, key) in [
        ("epochs = 0", "epochs"),
        ("batch_size = 0", "batch_size"),
        ("model = { image_size = 4 }", "model.image_size"),
    ] {
        let text = format!("{DATA}[stages.t]\nkind = \"train_classifier\"\ninputs = {{ train = \"d.train\" }}\n{bad}\n");
        let error = plan_error(&text);
        assert!(
            error.contains(&format!("`{key}` must be")),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_misspelt_optimizer_key_is_reported_at_its_line() {
    let text = format!("{DATA}[stages.t]\nkind = \"train_dann\"\ninputs = {{ source = \"d.train\", target = \"d.train\" }}\n[stages.t.optimizer]\nkind = \"adam\"\nbeta = [0.5, 0.9]\n");
    let error = plan_error(&text);
    assert!(
        error.contains("unknown field `beta`") && error.contains("r.toml:12:"),
        "{error}"
    );
}

#[test]
fn stages_kind_documents_parameters_inputs_and_an_example() {
    let project = Project::new();
    let output = project.hwrun(&["stages", "train_dann"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "source",
        "required",
        "optimizer.lr: number = 0.01",
        "optimizer.kind",
        "lambda_gamma",
        "Example:",
        "[stages.dann.optimizer]",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let output = project.hwrun(&["stages", "train_dan"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("did you mean `train_dann`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_kinds_example_plans() {
    let project = Project::new();
    let output = project.hwrun(&["stages"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let listing = String::from_utf8_lossy(&output.stdout).into_owned();
    let kinds: Vec<String> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    assert!(kinds.len() >= 12, "{listing}");
    for kind in kinds {
        let doc = String::from_utf8_lossy(&project.hwrun(&["stages", &kind]).stdout).into_owned();
        let example = doc
            .split("Example:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{kind} has no example:\n{doc}"));
        let recipe = project.write(&format!("{kind}.toml"), example);
        let output = project.hwrun(&["plan", recipe.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "the example of `{kind}` does not plan:\n{}\n{example}",
            stderr(&output)
        );
    }
}
