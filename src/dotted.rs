//! Nested parameters as dotted paths to their leaves (`optimizer.lr`): the form in which `hwrun
//! status` says which parameter changed and the report tables list a stage's hyperparameters.

use serde_json::Value;

/// Every leaf of `value` with its dotted path, in key order. An empty object is a leaf of its own,
/// so that `{}` and an absent table differ; a `value` that is not an object is one leaf with the
/// empty path.
pub fn leaves(value: &Value) -> Vec<(String, &Value)> {
    fn walk<'v>(prefix: &str, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, item) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, item, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_objects_become_dotted_paths() {
        let value = serde_json::json!({"lr": 0.001, "opt": {"name": "sgd", "extra": {}}});
        let leaves: Vec<(String, String)> = leaves(&value)
            .into_iter()
            .map(|(path, leaf)| (path, leaf.to_string()))
            .collect();
        assert_eq!(
            leaves,
            [
                ("lr".to_owned(), "0.001".to_owned()),
                ("opt.extra".to_owned(), "{}".to_owned()),
                ("opt.name".to_owned(), "\"sgd\"".to_owned()),
            ]
        );
    }
}
