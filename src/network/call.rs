//! A layer written as a constructor call, `Conv2d(3, 64, kernel_size=(4, 4), bias=False)`: its
//! Python-literal arguments, parsed with their columns, and bound to a PyTorch signature the
//! way Python binds them (positional first, then keywords, defaults for the rest).
//!
//! Both forms of a network end here: a printout line is a call, and a TOML layer
//! (`{ conv2d = [3, 64, 4], stride = 2 }`) is a call whose values come from TOML.

use super::error::{ErrorKind, Location, NetworkError};
use crate::recipe::error::suggest;

/// A Python literal as module reprs print them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    /// A quoted string, or a bare word (`approximate=none`, PyTorch 1.x's `ReLU(inplace)`).
    Str(String),
    Tuple(Vec<Value>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(value) => write!(f, "{value}"),
            Value::Float(value) => write!(f, "{value}"),
            Value::Bool(value) => write!(f, "{}", if *value { "True" } else { "False" }),
            Value::None => write!(f, "None"),
            Value::Str(text) => write!(f, "{text}"),
            Value::Tuple(items) => {
                let items: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "({})", items.join(", "))
            }
        }
    }
}

/// An argument and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub value: Value,
    pub location: Option<Location>,
}

/// A constructor call: the class name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub class: String,
    pub location: Option<Location>,
    pub positional: Vec<Arg>,
    pub keyword: Vec<(String, Arg)>,
}

/// A call's arguments: positional, then `name=value`.
pub type Arguments = (Vec<Arg>, Vec<(String, Arg)>);

/// Parses the text between a call's parentheses; `line` and `first_column` place it in the
/// printout.
pub fn parse_arguments(
    text: &str,
    line: usize,
    first_column: usize,
) -> Result<Arguments, NetworkError> {
    let mut parser = ArgParser {
        chars: text.chars().collect(),
        position: 0,
        line,
        first_column,
    };
    let mut positional = Vec::new();
    let mut keyword = Vec::new();
    parser.skip_spaces();
    while !parser.at_end() {
        let start = parser.location();
        let keyword_name = parser.keyword_name();
        let value = parser.value()?;
        let arg = Arg {
            value,
            location: Some(start),
        };
        match keyword_name {
            Some(name) => keyword.push((name, arg)),
            None if !keyword.is_empty() => {
                return Err(parser.error("a positional argument after a keyword argument"))
            }
            None => positional.push(arg),
        }
        parser.skip_spaces();
        if parser.at_end() {
            break;
        }
        parser.expect(',')?;
        parser.skip_spaces();
    }
    Ok((positional, keyword))
}

struct ArgParser {
    chars: Vec<char>,
    position: usize,
    line: usize,
    first_column: usize,
}

impl ArgParser {
    fn at_end(&self) -> bool {
        self.position >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn location(&self) -> Location {
        Location {
            line: self.line,
            column: self.first_column + self.position,
        }
    }

    fn error(&self, what: &str) -> NetworkError {
        let found = match self.peek() {
            Some(c) => format!("`{c}`"),
            None => "the end of the arguments".to_owned(),
        };
        NetworkError::at(
            Some(self.location()),
            ErrorKind::Syntax(format!("expected {what}, found {found}")),
        )
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), NetworkError> {
        if self.peek() == Some(wanted) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.error(&format!("`{wanted}`")))
        }
    }

    /// `name=` ahead: consumes it and returns the name; otherwise consumes nothing.
    fn keyword_name(&mut self) -> Option<String> {
        let start = self.position;
        let word = self.word();
        if !word.is_empty() && self.peek() == Some('=') {
            self.position += 1;
            return Some(word);
        }
        self.position = start;
        None
    }

    fn word(&mut self) -> String {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '+')
        {
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    fn value(&mut self) -> Result<Value, NetworkError> {
        self.skip_spaces();
        match self.peek() {
            Some('(') => self.tuple(),
            Some(quote @ ('\'' | '"')) => {
                self.position += 1;
                let start = self.position;
                while self.peek().is_some_and(|c| c != quote) {
                    self.position += 1;
                }
                let text: String = self.chars[start..self.position].iter().collect();
                self.expect(quote)?;
                Ok(Value::Str(text))
            }
            _ => {
                let start = self.location();
                let word = self.word();
                if word.is_empty() {
                    return Err(self.error("a value"));
                }
                Ok(literal(&word).ok_or_else(|| {
                    NetworkError::at(
                        Some(start),
                        ErrorKind::Syntax(format!("`{word}` is not a value")),
                    )
                })?)
            }
        }
    }

    fn tuple(&mut self) -> Result<Value, NetworkError> {
        self.expect('(')?;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some(')') {
                self.position += 1;
                return Ok(Value::Tuple(items));
            }
            items.push(self.value()?);
            self.skip_spaces();
            match self.peek() {
                Some(',') => self.position += 1,
                Some(')') => {}
                _ => return Err(self.error("`,` or `)`")),
            }
        }
    }
}

