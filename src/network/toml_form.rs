//! The TOML form of a network: the same tree as the printout, written for people.
//!
//! A container is a table with `layers` (an array, run in order) and optionally `class` (the
//! name printed for it, default `Sequential`) and `name` (its name in the parent, default its
//! index). A layer is either
//! - a string: a class name alone (`"relu"`, `"tanh"`) or a whole constructor call as PyTorch
//!   prints it (`"BatchNorm2d(512)"`, `"LeakyReLU(0.2, inplace=True)"`), or
//! - a table whose one layer key (any case: `conv2d`, `ConvTranspose2d`) holds the positional
//!   arguments (an array, or one value) and whose other keys are keyword arguments, with an
//!   optional `name`.
//!
//! Arguments are PyTorch's own, with its defaults; tuples are arrays. The top level is the
//! `[network]` table. The DCGAN tutorial's discriminator, stage by stage:
//!
//! ```toml
//! [network]
//! class = "Discriminator"
//! layers = [
//!   { name = "layer1", layers = [
//!     { conv2d = [3, 64, 4], stride = 2, padding = 1, bias = false },
//!     { leakyrelu = 0.2, inplace = true },
//!   ] },
//!   { name = "layer2", layers = [
//!     { conv2d = [64, 128, 4], stride = 2, padding = 1, bias = false },
//!     "BatchNorm2d(128)",
//!     { leakyrelu = 0.2, inplace = true },
//!   ] },
//! ]
//! ```
//!
//! Errors point at the line and column of the layer (or of its argument) and name its path.
//! Beside PyTorch's arguments, a conv or linear layer takes `spectral_norm = true`, which its
//! printout does not show.

use std::collections::BTreeMap;

use super::call::{parse_arguments, Arg, Call, Value};
use super::error::{ErrorKind, Location, NetworkError};
use super::spec::{join, Child, Module, Network};
use super::vocabulary::{class_named, layer, unknown_layer};
use super::Described;
use crate::recipe::span_index::SpanIndex;

/// Keys of a container table.
const CONTAINER_KEYS: &[&str] = &["class", "name", "layers"];

/// Parses a TOML document with a `[network]` table; errors and [`Described::locations`] point
/// at the document's lines.
pub fn parse(text: &str) -> Result<Described, NetworkError> {
    let document: toml::Table = text
        .parse()
        .map_err(|error| NetworkError::at(None, ErrorKind::Toml(error)))?;
    let Some(toml::Value::Table(network)) = document.get("network") else {
        return Err(NetworkError::at(
            None,
            ErrorKind::TomlShape("the document has no `[network]` table".to_owned()),
        ));
    };
    let spans = Some((SpanIndex::of_document(text, 0), text));
    Reader::new(spans).read(network, vec!["network".to_owned()])
}

/// The network in a `[network]`-style table (`class`, `layers`) whose text is not at hand
/// (errors name layers by path only).
pub fn from_table(table: &toml::Table) -> Result<Described, NetworkError> {
    Reader::new(None).read(table, Vec::new())
}

/// Reads the tables, recording where each layer was written when the text is known.
struct Reader<'a> {
    spans: Option<(SpanIndex, &'a str)>,
    locations: BTreeMap<String, Location>,
}

impl<'a> Reader<'a> {
    fn new(spans: Option<(SpanIndex, &'a str)>) -> Self {
        Reader {
            spans,
            locations: BTreeMap::new(),
        }
    }

    fn read(
        mut self,
        table: &toml::Table,
        toml_path: Vec<String>,
    ) -> Result<Described, NetworkError> {
        let root = self.container(table, "", &toml_path)?;
        Ok(Described {
            network: Network { root },
            locations: self.locations,
        })
    }

    /// Where the value at `toml_path` (`network.layers.0.stride`) starts.
    fn locate(&self, toml_path: &[String]) -> Option<Location> {
        let (index, text) = self.spans.as_ref()?;
        let start = index.value(toml_path)?.range.start;
        let before = text.get(..start)?;
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        Some(Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        })
    }

    fn shape_error(&self, path: &str, toml_path: &[String], problem: &str) -> NetworkError {
        let at = if path.is_empty() {
            "[network]".to_owned()
        } else {
            format!("layer `{path}`")
        };
        NetworkError::at(
            self.locate(toml_path),
            ErrorKind::TomlShape(format!("{at}: {problem}")),
        )
    }

