//! Cache keys: a blake3 hash over a canonical, length-prefixed, versioned encoding of everything
//! that determines a stage's output.
//!
//! Changing this encoding changes every key; the golden test at the bottom pins it, so such a
//! change is always deliberate (bump [`KEY_SCHEME`] with it).

use std::fmt;

use serde_json::Value;

/// Names the encoding below; hashed first into every key.
pub const KEY_SCHEME: &str = "hwrun-cache-key/1";

/// A stage instance's identity in the cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for tables and logs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }

    pub fn from_hex(text: &str) -> Option<CacheKey> {
        let bytes = hex::decode(text).ok()?;
        Some(CacheKey(bytes.try_into().ok()?))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.short())
    }
}

/// An input of a stage as it enters the key: its name, the producing stage's key, and which of
/// its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct InputKey {
    pub name: String,
    pub key: CacheKey,
    pub output: Option<String>,
}

/// Everything that determines a stage's output.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMaterial<'a> {
    pub kind: &'a str,
    pub version: u32,
    /// Canonical parameters (defaults filled in, numbers typed).
    pub params: &'a Value,
    pub seed: u64,
    /// Sorted by name.
    pub inputs: &'a [InputKey],
    /// Content hashes of the files outside the cache the stage reads, in declaration order.
    pub external: &'a [blake3::Hash],
}

impl KeyMaterial<'_> {
    pub fn key(&self) -> CacheKey {
        let mut hasher = Encoder(blake3::Hasher::new());
        hasher.field("scheme", KEY_SCHEME.as_bytes());
        hasher.field("kind", self.kind.as_bytes());
        hasher.field("version", &self.version.to_le_bytes());
        hasher.label("params");
        hasher.value(self.params);
        hasher.field("seed", &self.seed.to_le_bytes());
        hasher.count("inputs", self.inputs.len());
        for input in self.inputs {
            hasher.field("name", input.name.as_bytes());
            hasher.field("key", &input.key.0);
            hasher.field("output", input.output.as_deref().unwrap_or("").as_bytes());
        }
        hasher.count("external", self.external.len());
        for hash in self.external {
            hasher.field("content", hash.as_bytes());
        }
        CacheKey(*hasher.0.finalize().as_bytes())
    }
}

/// Writes length-prefixed, type-tagged fields so that no two different materials share bytes.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn label(&mut self, label: &str) {
        self.bytes(label.as_bytes());
    }

    fn field(&mut self, label: &str, bytes: &[u8]) {
        self.label(label);
        self.bytes(bytes);
    }

    fn count(&mut self, label: &str, n: usize) {
        self.field(label, &(n as u64).to_le_bytes());
    }

    /// Canonical JSON: objects by sorted key, floats in Rust's shortest round-trip form.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.bytes(b"n"),
            Value::Bool(b) => self.field("b", &[u8::from(*b)]),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.field("i", i.to_string().as_bytes())
                } else if let Some(u) = n.as_u64() {
                    self.field("i", u.to_string().as_bytes())
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    self.field("f", format!("{f:?}").as_bytes())
                }
            }
            Value::String(s) => self.field("s", s.as_bytes()),
            Value::Array(items) => {
                self.count("a", items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                self.count("o", entries.len());
                for (key, item) in entries {
                    self.bytes(key.as_bytes());
                    self.value(item);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn material<'a>(params: &'a Value, inputs: &'a [InputKey]) -> KeyMaterial<'a> {
        KeyMaterial {
            kind: "train",
            version: 1,
            params,
            seed: 7,
            inputs,
            external: &[],
        }
    }

    #[test]
    fn golden_key_is_stable() {
        let params = json!({"lr": 0.001, "epochs": 5, "arch": "mnist", "betas": [0.5, 0.999]});
        let upstream = material(&json!({}), &[]).key();
        let inputs = [InputKey {
            name: "data".into(),
            key: upstream,
            output: Some("train".into()),
        }];
        assert_eq!(
            material(&params, &inputs).key().hex(),
            "f753e8ef15abf339aaf5a3df306c40be5e35e24913d271bbb9f5f7533c6a2138"
        );
    }

    #[test]
    fn every_part_changes_the_key() {
        let params = json!({"lr": 0.001});
        let base = material(&params, &[]);
        let key = base.key();
        assert_ne!(
            KeyMaterial {
                kind: "eval",
                ..base.clone()
            }
            .key(),
            key
        );
        assert_ne!(
            KeyMaterial {
                version: 2,
                ..base.clone()
            }
            .key(),
            key
        );
        assert_ne!(
            KeyMaterial {
                seed: 8,
                ..base.clone()
            }
            .key(),
            key
        );
        assert_ne!(material(&json!({"lr": 0.01}), &[]).key(), key);
        assert_ne!(material(&json!({"lr": "0.001"}), &[]).key(), key);
        let hash = [blake3::hash(b"x")];
        assert_ne!(
            KeyMaterial {
                external: &hash,
                ..base.clone()
            }
            .key(),
            key
        );
    }

    #[test]
    fn object_key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": 2.5}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": 2.5, "a": 1}"#).unwrap();
        assert_eq!(material(&a, &[]).key(), material(&b, &[]).key());
    }

    #[test]
    fn hex_round_trips() {
        let key = material(&json!(null), &[]).key();
        assert_eq!(CacheKey::from_hex(&key.hex()), Some(key));
        assert_eq!(CacheKey::from_hex("zz"), None);
    }
}