/// A bare word as a value: a number, `True`/`False`/`None`, or an identifier kept as text.
fn literal(word: &str) -> Option<Value> {
    match word {
        "True" => return Some(Value::Bool(true)),
        "False" => return Some(Value::Bool(false)),
        "None" => return Some(Value::None),
        _ => {}
    }
    if let Ok(int) = word.parse::<i64>() {
        return Some(Value::Int(int));
    }
    if word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
        return word.parse::<f64>().ok().map(Value::Float);
    }
    let identifier = word.chars().all(|c| c.is_alphanumeric() || c == '_');
    identifier.then(|| Value::Str(word.to_owned()))
}

/// A call's arguments bound to a signature: `values[i]` is the argument for `params[i]`.
pub struct Bound<'a> {
    pub layer: &'static str,
    params: &'static [&'static str],
    values: Vec<Option<&'a Arg>>,
    location: Option<Location>,
}

/// Binds `call`'s arguments to `params` (PyTorch's parameter names, in order) as Python would.
pub fn bind<'a>(
    call: &'a Call,
    layer: &'static str,
    params: &'static [&'static str],
) -> Result<Bound<'a>, NetworkError> {
    let mut values: Vec<Option<&Arg>> = vec![None; params.len()];
    if call.positional.len() > params.len() {
        return Err(NetworkError::at(
            call.positional[params.len()].location.or(call.location),
            ErrorKind::TooManyArguments {
                layer,
                most: params.len(),
                given: call.positional.len(),
            },
        ));
    }
    for (slot, arg) in values.iter_mut().zip(&call.positional) {
        *slot = Some(arg);
    }
    for (name, arg) in &call.keyword {
        let Some(index) = params.iter().position(|p| p == name) else {
            return Err(NetworkError::at(
                arg.location.or(call.location),
                ErrorKind::UnknownArgument {
                    layer,
                    argument: name.clone(),
                    suggestion: suggest(name, params.iter().copied()),
                },
            ));
        };
        if values[index].replace(arg).is_some() {
            return Err(NetworkError::at(
                arg.location.or(call.location),
                ErrorKind::RepeatedArgument {
                    layer,
                    argument: name.clone(),
                },
            ));
        }
    }
    Ok(Bound {
        layer,
        params,
        values,
        location: call.location,
    })
}