    fn container(
        &mut self,
        table: &toml::Table,
        path: &str,
        toml_path: &[String],
    ) -> Result<Module, NetworkError> {
        if let Some(key) = table
            .keys()
            .find(|key| !CONTAINER_KEYS.contains(&key.as_str()))
        {
            return Err(self.shape_error(
                path,
                &extend(toml_path, [key.as_str()]),
                &format!("a container takes `class`, `name` and `layers`, not `{key}`"),
            ));
        }
        let class = match table.get("class") {
            None => "Sequential".to_owned(),
            Some(toml::Value::String(class)) => class.clone(),
            Some(_) => {
                return Err(self.shape_error(
                    path,
                    &extend(toml_path, ["class"]),
                    "`class` must be a string",
                ))
            }
        };
        let Some(toml::Value::Array(layers)) = table.get("layers") else {
            return Err(self.shape_error(path, toml_path, "a container needs a `layers` array"));
        };
        let mut children: Vec<Child> = Vec::with_capacity(layers.len());
        for (index, item) in layers.iter().enumerate() {
            let item_path = extend(toml_path, ["layers", &index.to_string()]);
            let name = match item.as_table().and_then(|t| t.get("name")) {
                None => index.to_string(),
                Some(toml::Value::String(name)) => name.clone(),
                Some(_) => {
                    return Err(self.shape_error(
                        &join(path, &index.to_string()),
                        &extend(&item_path, ["name"]),
                        "`name` must be a string",
                    ))
                }
            };
            let child_path = join(path, &name);
            if children.iter().any(|child| child.name == name) {
                return Err(self.shape_error(
                    path,
                    &item_path,
                    &format!("two children are named `{name}`"),
                ));
            }
            if let Some(at) = self.locate(&item_path) {
                self.locations.insert(child_path.clone(), at);
            }
            let module = match item {
                toml::Value::Table(table) if table.contains_key("layers") => {
                    self.container(table, &child_path, &item_path)?
                }
                toml::Value::Table(table) => self
                    .table_call(table, &child_path, &item_path)
                    .and_then(|call| layer(&call))
                    .map(Module::Layer)
                    .map_err(|error| error.in_layer(&child_path))?,
                toml::Value::String(text) => self
                    .string_call(text, &child_path, &item_path)
                    .and_then(|call| layer(&call))
                    .map(Module::Layer)
                    .map_err(|error| error.in_layer(&child_path))?,
                _ => {
                    return Err(self.shape_error(
                        &child_path,
                        &item_path,
                        "a layer is a string (`\"relu\"`, `\"BatchNorm2d(64)\"`) or a table (`{ conv2d = [3, 64, 4] }`)",
                    ))
                }
            };
            children.push(Child { name, module });
        }
        Ok(Module::Container { class, children })
    }

    /// `"relu"` or `"LeakyReLU(0.2, inplace=True)"`; columns count from the string's quote, as
    /// long as the string has no escapes.
    fn string_call(
        &self,
        text: &str,
        path: &str,
        item_path: &[String],
    ) -> Result<Call, NetworkError> {
        let at = self.locate(item_path);
        let text = text.trim();
        let (class, arguments) = match text.split_once('(') {
            None => (text, ""),
            Some((class, rest)) => {
                let Some(arguments) = rest.strip_suffix(')') else {
                    return Err(self.shape_error(
                        path,
                        item_path,
                        &format!("`{text}` does not end in `)`"),
                    ));
                };
                (class, arguments)
            }
        };
        let (line, quote_column) = at.map_or((1, 0), |at| (at.line, at.column));
        let first_argument_column = quote_column + 1 + class.chars().count() + 1;
        let (positional, keyword) = parse_arguments(arguments, line, first_argument_column)?;
        let keep = |arg: Arg| {
            if at.is_some() {
                arg
            } else {
                without_location(arg)
            }
        };
        Ok(Call {
            class: class.trim().to_owned(),
            location: at.map(|at| Location {
                column: at.column + 1,
                ..at
            }),
            positional: positional.into_iter().map(keep).collect(),
            keyword: keyword
                .into_iter()
                .map(|(name, arg)| (name, keep(arg)))
                .collect(),
        })
    }

