//! A recipe file as TOML, after `extends`, `[defaults]`, `--set` and `[vars]` are applied, with
//! the position of every entry kept for error messages.

use camino::{Utf8Path, Utf8PathBuf};
use toml::{Table, Value};

use super::error::RecipeError;
use super::overrides::Override;
use super::source::{Sources, Span};
use super::span_index::SpanIndex;
use super::vars;

/// The merged TOML of a recipe and where each entry came from.
#[derive(Debug, Clone, Default)]
pub struct RecipeDocument {
    pub sources: Sources,
    pub root: Table,
    pub spans: SpanIndex,
}

impl RecipeDocument {
    /// Reads a recipe file and every file it `extends`.
    pub fn read_file(&mut self, path: &Utf8Path) -> Result<(), RecipeError> {
        let (root, spans) = self.load_file(path, &mut Vec::new())?;
        self.root = root;
        self.spans = spans;
        Ok(())
    }

    /// Reads recipe text that has no file of its own (the embedded default recipe, tests).
    /// `extends` is resolved relative to the current directory.
    pub fn read_text(&mut self, name: &str, text: &str) -> Result<(), RecipeError> {
        let (root, spans) = self.parse_text(
            Utf8Path::new(name),
            Utf8Path::new("."),
            text.to_owned(),
            &mut Vec::new(),
        )?;
        self.root = root;
        self.spans = spans;
        Ok(())
    }

