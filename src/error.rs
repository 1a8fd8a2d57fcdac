//! How errors reach the user: `error: ...`, the recipe line with a caret, a help line, and the
//! chain of causes; and the process exit codes.

use std::fmt::Write;

use crate::recipe::{RecipeError, Sources};

/// Exit codes, documented in the README.
pub mod exit_code {
    /// Everything ran (or was cached).
    pub const SUCCESS: i32 = 0;
    /// A stage failed, or was skipped because an input failed.
    pub const STAGE_FAILED: i32 = 1;
    /// The recipe or the command line is invalid; nothing ran.
    pub const INVALID_INPUT: i32 = 2;
    /// Interrupted with Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// Renders a recipe error the way compilers do:
///
/// ```text
/// error: stage `train` has unknown kind `trian`
///   --> recipes/x.toml:12:8
///    |
/// 12 | kind = "trian"
///    |        ^^^^^^^
///    = help: did you mean `train`?
/// ```
pub fn render_recipe_error(error: &RecipeError, sources: &Sources) -> String {
    let mut out = format!("error: {error}\n");
    if let Some(at) = error.span().and_then(|span| sources.locate(span)) {
        let gutter = at.line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {}:{}:{}", at.name, at.line, at.column);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{} | {}", at.line, at.line_text);
        let _ = writeln!(
            out,
            "{pad} | {}{}",
            " ".repeat(at.column - 1),
            "^".repeat(at.width)
        );
        if let Some(help) = error.help() {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
    } else if let Some(help) = error.help() {
        let _ = writeln!(out, "  = help: {help}");
    }
    append_causes(&mut out, error);
    out
}

/// Renders any other error with its causes.
pub fn render_error(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}\n");
    for cause in error.chain().skip(1) {
        // Many errors already include their source's message: say it once.
        let cause = cause.to_string();
        if !out.contains(cause.trim()) {
            let _ = writeln!(out, "  caused by: {cause}");
        }
    }
    out
}

fn append_causes(out: &mut String, error: &dyn std::error::Error) {
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(text.trim()) {
            let _ = writeln!(out, "  caused by: {text}");
        }
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Span;

    #[test]
    fn points_at_the_line_with_a_caret() {
        let mut sources = Sources::default();
        let file = sources.add("r.toml", "[stages.a]\nkind = \"trian\"\n".to_owned());
        let error = RecipeError::StageKindUnknown {
            stage: "a".into(),
            kind: "trian".into(),
            suggestion: Some("train".into()),
            at: Some(Span {
                file,
                range: 18..25,
            }),
        };
        let text = render_recipe_error(&error, &sources);
        assert_eq!(
            text,
            "error: stage `a` has unknown kind `trian`\n --> r.toml:2:8\n  |\n2 | kind = \"trian\"\n  |        ^^^^^^^\n  = help: did you mean `train`?\n"
        );
    }
}