    /// `{ conv2d = [3, 64, 4], stride = 2 }`.
    fn table_call(
        &self,
        table: &toml::Table,
        path: &str,
        item_path: &[String],
    ) -> Result<Call, NetworkError> {
        let mut layer_keys = table.keys().filter(|key| class_named(key).is_some());
        let (Some(class_key), None) = (layer_keys.next(), layer_keys.next()) else {
            let keys: Vec<&str> = table
                .keys()
                .map(String::as_str)
                .filter(|key| *key != "name")
                .collect();
            // A lone unknown key is most likely a misspelt layer.
            if let [only] = keys.as_slice() {
                return Err(unknown_layer(&Call {
                    class: (*only).to_owned(),
                    location: self.locate(item_path),
                    positional: Vec::new(),
                    keyword: Vec::new(),
                }));
            }
            return Err(self.shape_error(
                path,
                item_path,
                &format!(
                    "a layer table needs exactly one layer key (`conv2d = [...]`), has {keys:?}"
                ),
            ));
        };
        let class_path = extend(item_path, [class_key.as_str()]);
        let read = |item: &toml::Value, at: &[String]| {
            value(item)
                .map(|value| Arg {
                    value,
                    location: self.locate(at),
                })
                .map_err(|problem| self.shape_error(path, at, &problem))
        };
        let positional = match &table[class_key] {
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| read(item, &extend(&class_path, [index.to_string().as_str()])))
                .collect::<Result<Vec<_>, _>>()?,
            other => vec![read(other, &class_path)?],
        };
        let keyword = table
            .iter()
            .filter(|(key, _)| *key != class_key && *key != "name")
            .map(|(key, item)| Ok((key.clone(), read(item, &extend(item_path, [key.as_str()]))?)))
            .collect::<Result<Vec<_>, NetworkError>>()?;
        Ok(Call {
            class: class_key.clone(),
            location: self.locate(item_path),
            positional,
            keyword,
        })
    }
}

/// `path` with `more` segments appended.
fn extend<'s>(path: &[String], more: impl IntoIterator<Item = &'s str>) -> Vec<String> {
    path.iter()
        .cloned()
        .chain(more.into_iter().map(str::to_owned))
        .collect()
}

fn without_location(arg: Arg) -> Arg {
    Arg {
        location: None,
        ..arg
    }
}

/// A TOML value as the Python literal it stands for (arrays are tuples).
fn value(item: &toml::Value) -> Result<Value, String> {
    Ok(match item {
        toml::Value::Integer(value) => Value::Int(*value),
        toml::Value::Float(value) => Value::Float(*value),
        toml::Value::Boolean(value) => Value::Bool(*value),
        toml::Value::String(text) => Value::Str(text.clone()),
        toml::Value::Array(items) => {
            Value::Tuple(items.iter().map(value).collect::<Result<_, _>>()?)
        }
        other => return Err(format!("`{other}` is not an argument value")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toml_form_builds_the_same_network_as_the_printout() {
        let toml = r#"
[network]
class = "Discriminator"
layers = [
  { name = "layer1", layers = [
    { conv2d = [3, 64, 4], stride = 2, padding = 1, bias = false },
    { leakyrelu = 0.2, inplace = true },
  ] },
  { name = "layer2", layers = [
    { Conv2d = [64, 128], kernel_size = [4, 4], stride = [2, 2], padding = 1, bias = false },
    "BatchNorm2d(128)",
    "LeakyReLU(negative_slope=0.2, inplace=True)",
    "dropout",
  ] },
]
"#;
        let printout = "Discriminator(
  (layer1): Sequential(
    (0): Conv2d(3, 64, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)
    (1): LeakyReLU(negative_slope=0.2, inplace=True)
  )
  (layer2): Sequential(
    (0): Conv2d(64, 128, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)
    (1): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): LeakyReLU(negative_slope=0.2, inplace=True)
    (3): Dropout(p=0.5, inplace=False)
  )
)";
        let from_toml = parse(toml).unwrap().network;
        let from_printout = crate::network::printout::parse(printout).unwrap().network;
        assert_eq!(from_toml, from_printout);
        // The canonical form round-trips through serde.
        let json = serde_json::to_string(&from_toml).unwrap();
        assert_eq!(serde_json::from_str::<Network>(&json).unwrap(), from_toml);
    }

    #[test]
    fn toml_errors_name_the_layer() {
        let error = parse("[network]\nlayers = [{ conv2D = [3, 4, 3], strid = 2 }]").unwrap_err();
        assert_eq!(error.help().as_deref(), Some("did you mean `stride`?"));
        let error = parse("[network]\nlayers = [{ conv3d = [3, 4, 3] }]").unwrap_err();
        assert_eq!(error.help().as_deref(), Some("did you mean `Conv2d`?"));
        let error = parse("[network]\nlayers = [{ name = \"c\", layers = [3] }]").unwrap_err();
        assert!(error.to_string().contains("layer `c.0`"), "{error}");
        assert_eq!(
            error.location,
            Some(Location {
                line: 2,
                column: 35
            })
        );
        let error = parse("[network]\nlayers = [\n  \"relu\",\n  \"Linear(3, 4, bias=Flase)\",\n]")
            .unwrap_err();
        assert_eq!(
            error.location,
            Some(Location {
                line: 4,
                column: 17
            })
        );
        assert_eq!(
            error.to_string(),
            "in layer `1`: `Linear`'s `bias` must be True or False, not `Flase`"
        );
    }
}