    fn load_file(
        &mut self,
        path: &Utf8Path,
        chain: &mut Vec<Utf8PathBuf>,
    ) -> Result<(Table, SpanIndex), RecipeError> {
        let text = read_recipe_text(path).map_err(|source| RecipeError::RecipeUnreadable {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Utf8Path::new("."));
        self.parse_text(path, dir, text, chain)
    }

    fn parse_text(
        &mut self,
        name: &Utf8Path,
        dir: &Utf8Path,
        text: String,
        chain: &mut Vec<Utf8PathBuf>,
    ) -> Result<(Table, SpanIndex), RecipeError> {
        let file = self.sources.add(name, text);
        let text = &self.sources.get(file).text;
        let root: Table = toml::from_str(text).map_err(|err| RecipeError::TomlSyntax {
            message: err.message().to_owned(),
            at: err.span().map(|range| Span { file, range }),
        })?;
        let spans = SpanIndex::of_document(text, file);
        let Some(base) = root.get("extends") else {
            return Ok((root, spans));
        };
        let at = spans.value(&["extends".to_owned()]);
        let Value::String(base) = base else {
            return Err(RecipeError::ValueTypeWrong {
                key: "extends".to_owned(),
                expected: "a path to another recipe",
                found: base.type_str(),
                at,
            });
        };
        let base_path = dir.join(base);
        let canonical = base_path
            .canonicalize_utf8()
            .unwrap_or_else(|_| base_path.clone());
        if chain.contains(&canonical) {
            return Err(RecipeError::RecipeExtendsCycle {
                path: name.to_owned(),
                chain: chain
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> "),
                at,
            });
        }
        chain.push(canonical);
        let (mut merged, mut merged_spans) =
            self.load_file(&base_path, chain)
                .map_err(|error| match error {
                    // The base itself is missing: point at the `extends` line that names it.
                    RecipeError::RecipeUnreadable { path, source } if path == base_path => {
                        RecipeError::ExtendsUnreadable {
                            path,
                            source,
                            at: at.clone(),
                        }
                    }
                    other => other,
                })?;
        chain.pop();
        merge_tables(&mut merged, root);
        merged_spans.overlay(spans);
        Ok((merged, merged_spans))
    }

    /// Applies `--set` overrides (latest wins), then `[defaults]` and `[vars]`.
    pub fn finish(&mut self, overrides: &[String]) -> Result<(), RecipeError> {
        for argument in overrides {
            Override::parse(argument, &mut self.sources)?.apply(&mut self.root, &mut self.spans)?;
        }
        self.apply_defaults()?;
        vars::expand(&mut self.root, &self.spans, &self.sources)
    }

    /// Copies `[defaults.<kind>]` entries into every stage of that kind that does not set them.
    fn apply_defaults(&mut self) -> Result<(), RecipeError> {
        let Some(defaults) = self.root.get("defaults").cloned() else {
            return Ok(());
        };
        let Value::Table(defaults) = defaults else {
            return Err(self.wrong_type("defaults", "a table of tables by stage kind", &defaults));
        };
        let Some(Value::Table(stages)) = self.root.get_mut("stages") else {
            return Ok(());
        };
        for (stage_name, stage) in stages.iter_mut() {
            let Value::Table(stage) = stage else { continue };
            let Some(Value::String(kind)) = stage.get("kind").cloned() else {
                continue;
            };
            let Some(Value::Table(kind_defaults)) = defaults.get(&kind) else {
                continue;
            };
            let from = vec!["defaults".to_owned(), kind.clone()];
            let to = vec!["stages".to_owned(), stage_name.clone()];
            fill_from_defaults(stage, kind_defaults, &from, &to, &mut self.spans);
        }
        Ok(())
    }

    /// An error for a top-level entry of the wrong type.
    pub fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> RecipeError {
        RecipeError::ValueTypeWrong {
            key: key.to_owned(),
            expected,
            found: found.type_str(),
            at: self.spans.value(&super::span_index::path_of(key)),
        }
    }
}

/// Copies the entries of `defaults` that `table` lacks, key by key through nested tables (a stage
/// that sets `optimizer.lr` still gets `optimizer.betas` from `[defaults.<kind>.optimizer]`),
/// with their spans.
fn fill_from_defaults(
    table: &mut Table,
    defaults: &Table,
    from: &[String],
    to: &[String],
    spans: &mut SpanIndex,
) {
    for (key, value) in defaults {
        let from_key: Vec<String> = from.iter().cloned().chain([key.clone()]).collect();
        let to_key: Vec<String> = to.iter().cloned().chain([key.clone()]).collect();
        match (table.get_mut(key), value) {
            (Some(Value::Table(inner)), Value::Table(inner_defaults)) => {
                fill_from_defaults(inner, inner_defaults, &from_key, &to_key, spans)
            }
            (Some(_), _) => {}
            (None, value) => {
                table.insert(key.clone(), value.clone());
                spans.copy_subtree(&from_key, &to_key);
            }
        }
    }
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else is replaced.
pub fn merge_tables(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The largest recipe file read: hand-written recipes are a few KB, and a bigger file is a
/// mistake (a data file named by accident) that would otherwise be read whole into memory.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;

/// Reads a recipe file, refusing anything but a regular file of at most [`MAX_RECIPE_BYTES`]:
/// a FIFO would block `plan` forever and `/dev/zero` never ends.
fn read_recipe_text(path: &Utf8Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let refuse = |what: String| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, what));
    let meta = std::fs::metadata(path)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return refuse(format!(
            "it is {what}; give the path of a .toml recipe file"
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_RECIPE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_RECIPE_BYTES {
        return refuse(format!(
            "it is larger than {} KiB, which no recipe is; is this the right file?",
            MAX_RECIPE_BYTES >> 10
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_merges_stage_tables_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            dir.join("base.toml"),
            "name = \"base\"\n[stages.a]\nkind = \"command\"\nargs = [\"true\"]\nretries = 1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("child.toml"),
            "extends = \"base.toml\"\nname = \"child\"\n[stages.a]\nretries = 2\n",
        )
        .unwrap();
        let mut doc = RecipeDocument::default();
        doc.read_file(&dir.join("child.toml")).unwrap();
        assert_eq!(doc.root["name"].as_str(), Some("child"));
        let stage = doc.root["stages"]["a"].as_table().unwrap();
        assert_eq!(stage["retries"].as_integer(), Some(2));
        assert_eq!(stage["kind"].as_str(), Some("command"));
    }

    #[test]
    fn extends_of_a_missing_file_points_at_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            dir.join("a.toml"),
            "name = \"a\"\nextends = \"nope.toml\"\n",
        )
        .unwrap();
        let mut doc = RecipeDocument::default();
        let err = doc.read_file(&dir.join("a.toml")).unwrap_err();
        assert!(
            matches!(err, RecipeError::ExtendsUnreadable { .. }),
            "{err}"
        );
        assert_eq!(doc.sources.locate(err.span().unwrap()).unwrap().line, 2);
    }

    #[test]
    fn special_and_oversized_files_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let fifo = dir.join("fifo.toml");
        let c_path = std::ffi::CString::new(fifo.as_str()).unwrap();
        // SAFETY: a NUL-terminated path and a mode, no other pointers.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let big = dir.join("big.toml");
        std::fs::write(&big, "# x\n".repeat(MAX_RECIPE_BYTES as usize / 4 + 1)).unwrap();
        std::fs::write(dir.join("extends_fifo.toml"), "extends = \"fifo.toml\"\n").unwrap();
        for (path, expected) in [
            (fifo.clone(), "it is a FIFO"),
            (Utf8PathBuf::from("/dev/zero"), "it is a device"),
            (dir.to_owned(), "it is a directory"),
            (big, "larger than 1024 KiB"),
            (dir.join("extends_fifo.toml"), "it is a FIFO"),
        ] {
            let err = RecipeDocument::default().read_file(&path).unwrap_err();
            assert!(err.to_string().contains(expected), "{path}: {err}");
        }
    }

    #[test]
    fn extends_cycle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(dir.join("a.toml"), "extends = \"b.toml\"\n").unwrap();
        std::fs::write(dir.join("b.toml"), "extends = \"a.toml\"\n").unwrap();
        let err = RecipeDocument::default()
            .read_file(&dir.join("a.toml"))
            .unwrap_err();
        assert!(
            matches!(err, RecipeError::RecipeExtendsCycle { .. }),
            "{err}"
        );
    }

    #[test]
    fn defaults_fill_unset_parameters_only() {
        let text = "name = \"d\"\n[defaults.command]\nretries = 3\ntimeout = 5\n[stages.a]\nkind = \"command\"\nretries = 1\n";
        let mut doc = RecipeDocument::default();
        doc.read_text("d.toml", text).unwrap();
        doc.finish(&[]).unwrap();
        let stage = doc.root["stages"]["a"].as_table().unwrap();
        assert_eq!(stage["retries"].as_integer(), Some(1));
        assert_eq!(stage["timeout"].as_integer(), Some(5));
    }
}
