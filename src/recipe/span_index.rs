//! Where every key and value of a recipe was written, by its dotted path.
//!
//! `toml::Table` forgets positions; `toml::de::DeTable` keeps them. Parsing the text a second time
//! into a DeTable and recording each path's spans lets any later phase (merging, overrides,
//! parameter checks) report an error at the exact key or value.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::source::Span;

/// The spans of one entry: its key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpans {
    pub key: Span,
    pub value: Span,
}

/// Dotted path (`["stages", "train", "lr"]`) to the spans of that entry.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    entries: HashMap<Vec<String>, EntrySpans>,
}

impl SpanIndex {
    /// Indexes a document that already parsed as TOML (a syntax error yields an empty index).
    pub fn of_document(text: &str, file: usize) -> SpanIndex {
        let mut index = SpanIndex::default();
        if let Ok(table) = DeTable::parse(text) {
            index.add_table(&mut Vec::new(), table.get_ref(), file);
        }
        index
    }

    fn add_table(&mut self, path: &mut Vec<String>, table: &DeTable<'_>, file: usize) {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let spans = EntrySpans {
                key: Span {
                    file,
                    range: key.span(),
                },
                value: Span {
                    file,
                    range: value.span(),
                },
            };
            self.entries.insert(path.clone(), spans);
            self.add_value(path, value, file);
            path.pop();
        }
    }

    fn add_value(&mut self, path: &mut Vec<String>, value: &Spanned<DeValue<'_>>, file: usize) {
        match value.get_ref() {
            DeValue::Table(table) => self.add_table(path, table, file),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    let span = Span {
                        file,
                        range: item.span(),
                    };
                    self.entries.insert(
                        path.clone(),
                        EntrySpans {
                            key: span.clone(),
                            value: span,
                        },
                    );
                    self.add_value(path, item, file);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Spans of the entry at `path`, or of its closest indexed ancestor.
    pub fn find(&self, path: &[String]) -> Option<&EntrySpans> {
        (0..=path.len())
            .rev()
            .find_map(|len| self.entries.get(&path[..len]))
    }

    /// The key span at `path` (or the closest ancestor's).
    pub fn key(&self, path: &[String]) -> Option<Span> {
        self.find(path).map(|e| e.key.clone())
    }

    /// The value span at `path` (or the closest ancestor's).
    pub fn value(&self, path: &[String]) -> Option<Span> {
        self.find(path).map(|e| e.value.clone())
    }

    /// Records `spans` for `path` and every indexed entry below `from`, re-rooted at `path`
    /// (used when a value is copied, e.g. defaults into a stage).
    pub fn copy_subtree(&mut self, from: &[String], to: &[String]) {
        let copies: Vec<(Vec<String>, EntrySpans)> = self
            .entries
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, s)| {
                let mut target = to.to_vec();
                target.extend_from_slice(&p[from.len()..]);
                (target, s.clone())
            })
            .collect();
        self.entries.extend(copies);
    }

    /// Adds another index's entries, replacing those at the same paths (a child recipe's entries
    /// win over its base's).
    pub fn overlay(&mut self, other: SpanIndex) {
        self.entries.extend(other.entries);
    }

    /// Records the spans of one entry.
    pub fn insert(&mut self, path: Vec<String>, spans: EntrySpans) {
        self.entries.insert(path, spans);
    }
}

/// Splits `a.b.c` into path segments.
pub fn path_of(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_nested_keys_and_values() {
        let text = "[stages.train]\nkind = \"x\"\nlr = 1e-3\n";
        let index = SpanIndex::of_document(text, 0);
        let value = index.value(&path_of("stages.train.lr")).unwrap();
        assert_eq!(&text[value.range], "1e-3");
        let key = index.key(&path_of("stages.train.kind")).unwrap();
        assert_eq!(&text[key.range], "kind");
    }

    #[test]
    fn missing_paths_fall_back_to_the_closest_ancestor() {
        let text = "[stages.train]\nkind = \"x\"\n";
        let index = SpanIndex::of_document(text, 0);
        let key = index.key(&path_of("stages.train.missing")).unwrap();
        assert_eq!(&text[key.range], "train");
    }
}
