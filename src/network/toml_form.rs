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
//! TOML keeps no line numbers for these values here, so errors name the layer's path instead.

use std::collections::BTreeMap;

use super::call::{parse_arguments, Arg, Call, Value};
use super::error::{ErrorKind, NetworkError};
use super::spec::{join, Child, Module, Network};
use super::vocabulary::{class_named, layer, unknown_layer};
use super::Described;

/// Keys of a container table.
const CONTAINER_KEYS: &[&str] = &["class", "name", "layers"];

/// Parses a TOML document with a `[network]` table.
pub fn parse(text: &str) -> Result<Described, NetworkError> {
    let document: toml::Table = text
        .parse()
        .map_err(|error| NetworkError::at(None, ErrorKind::Toml(error)))?;
    let Some(toml::Value::Table(network)) = document.get("network") else {
        return Err(shape_error("", "the document has no `[network]` table"));
    };
    from_table(network)
}

/// The network in a `[network]`-style table (`class`, `layers`).
pub fn from_table(table: &toml::Table) -> Result<Described, NetworkError> {
    let root = container(table, "")?;
    Ok(Described {
        network: Network { root },
        locations: BTreeMap::new(),
    })
}

fn shape_error(path: &str, problem: &str) -> NetworkError {
    let at = if path.is_empty() {
        "[network]".to_owned()
    } else {
        format!("layer `{path}`")
    };
    NetworkError::at(None, ErrorKind::TomlShape(format!("{at}: {problem}")))
}

fn container(table: &toml::Table, path: &str) -> Result<Module, NetworkError> {
    if let Some(key) = table
        .keys()
        .find(|key| !CONTAINER_KEYS.contains(&key.as_str()))
    {
        return Err(shape_error(
            path,
            &format!("a container takes `class`, `name` and `layers`, not `{key}`"),
        ));
    }
    let class = match table.get("class") {
        None => "Sequential".to_owned(),
        Some(toml::Value::String(class)) => class.clone(),
        Some(_) => return Err(shape_error(path, "`class` must be a string")),
    };
    let Some(toml::Value::Array(layers)) = table.get("layers") else {
        return Err(shape_error(path, "a container needs a `layers` array"));
    };
    let mut children: Vec<Child> = Vec::with_capacity(layers.len());
    for (index, item) in layers.iter().enumerate() {
        let name = match item.as_table().and_then(|t| t.get("name")) {
            None => index.to_string(),
            Some(toml::Value::String(name)) => name.clone(),
            Some(_) => {
                return Err(shape_error(
                    &join(path, &index.to_string()),
                    "`name` must be a string",
                ))
            }
        };
        let child_path = join(path, &name);
        if children.iter().any(|child| child.name == name) {
            return Err(shape_error(
                path,
                &format!("two children are named `{name}`"),
            ));
        }
        let module = match item {
            toml::Value::Table(table) if table.contains_key("layers") => container(table, &child_path)?,
            toml::Value::Table(table) => table_call(table, &child_path)
                .and_then(|call| layer(&call))
                .map(Module::Layer)
                .map_err(|error| error.in_layer(&child_path))?,
            toml::Value::String(text) => string_call(text, &child_path)
                .and_then(|call| layer(&call))
                .map(Module::Layer)
                .map_err(|error| error.in_layer(&child_path))?,
            _ => {
                return Err(shape_error(
                    &child_path,
                    "a layer is a string (`\"relu\"`, `\"BatchNorm2d(64)\"`) or a table (`{ conv2d = [3, 64, 4] }`)",
                ))
            }
        };
        children.push(Child { name, module });
    }
    Ok(Module::Container { class, children })
}

/// `"relu"` or `"LeakyReLU(0.2, inplace=True)"`.
fn string_call(text: &str, path: &str) -> Result<Call, NetworkError> {
    let text = text.trim();
    let (class, arguments) = match text.split_once('(') {
        None => (text, ""),
        Some((class, rest)) => {
            let Some(arguments) = rest.strip_suffix(')') else {
                return Err(shape_error(path, &format!("`{text}` does not end in `)`")));
            };
            (class, arguments)
        }
    };
    let (positional, keyword) = parse_arguments(arguments, 1, class.len() + 2)
        .map_err(|error| shape_error(path, &format!("in `{text}`: {error}")))?;
    Ok(Call {
        class: class.trim().to_owned(),
        location: None,
        positional: strip_locations(positional),
        keyword: keyword
            .into_iter()
            .map(|(name, arg)| (name, without_location(arg)))
            .collect(),
    })
}

fn without_location(arg: Arg) -> Arg {
    Arg {
        location: None,
        ..arg
    }
}

fn strip_locations(args: Vec<Arg>) -> Vec<Arg> {
    args.into_iter().map(without_location).collect()
}

/// `{ conv2d = [3, 64, 4], stride = 2 }`.
fn table_call(table: &toml::Table, path: &str) -> Result<Call, NetworkError> {
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
                location: None,
                positional: Vec::new(),
                keyword: Vec::new(),
            }));
        }
        return Err(shape_error(
            path,
            &format!("a layer table needs exactly one layer key (`conv2d = [...]`), has {keys:?}"),
        ));
    };
    let positional = match &table[class_key] {
        toml::Value::Array(items) => items.iter().map(value).collect::<Result<Vec<_>, _>>(),
        other => value(other).map(|one| vec![one]),
    }
    .map_err(|problem| shape_error(path, &problem))?;
    let mut keyword = Vec::new();
    for (key, item) in table {
        if key == class_key || key == "name" {
            continue;
        }
        let value = value(item).map_err(|problem| shape_error(path, &problem))?;
        keyword.push((
            key.clone(),
            Arg {
                value,
                location: None,
            },
        ));
    }
    Ok(Call {
        class: class_key.clone(),
        location: None,
        positional: positional
            .into_iter()
            .map(|value| Arg {
                value,
                location: None,
            })
            .collect(),
        keyword,
    })
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
    }
}
