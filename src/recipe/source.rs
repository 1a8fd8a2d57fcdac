//! Recipe text and positions in it, so every error can point at a file, line and column.

use std::ops::Range;

use camino::{Utf8Path, Utf8PathBuf};

/// A place in one of the [`Sources`]: which file, which bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: usize,
    pub range: Range<usize>,
}

/// One text a recipe was read from: a recipe file, a file it extends, or a `--set` argument.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Shown in error locations (`recipes/x.toml`, `--set`).
    pub name: Utf8PathBuf,
    pub text: String,
}

/// Every text that went into a recipe, indexed by [`Span::file`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

/// A resolved position: file name, 1-based line and column, the line's text and the underline
/// length.
#[derive(Debug, Clone, PartialEq)]
pub struct Location<'a> {
    pub name: &'a Utf8Path,
    pub line: usize,
    pub column: usize,
    pub line_text: &'a str,
    pub width: usize,
}

impl Sources {
    pub fn add(&mut self, name: impl Into<Utf8PathBuf>, text: String) -> usize {
        self.files.push(SourceFile {
            name: name.into(),
            text,
        });
        self.files.len() - 1
    }

    pub fn get(&self, file: usize) -> &SourceFile {
        &self.files[file]
    }

    /// Turns a span into line and column (both 1-based, columns counted in characters).
    pub fn locate(&self, span: &Span) -> Option<Location<'_>> {
        let file = self.files.get(span.file)?;
        let start = span.range.start.min(file.text.len());
        let line_start = file.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = file.text[start..]
            .find('\n')
            .map_or(file.text.len(), |i| start + i);
        let line_text = file.text[line_start..line_end].trim_end_matches('\r');
        let line = file.text[..start].matches('\n').count() + 1;
        let column = file.text[line_start..start].chars().count() + 1;
        let end = span.range.end.clamp(start, line_end);
        let width = file.text[start..end].chars().count().max(1);
        Some(Location {
            name: &file.name,
            line,
            column,
            line_text,
            width,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column() {
        let mut sources = Sources::default();
        let file = sources.add("r.toml", "a = 1\n[stages.x]\nkind = \"trian\"\n".to_owned());
        let at = sources
            .locate(&Span {
                file,
                range: 24..31,
            })
            .unwrap();
        assert_eq!((at.line, at.column, at.width), (3, 8, 7));
        assert_eq!(at.line_text, "kind = \"trian\"");
    }
}
