//! A kind's parameters as `hwrun stages KIND` lists them, read from the JSON schema that
//! `schemars` derives from the parameter struct (its field doc comments and serde defaults),
//! with the kind's own defaults for nested tables such as `optimizer`.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use super::kind::ParamDoc;

/// Every leaf parameter of `P`, nested tables flattened to dotted names, with the defaults of
/// `kind_defaults` (the kind's defaults as JSON) where the schema has none.
pub fn document<P: JsonSchema>(kind_defaults: &Value) -> Vec<ParamDoc> {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = generator.into_root_schema_for::<P>();
    let mut docs = Vec::new();
    walk(schema.as_value(), "", kind_defaults, &mut docs);
    docs
}

fn walk(schema: &Value, prefix: &str, defaults: &Value, docs: &mut Vec<ParamDoc>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let dotted = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let default = property
            .get("default")
            .cloned()
            .or_else(|| defaults.get(name).cloned());
        if property.get("properties").is_some() {
            walk(
                property,
                &dotted,
                default.as_ref().unwrap_or(&Value::Null),
                docs,
            );
            continue;
        }
        docs.push(ParamDoc {
            name: dotted,
            kind: type_of(property),
            default,
            doc: property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\n', " "),
        });
    }
}

/// `number`, `integer`, `"sgd" | "adam"`, `array`, ... as the schema says.
fn type_of(property: &Value) -> String {
    let choices = |key: &str| -> Option<Vec<String>> {
        let variants = property.get(key)?.as_array()?;
        variants
            .iter()
            .map(|v| {
                v.get("const")
                    .or_else(|| v.get("enum").and_then(|e| e.get(0)))
                    .map(|c| c.to_string())
            })
            .collect()
    };
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(values) = choices("oneOf").or_else(|| choices("anyOf")) {
        return values.join(" | ");
    }
    match property.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "value".to_owned(),
    }
}
