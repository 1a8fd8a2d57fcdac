//! Recipes: TOML files describing a DAG of stages.
//!
//! Phases, one type each: the text and positions ([`source`], [`span_index`]), the merged
//! document after `extends`, `[defaults]`, `--set` and `[vars]` ([`document`]), and the analysed
//! recipe with resolved stage kinds, inputs and sweep ([`analyzer`], [`sweep`]).

pub mod analyzer;
pub mod document;
pub mod error;
pub mod overrides;
pub mod source;
pub mod span_index;
pub mod sweep;
pub mod vars;

pub use analyzer::{InputRef, Recipe, StageDecl};
pub use document::RecipeDocument;
pub use error::RecipeError;
pub use source::{Sources, Span};

use camino::Utf8Path;

use crate::stage::StageKind;

/// Where a recipe comes from.
#[derive(Debug, Clone)]
pub enum RecipeSource<'a> {
    File(&'a Utf8Path),
    /// Text with a display name (the embedded default recipe).
    Text {
        name: &'a str,
        text: &'a str,
    },
}

/// A recipe error with the texts its span points into.
#[derive(Debug)]
pub struct LoadError {
    pub error: RecipeError,
    pub sources: Sources,
}

/// Loads, overrides and analyses a recipe whose stages are of `kinds` (see [`Recipe::analyse`]).
pub fn load(
    source: RecipeSource<'_>,
    overrides: &[String],
    kinds: &[&'static dyn StageKind],
) -> Result<Recipe, LoadError> {
    let mut document = RecipeDocument::default();
    let result = match source {
        RecipeSource::File(path) => document.read_file(path),
        RecipeSource::Text { name, text } => document.read_text(name, text),
    }
    .and_then(|()| document.finish(overrides))
    .and_then(|()| Recipe::analyse(&document, kinds));
    result.map_err(|error| LoadError {
        error,
        sources: document.sources,
    })
}
