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

/// The most bytes the expanded strings of a recipe may take in all: a 1 MB variable used 3,000
/// times would otherwise expand to 3 GB before anything could say so.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;

/// Replaces `${name}` in every string under `[stages]` and `[sweep]`.
pub fn expand(root: &mut Table, spans: &SpanIndex, sources: &Sources) -> Result<(), RecipeError> {
    let values = resolve(root, spans, sources)?;
    let mut budget = MAX_EXPANDED_BYTES;
    for section in ["stages", "sweep"] {
        if let Some(value) = root.get_mut(section) {
            let mut path = vec![section.to_owned()];
            expand_value(value, &values, &mut path, spans, &mut budget)?;
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
    budget: &mut usize,
) -> Result<(), RecipeError> {
    match value {
        Value::String(text) if text.contains("${") => {
            *text = substitute(text, vars, budget).map_err(|problem| match problem {
                Substitution::Unknown(name) => RecipeError::VariableUnknown {
                    name,
                    known: vars.keys().cloned().collect(),
                    at: spans.value(path),
                },
                Substitution::TooLong(name) => RecipeError::VariablesTooLong {
                    name,
                    limit_mib: MAX_EXPANDED_BYTES >> 20,
                    at: spans.value(path),
                },
            })?;
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                expand_value(item, vars, path, spans, budget)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                expand_value(item, vars, path, spans, budget)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why a `${name}` could not be replaced; each names the variable.
#[derive(Debug, PartialEq)]
enum Substitution {
    Unknown(String),
    /// Its value would take the expanded text past the recipe's budget.
    TooLong(String),
}

/// Replaces each `${name}`, each value charged to `budget` (bytes left).
fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    budget: &mut usize,
) -> Result<String, Substitution> {
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
        let value = vars
            .get(name)
            .ok_or_else(|| Substitution::Unknown(name.to_owned()))?;
        *budget = budget
            .checked_sub(value.len())
            .ok_or_else(|| Substitution::TooLong(name.to_owned()))?;
        out.push_str(value);
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
        let mut budget = 100;
        assert_eq!(
            substitute("${root}/digits/${root}", &vars, &mut budget).unwrap(),
            "hw2_data/digits/hw2_data"
        );
        assert_eq!(budget, 100 - 2 * "hw2_data".len());
        assert_eq!(
            substitute("${nope}", &vars, &mut budget).unwrap_err(),
            Substitution::Unknown("nope".into())
        );
    }

    #[test]
    fn a_large_variable_used_many_times_is_refused_at_its_line() {
        let text = format!(
            "[vars]\nbig = \"{}\"\n[stages.a]\nkind = \"x\"\nargs = [{}]\n",
            "x".repeat(1 << 20),
            vec!["\"${big}\""; 3000].join(", ")
        );
        let mut root: Table = toml::from_str(&text).unwrap();
        let err = expand(&mut root, &SpanIndex::default(), &Sources::default()).unwrap_err();
        assert!(
            matches!(&err, RecipeError::VariablesTooLong { name, .. } if name == "big"),
            "{err}"
        );
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
