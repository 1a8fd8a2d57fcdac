//! Everything that can be wrong with a recipe, each with the place it was written.

use camino::Utf8PathBuf;

use super::source::Span;

/// A recipe problem. Variants are named subject + problem and hold data; [`RecipeError::span`]
/// says where, [`RecipeError::help`] how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe `{path}`: {source}")]
    RecipeUnreadable {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`, which this recipe extends: {source}")]
    ExtendsUnreadable {
        path: Utf8PathBuf,
        source: std::io::Error,
        at: Option<Span>,
    },
    #[error("the recipe's `name` must not be empty")]
    RecipeNameEmpty { at: Option<Span> },
    #[error("the recipe's `name` {problem}")]
    RecipeNameInvalid { problem: String, at: Option<Span> },
    #[error("recipe `{path}` extends itself through `{chain}`")]
    RecipeExtendsCycle {
        path: Utf8PathBuf,
        chain: String,
        at: Option<Span>,
    },
    #[error("invalid TOML: {message}")]
    TomlSyntax { message: String, at: Option<Span> },
    #[error("`{key}` must be {expected}, found {found}")]
    ValueTypeWrong {
        key: String,
        expected: &'static str,
        found: &'static str,
        at: Option<Span>,
    },
    #[error("unknown key `{key}` in {table}")]
    KeyUnknown {
        key: String,
        table: String,
        suggestion: Option<String>,
        at: Option<Span>,
    },
    #[error("the recipe has no `{key}`")]
    KeyMissing { key: &'static str, at: Option<Span> },
    #[error("the recipe has no stages")]
    StagesMissing { at: Option<Span> },
    #[error("stage `{stage}` has no `kind`")]
    StageKindMissing { stage: String, at: Option<Span> },
    #[error("stage `{stage}` has unknown kind `{kind}`")]
    StageKindUnknown {
        stage: String,
        kind: String,
        suggestion: Option<String>,
        at: Option<Span>,
    },
    #[error("stage `{stage}`: {message}")]
    StageParamInvalid {
        stage: String,
        message: String,
        at: Option<Span>,
    },
    #[error("stage `{stage}` input `{input}` refers to unknown stage `{target}`")]
    StageInputUnknown {
        stage: String,
        input: String,
        target: String,
        suggestion: Option<String>,
        at: Option<Span>,
    },
    #[error("stage `{stage}` input `{input}`: stage `{target}` has no output `{output}`")]
    StageOutputUnknown {
        stage: String,
        input: String,
        target: String,
        output: String,
        available: Vec<String>,
        suggestion: Option<String>,
        at: Option<Span>,
    },
    #[error("stage `{stage}` input `{input}`: `{reference}` names a path, not a stage output")]
    StageOutputNotAName {
        stage: String,
        input: String,
        reference: String,
        at: Option<Span>,
    },
    #[error("stage `{stage}` needs an input named `{input}`")]
    StageInputMissing {
        stage: String,
        input: String,
        at: Option<Span>,
    },
    #[error("stage `{stage}` has circular dependency `{}`", cycle.join(" -> "))]
    CircularStageDependency {
        stage: String,
        cycle: Vec<String>,
        at: Option<Span>,
    },
    #[error("invalid `--set {argument}`: {reason}")]
    OverrideInvalid {
        argument: String,
        reason: String,
        at: Option<Span>,
    },
    #[error("invalid sweep: {reason}")]
    SweepInvalid { reason: String, at: Option<Span> },
    #[error(
        "`--set seed=...` has no effect: the recipe sweeps `seed`, so every variant has its own"
    )]
    SeedOverrideSwept { at: Option<Span> },
    #[error("unknown variable `${{{name}}}`")]
    VariableUnknown {
        name: String,
        known: Vec<String>,
        at: Option<Span>,
    },
    #[error("`${{{name}}}` here makes the recipe's strings longer than {limit_mib} MiB in all")]
    VariablesTooLong {
        name: String,
        limit_mib: usize,
        at: Option<Span>,
    },
    #[error("`--set vars.{name}`: the recipe declares no variable `{name}`")]
    VariableUndeclared {
        name: String,
        known: Vec<String>,
        suggestion: Option<String>,
        at: Option<Span>,
    },
}

impl RecipeError {
    /// Where in the recipe (or the command line) the problem is.
    pub fn span(&self) -> Option<&Span> {
        use RecipeError::*;
        match self {
            RecipeUnreadable { .. } => None,
            ExtendsUnreadable { at, .. }
            | RecipeNameEmpty { at }
            | RecipeNameInvalid { at, .. }
            | StageOutputNotAName { at, .. }
            | VariableUndeclared { at, .. }
            | RecipeExtendsCycle { at, .. }
            | TomlSyntax { at, .. }
            | ValueTypeWrong { at, .. }
            | KeyUnknown { at, .. }
            | KeyMissing { at, .. }
            | StagesMissing { at }
            | StageKindMissing { at, .. }
            | StageKindUnknown { at, .. }
            | StageParamInvalid { at, .. }
            | StageInputUnknown { at, .. }
            | StageOutputUnknown { at, .. }
            | StageInputMissing { at, .. }
            | CircularStageDependency { at, .. }
            | OverrideInvalid { at, .. }
            | SweepInvalid { at, .. }
            | SeedOverrideSwept { at }
            | VariableUnknown { at, .. }
            | VariablesTooLong { at, .. } => at.as_ref(),
        }
    }

    /// A hint on how to fix it, if there is one.
    pub fn help(&self) -> Option<String> {
        use RecipeError::*;
        let did_you_mean = |s: &Option<String>| s.as_ref().map(|s| format!("did you mean `{s}`?"));
        match self {
            KeyUnknown { suggestion, .. } | StageInputUnknown { suggestion, .. } => {
                did_you_mean(suggestion)
            }
            StageKindUnknown { suggestion, .. } => did_you_mean(suggestion)
                .or_else(|| Some("`hwrun stages` lists every stage kind".to_owned())),
            StageOutputUnknown {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            StageOutputUnknown {
                available, target, ..
            } if available.is_empty() => Some(format!(
                "stage `{target}` has a single output: refer to it as `{target}`"
            )),
            StageOutputNotAName { .. } => Some(
                "refer to another stage as `stage` or `stage.output`, e.g. `data.train`".to_owned(),
            ),
            VariableUndeclared {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            VariableUndeclared { known, .. } => Some(if known.is_empty() {
                "declare it in the recipe's `[vars]` table first".to_owned()
            } else {
                format!("declared variables: {}", known.join(", "))
            }),
            RecipeNameEmpty { .. } | RecipeNameInvalid { .. } => {
                Some("name the recipe, e.g. `name = \"quickstart\"`".to_owned())
            }
            StageOutputUnknown { available, .. } => Some(format!(
                "available outputs: {}",
                available
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            StageInputMissing { input, .. } => Some(format!(
                "add `{input} = \"<stage>\"` to the stage's `inputs` table"
            )),
            CircularStageDependency { .. } => {
                Some("a stage cannot depend, directly or not, on its own output".to_owned())
            }
            SeedOverrideSwept { .. } => {
                Some("choose the seeds with `--set 'sweep.seed=[0, 1, 2]'`".to_owned())
            }
            OverrideInvalid { .. } => {
                Some("write `--set stage.parameter=value`, e.g. `--set train.lr=1e-3`".to_owned())
            }
            VariablesTooLong { .. } => {
                Some("variables are for paths and names; pass large data as a file".to_owned())
            }
            VariableUnknown { known, .. } => Some(if known.is_empty() {
                "declare it in a `[vars]` table".to_owned()
            } else {
                format!("declared variables: {}", known.join(", "))
            }),
            _ => None,
        }
    }
}

/// The closest of `candidates` to `word`, if one is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    // Jaro-Winkler catches long near-misses; one edit (a swap included) catches short ones.
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(word, c),
                strsim::damerau_levenshtein(word, c),
                c,
            )
        })
        .filter(|(score, edits, _)| *score > 0.8 || *edits <= 1)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, _, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("fdi", ["fid", "tsne"]).as_deref(), Some("fid"));
        assert_eq!(
            suggest("trian", ["train", "report"]).as_deref(),
            Some("train")
        );
        assert_eq!(suggest("zzz", ["train", "report"]), None);
    }
}
