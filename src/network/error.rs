//! What can be wrong with a network description, and where: every error carries the line and
//! column of the printout (or the layer path of the TOML form) it is about.

use std::fmt;

/// A 1-based line and column in a printout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A network description that cannot be read or does not fit together.
#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", .layer.as_ref().map(|path| format!("in layer `{path}`: ")).unwrap_or_default())]
pub struct NetworkError {
    /// Where in the printout; `None` for the TOML form and for whole-network problems.
    pub location: Option<Location>,
    /// The layer's path, where no location says which layer it is (the TOML form).
    pub layer: Option<String>,
    pub kind: ErrorKind,
}

impl NetworkError {
    pub fn at(location: Option<Location>, kind: ErrorKind) -> Self {
        NetworkError {
            location,
            layer: None,
            kind,
        }
    }

    /// The error, said of the layer at `path`.
    pub fn in_layer(self, path: &str) -> Self {
        NetworkError {
            layer: Some(path.to_owned()),
            ..self
        }
    }

    /// A "did you mean" hint, where the error has one.
    pub fn help(&self) -> Option<String> {
        match &self.kind {
            ErrorKind::UnknownLayer {
                suggestion: Some(name),
                ..
            }
            | ErrorKind::UnknownArgument {
                suggestion: Some(name),
                ..
            } => Some(format!("did you mean `{name}`?")),
            _ => None,
        }
    }

    /// The error as compilers print it: message, `--> file:line:column`, the line and a caret.
    pub fn render(&self, source_name: &str, text: &str) -> String {
        let mut out = format!("error: {self}\n");
        let line_text = self
            .location
            .and_then(|at| text.lines().nth(at.line.saturating_sub(1)).map(|l| (at, l)));
        if let Some((at, line)) = line_text {
            let pad = " ".repeat(at.line.to_string().len());
            out.push_str(&format!("{pad}--> {source_name}:{at}\n{pad} |\n"));
            out.push_str(&format!("{} | {}\n", at.line, line.trim_end()));
            out.push_str(&format!("{pad} | {}^\n", " ".repeat(at.column - 1)));
        } else {
            out.push_str(&format!("  --> {source_name}\n"));
        }
        if let Some(help) = self.help() {
            out.push_str(&format!("  = help: {help}\n"));
        }
        out
    }
}

/// The kinds of [`NetworkError`].
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown layer `{name}`")]
    UnknownLayer {
        name: String,
        suggestion: Option<String>,
    },
    #[error("`{layer}` has no argument `{argument}`")]
    UnknownArgument {
        layer: &'static str,
        argument: String,
        suggestion: Option<String>,
    },
    #[error("`{layer}` needs its argument `{argument}`")]
    MissingArgument {
        layer: &'static str,
        argument: &'static str,
    },
    #[error("`{layer}` takes at most {most} positional arguments, got {given}")]
    TooManyArguments {
        layer: &'static str,
        most: usize,
        given: usize,
    },
    #[error("`{layer}` gets `{argument}` twice")]
    RepeatedArgument {
        layer: &'static str,
        argument: String,
    },
    #[error("`{layer}`'s `{argument}` must be {expected}, not `{found}`")]
    BadValue {
        layer: &'static str,
        argument: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("`{layer}` with {what} is not supported")]
    Unsupported { layer: &'static str, what: String },
    /// A shape that does not fit: `layer `l2_5.0.0` expects 512 input channels, gets 128`.
    #[error("layer `{path}` {problem}")]
    Shape { path: String, problem: String },
    #[error("invalid TOML: {0}")]
    Toml(#[source] toml::de::Error),
    /// The TOML parses but is not a network: a layer that is neither a string nor a table.
    #[error("{0}")]
    TomlShape(String),
}
