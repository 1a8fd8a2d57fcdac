//! `--set stage.param=value` overrides from the command line.
//!
//! The path names a stage parameter (`train.lr`), or a top-level entry when it starts with
//! `vars`, `defaults`, `seed`, `name` or `sweep`. The value is read as TOML (`1e-3`, `true`, `[1, 2]`,
//! `"text"`), and as a plain string when it is not valid TOML (`--set data.root=/mnt/x`).

use toml::{Table, Value};

use super::error::{suggest, RecipeError};
use super::source::{Sources, Span};
use super::span_index::{EntrySpans, SpanIndex};

/// Top-level entries an override may address directly; anything else is a stage name.
const TOP_LEVEL: &[&str] = &["vars", "defaults", "seed", "name", "sweep", "description"];

/// The source name of `--set` arguments in error locations.
pub const SOURCE_NAME: &str = "--set";

/// One parsed `--set` argument.
#[derive(Debug, Clone)]
pub struct Override {
    pub argument: String,
    /// Path from the recipe root, e.g. `["stages", "train", "lr"]`.
    pub path: Vec<String>,
    pub value: Value,
    /// The value as typed.
    raw_value: String,
    /// Where the argument is in [`Sources`], so errors can point at it.
    key: Span,
    value_span: Span,
}

impl Override {
    pub fn parse(argument: &str, sources: &mut Sources) -> Result<Self, RecipeError> {
        let file = sources.add(SOURCE_NAME, argument.to_owned());
        let whole = Span {
            file,
            range: 0..argument.len(),
        };
        let invalid = |reason: &str| RecipeError::OverrideInvalid {
            argument: argument.to_owned(),
            reason: reason.to_owned(),
            at: Some(whole.clone()),
        };
        let (dotted, raw_value) = argument
            .split_once('=')
            .ok_or_else(|| invalid("expected `path=value`"))?;
        let segments: Vec<String> = dotted.trim().split('.').map(str::to_owned).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(invalid("the path has an empty segment"));
        }
        let is_top_level = TOP_LEVEL.contains(&segments[0].as_str());
        if !is_top_level && segments.len() < 2 {
            return Err(invalid("name a stage and one of its parameters"));
        }
        let mut path = if is_top_level {
            Vec::new()
        } else {
            vec!["stages".to_owned()]
        };
        path.extend(segments);
        let value_start = dotted.len() + 1;
        Ok(Override {
            argument: argument.to_owned(),
            path,
            value: parse_value(raw_value),
            raw_value: raw_value.to_owned(),
            key: Span {
                file,
                range: 0..dotted.len(),
            },
            value_span: Span {
                file,
                range: value_start..argument.len(),
            },
        })
    }

    /// Sets the value in `root` (the stage must exist) and records where it came from.
    pub fn apply(self, root: &mut Table, spans: &mut SpanIndex) -> Result<(), RecipeError> {
        if self.path[0] == "vars" && self.path.len() >= 2 {
            // A misspelt variable would otherwise be set and silently ignored.
            let declared: Vec<&str> = root
                .get("vars")
                .and_then(Value::as_table)
                .map(|v| v.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let name = &self.path[1];
            if !declared.contains(&name.as_str()) {
                return Err(RecipeError::VariableUndeclared {
                    name: name.clone(),
                    suggestion: suggest(name, declared.iter().copied()),
                    known: declared.iter().map(|s| s.to_string()).collect(),
                    at: Some(self.key),
                });
            }
        }
        if self.path[0] == "stages" {
            let stages = root.get("stages").and_then(Value::as_table);
            let stage = &self.path[1];
            if !stages.is_some_and(|s| s.contains_key(stage)) {
                let names = stages
                    .into_iter()
                    .flat_map(|s| s.keys().map(String::as_str));
                return Err(RecipeError::OverrideInvalid {
                    argument: self.argument.clone(),
                    reason: format!("the recipe has no stage `{stage}`")
                        + &suggest(stage, names)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default(),
                    at: Some(self.key),
                });
            }
        }
        let (last, parents) = self
            .path
            .split_last()
            .expect("override paths are never empty");
        let mut table = root;
        for segment in parents {
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            table = entry
                .as_table_mut()
                .ok_or_else(|| RecipeError::OverrideInvalid {
                    argument: self.argument.clone(),
                    reason: format!("`{segment}` is not a table"),
                    at: Some(self.key.clone()),
                })?;
        }
        // A parameter written as a string stays a string: `--set x.name=1` means "1".
        let value = match (table.get(last), self.value) {
            (Some(Value::String(_)), value) if !value.is_str() => Value::String(self.raw_value),
            (_, value) => value,
        };
        table.insert(last.clone(), value);
        spans.insert(
            self.path,
            EntrySpans {
                key: self.key,
                value: self.value_span,
            },
        );
        Ok(())
    }
}

/// Reads a command-line value as TOML, falling back to a plain string.
fn parse_value(raw: &str) -> Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<Table>(&wrapped) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Table {
        toml::from_str("[stages.train]\nkind = \"x\"\nlr = 0.1\n").unwrap()
    }

    #[test]
    fn sets_typed_values() {
        let mut sources = Sources::default();
        let mut table = root();
        let mut spans = SpanIndex::default();
        Override::parse("train.lr=1e-3", &mut sources)
            .unwrap()
            .apply(&mut table, &mut spans)
            .unwrap();
        Override::parse("train.name=/mnt/x y", &mut sources)
            .unwrap()
            .apply(&mut table, &mut spans)
            .unwrap();
        assert_eq!(table["stages"]["train"]["lr"].as_float(), Some(1e-3));
        assert_eq!(table["stages"]["train"]["name"].as_str(), Some("/mnt/x y"));
    }

    #[test]
    fn unknown_stage_suggests_a_name() {
        let mut sources = Sources::default();
        let err = Override::parse("trian.lr=1", &mut sources)
            .unwrap()
            .apply(&mut root(), &mut SpanIndex::default())
            .unwrap_err();
        assert!(err.to_string().contains("did you mean `train`"), "{err}");
    }

    #[test]
    fn undeclared_variables_are_refused() {
        let mut sources = Sources::default();
        let mut table: Table =
            toml::from_str("[vars]\ndata_root = \"x\"\n[stages.a]\nkind = \"x\"\n").unwrap();
        let err = Override::parse("vars.data_rot=1", &mut sources)
            .unwrap()
            .apply(&mut table, &mut SpanIndex::default())
            .unwrap_err();
        assert!(
            matches!(err, RecipeError::VariableUndeclared { .. }),
            "{err}"
        );
        assert_eq!(err.help().as_deref(), Some("did you mean `data_root`?"));
        Override::parse("vars.data_root=y", &mut sources)
            .unwrap()
            .apply(&mut table, &mut SpanIndex::default())
            .unwrap();
    }

    #[test]
    fn rejects_missing_equals() {
        let err = Override::parse("train.lr", &mut Sources::default()).unwrap_err();
        assert!(matches!(err, RecipeError::OverrideInvalid { .. }));
    }
}