impl Bound<'_> {
    fn arg(&self, name: &'static str) -> Option<&Arg> {
        let index = self.params.iter().position(|p| *p == name)?;
        self.values[index]
    }

    /// Where the argument `name` is, else where the call is.
    pub fn location_of(&self, name: &'static str) -> Option<Location> {
        self.arg(name)
            .and_then(|arg| arg.location)
            .or(self.location)
    }

    pub fn error(&self, name: &'static str, kind: ErrorKind) -> NetworkError {
        NetworkError::at(self.location_of(name), kind)
    }

    fn bad(&self, name: &'static str, expected: &'static str, found: &Value) -> NetworkError {
        self.error(
            name,
            ErrorKind::BadValue {
                layer: self.layer,
                argument: name,
                expected,
                found: found.to_string(),
            },
        )
    }

    /// Whether `name` was written as Python's `None`.
    pub fn written_as_none(&self, name: &'static str) -> bool {
        self.arg(name).is_some_and(|arg| arg.value == Value::None)
    }

    /// The value given for `name`, `None` when absent or written as Python's `None`.
    pub fn given(&self, name: &'static str) -> Option<&Value> {
        self.arg(name)
            .map(|arg| &arg.value)
            .filter(|value| **value != Value::None)
    }

    pub fn required<T>(
        &self,
        name: &'static str,
        read: impl Fn(&Self, &'static str) -> Result<Option<T>, NetworkError>,
    ) -> Result<T, NetworkError> {
        read(self, name)?.ok_or_else(|| {
            NetworkError::at(
                self.location,
                ErrorKind::MissingArgument {
                    layer: self.layer,
                    argument: name,
                },
            )
        })
    }

    pub fn int(&self, name: &'static str) -> Result<Option<i64>, NetworkError> {
        match self.given(name) {
            None => Ok(None),
            Some(Value::Int(value)) => Ok(Some(*value)),
            Some(other) => Err(self.bad(name, "an integer", other)),
        }
    }

    /// A count or size: an integer of at least 1.
    pub fn positive(&self, name: &'static str) -> Result<Option<i64>, NetworkError> {
        match self.int(name)? {
            Some(value) if value < 1 => {
                Err(self.bad(name, "a positive integer", &Value::Int(value)))
            }
            value => Ok(value),
        }
    }

    pub fn float(&self, name: &'static str) -> Result<Option<f64>, NetworkError> {
        match self.given(name) {
            None => Ok(None),
            Some(Value::Float(value)) => Ok(Some(*value)),
            Some(Value::Int(value)) => Ok(Some(*value as f64)),
            Some(other) => Err(self.bad(name, "a number", other)),
        }
    }

    /// A flag; PyTorch 1.x printed a set flag as its bare name (`ReLU(inplace)`).
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, NetworkError> {
        match self.given(name) {
            None => Ok(default),
            Some(Value::Bool(value)) => Ok(*value),
            Some(Value::Str(word)) if word == name => Ok(true),
            Some(other) => Err(self.bad(name, "True or False", other)),
        }
    }

    pub fn text(&self, name: &'static str) -> Result<Option<String>, NetworkError> {
        match self.given(name) {
            None => Ok(None),
            Some(Value::Str(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.bad(name, "a string", other)),
        }
    }

    /// An integer or a tuple of integers, kept as written.
    pub fn ints(&self, name: &'static str) -> Result<Option<IntsForm>, NetworkError> {
        match self.given(name) {
            None => Ok(None),
            Some(Value::Int(value)) => Ok(Some(IntsForm::One(*value))),
            Some(Value::Tuple(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Int(value) => Ok(*value),
                    other => Err(self.bad(name, "a tuple of integers", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|values| Some(IntsForm::Tuple(values))),
            Some(other) => Err(self.bad(name, "an integer or a tuple of integers", other)),
        }
    }

    /// A 2-d size: `k` or `(kh, kw)`, as written.
    pub fn size2(&self, name: &'static str) -> Result<Option<super::spec::Size>, NetworkError> {
        use super::spec::Size;
        match self.ints(name)? {
            None => Ok(None),
            Some(IntsForm::One(side)) => Ok(Some(Size::Square(side))),
            Some(IntsForm::Tuple(values)) => match values.as_slice() {
                [height, width] => Ok(Some(Size::Pair([*height, *width]))),
                _ => Err(self.bad(
                    name,
                    "an integer or a pair",
                    &self.given(name).cloned().unwrap_or(Value::None),
                )),
            },
        }
    }

    /// Fails when `name` is given with a value other than its default (an option hwrun does
    /// not model).
    pub fn only_default(&self, name: &'static str, default: &Value) -> Result<(), NetworkError> {
        match self.arg(name) {
            Some(arg) if arg.value != *default => Err(self.error(
                name,
                ErrorKind::Unsupported {
                    layer: self.layer,
                    what: format!("{name}={}", arg.value),
                },
            )),
            _ => Ok(()),
        }
    }
}

/// An integer argument that may also be written as a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum IntsForm {
    One(i64),
    Tuple(Vec<i64>),
}

impl IntsForm {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            IntsForm::One(value) => vec![*value],
            IntsForm::Tuple(values) => values.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_literals_with_their_columns() {
        let (positional, keyword) = parse_arguments(
            "3, 64, kernel_size=(4, 4), eps=1e-05, bias=False, approximate='none'",
            7,
            10,
        )
        .unwrap();
        assert_eq!(positional[0].value, Value::Int(3));
        assert_eq!(
            positional[1].location,
            Some(Location {
                line: 7,
                column: 13
            })
        );
        assert_eq!(keyword[0].0, "kernel_size");
        assert_eq!(
            keyword[0].1.value,
            Value::Tuple(vec![Value::Int(4), Value::Int(4)])
        );
        assert_eq!(keyword[1].1.value, Value::Float(1e-5));
        assert_eq!(keyword[2].1.value, Value::Bool(false));
        assert_eq!(keyword[3].1.value, Value::Str("none".into()));
        let (one, _) = parse_arguments("(8192,), inplace", 1, 1).unwrap();
        assert_eq!(one[0].value, Value::Tuple(vec![Value::Int(8192)]));
        assert_eq!(one[1].value, Value::Str("inplace".into()));
        let error = parse_arguments("3, (4, 4", 2, 5).unwrap_err();
        assert!(error.to_string().contains("expected `,` or `)`"), "{error}");
        assert!(parse_arguments("p=0.5, 3", 1, 1).is_err());
    }
}
