//! `[vars]`: named values that stage parameters use as `${name}`, e.g. the data root.
//!
//! A variable's value comes, by precedence, from `--set vars.NAME=...`, the environment variable
//! `HWRUN_<NAME>` (upper-cased), or the recipe. Only whole `${name}` tokens inside strings are
//! replaced; `$$` is not special.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::error::RecipeError;
use super::source::Sources;
use super::span_index::SpanIndex;

/// Replaces `${name}` in every string under `[stages]` and `[sweep]`.
pub fn expand(root: &mut Table, spans: &SpanIndex, sources: &Sources) -> Result<(), RecipeError> {
    let values = resolve(root, spans, sources)?;
    for section in ["stages", "sweep"] {
        if let Some(value) = root.get_mut(section) {
            let mut path = vec![section.to_owned()];
            expand_value(value, &values, &mut path, spans)?;
        }
    }
    Ok(())
}

/// The value of every declared variable, with environment overrides applied.
fn resolve(
    root: &Table,
    spans: &SpanIndex,
    sources: &Sources,
) -> Result<BTreeMap<String, String>, RecipeError> {
    let Some(vars) = root.get("vars") else {
        return Ok(BTreeMap::new());
    };
    let Value::Table(vars) = vars else {
        return Err(RecipeError::ValueTypeWrong {
            key: "vars".to_owned(),
            expected: "a table of strings",
            found: vars.type_str(),
            at: spans.value(&["vars".to_owned()]),
        });
    };
    let mut values = BTreeMap::new();
    for (name, value) in vars {
        let from_recipe = match value {
            Value::String(s) => s.clone(),
            Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => value.to_string(),
            other => {
                return Err(RecipeError::ValueTypeWrong {
                    key: format!("vars.{name}"),
                    expected: "a string or number",
                    found: other.type_str(),
                    at: spans.value(&["vars".to_owned(), name.clone()]),
                })
            }
        };
        let from_env = std::env::var(format!("HWRUN_{}", name.to_uppercase())).ok();
        // An explicit `--set vars.x=` is recorded with a `--set` span and beats the environment.
        let set_on_command_line = spans
            .value(&["vars".to_owned(), name.clone()])
            .is_some_and(|span| sources.get(span.file).name == super::overrides::SOURCE_NAME);
        let value = match from_env {
            Some(env) if !set_on_command_line => env,
            _ => from_recipe,
        };
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn expand_value(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    path: &mut Vec<String>,
    spans: &SpanIndex,
) -> Result<(), RecipeError> {
    match value {
        Value::String(text) if text.contains("${") => {
            *text = substitute(text, vars).map_err(|name| RecipeError::VariableUnknown {
                name,
                known: vars.keys().cloned().collect(),
                at: spans.value(path),
            })?;
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                expand_value(item, vars, path, spans)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                expand_value(item, vars, path, spans)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces each `${name}`; the unknown name is the error.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(vars.get(name).ok_or_else(|| name.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_known_variables() {
        let vars = BTreeMap::from([("root".to_owned(), "hw2_data".to_owned())]);
        assert_eq!(
            substitute("${root}/digits/${root}", &vars).unwrap(),
            "hw2_data/digits/hw2_data"
        );
        assert_eq!(substitute("${nope}", &vars).unwrap_err(), "nope");
    }

    #[test]
    fn expands_inside_stage_tables() {
        let mut root: Table =
            toml::from_str("[vars]\nzz_unset_root = \"d\"\n[stages.a]\nkind = \"x\"\npath = \"${zz_unset_root}/x\"\n")
                .unwrap();
        expand(&mut root, &SpanIndex::default(), &Sources::default()).unwrap();
        assert_eq!(root["stages"]["a"]["path"].as_str(), Some("d/x"));
    }
}
