//! Reading `.pt`/`.pth` files written by `torch.save`, with no Python at run time.
//!
//! Accepted:
//! - both formats: the zip archive of torch >= 1.6 ([`zip_format`]) and the legacy pickle stream
//!   of older torch and `_use_new_zipfile_serialization=False` ([`legacy_format`]), such as
//!   pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`;
//! - any container of plain Python values (dicts, `OrderedDict`, lists, tuples, numbers, strings)
//!   holding tensors: a state_dict, a checkpoint that nests one under `state_dict` or `model` beside
//!   an epoch count or optimizer state, or a single tensor;
//! - float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8 and bool storages, and
//!   tensors that view them (storage offset, strides, several tensors sharing one storage, 0-d
//!   tensors), including `nn.Parameter`s; zip archives written on big-endian machines
//!   (`byteorder` = `big`) are byte-swapped.
//!
//! A pickle names the Python functions that rebuild its objects, and Python's unpickler calls
//! them: loading an untrusted `.pt` file with `torch.load(weights_only=False)` can run any code.
//! The [`pickle`] module here is restricted to the opcodes and the handful of globals tensor files
//! use; any other global (a user class, `os.system`) is refused with an error naming it, and
//! nothing in the file is ever executed. Every read is bounds-checked and every allocation bounded
//! by the file's length, so a damaged or hostile file gives an error, never a panic.
//!
//! Tensors come back as contiguous CPU tensors with the file's dtype, shape and values. Two tensors
//! that are the same contiguous view of one storage share memory, as they do in torch.

mod error;
mod legacy_format;
mod pickle;
mod tensor;
mod zip_format;

use std::collections::HashSet;
use std::io::Read;
use std::rc::Rc;

use camino::Utf8Path;
use tch::Tensor;

pub use error::PytorchFileError;
pub use pickle::PickleError;

use pickle::{describe, key_text, Pickled, Value};
use tensor::{Materializer, TensorSpec};

/// Everything the file holds that is a tensor, by dotted key, in file order
/// (nested checkpoints unwrapped: `{"state_dict": {...}}` -> its entries; a single tensor -> one entry with key "").
///
/// Only the `state_dict`/`model` entries of the top-level dict (and of dicts unwrapped that way)
/// add no segment to the key; every other tensor keeps its full path, e.g.
/// `optimizer.state.0.exp_avg` or `history.2` for the third item of a list.
pub fn read_tensors(path: &Utf8Path) -> Result<Vec<(String, Tensor)>, PytorchFileError> {
    let mut loaded = open(path)?;
    let specs = collect(path, &loaded.pickled.root, true)?;
    loaded.materialize(path, specs)
}

/// The state_dict of a file (unwrapping `state_dict`/`model` nesting); error if the file holds no dict of tensors.
pub fn read_state_dict(path: &Utf8Path) -> Result<Vec<(String, Tensor)>, PytorchFileError> {
    let mut loaded = open(path)?;
    let no_state_dict = |value: &Value| PytorchFileError::NoStateDict {
        path: path.to_owned(),
        found: describe(value),
    };
    let mut dict = loaded.pickled.root.clone();
    // Bounded: a pickle can make a dict its own `state_dict`.
    for _ in 0..MAX_DEPTH {
        match nested_state_dict(&dict) {
            Some(inner) => dict = inner,
            None => break,
        }
    }
    if !matches!(dict, Value::Dict(_)) {
        return Err(no_state_dict(&dict));
    }
    let specs = collect(path, &dict, false)?;
    if specs.is_empty() {
        return Err(no_state_dict(&dict));
    }
    loaded.materialize(path, specs)
}

/// The single tensor of a file saved with `torch.save(tensor)`; error naming what it holds otherwise.
pub fn read_tensor(path: &Utf8Path) -> Result<Tensor, PytorchFileError> {
    let mut loaded = open(path)?;
    let Value::Tensor(spec) = &loaded.pickled.root else {
        return Err(PytorchFileError::NotATensor {
            path: path.to_owned(),
            found: describe(&loaded.pickled.root),
        });
    };
    let spec = Rc::clone(spec);
    loaded.materializer.tensor("", &spec)
}

/// The keys under which a checkpoint nests its model's state_dict, in order of preference.
const STATE_DICT_KEYS: [&str; 2] = ["state_dict", "model"];

/// The dict a checkpoint `dict` nests under `state_dict` or `model`, if any.
fn nested_state_dict(dict: &Value) -> Option<Value> {
    let Value::Dict(dict) = dict else { return None };
    let dict = dict.try_borrow().ok()?;
    STATE_DICT_KEYS.iter().find_map(|key| {
        dict.get(key)
            .filter(|v| matches!(v, Value::Dict(_)))
            .cloned()
    })
}

/// How deeply containers may nest on the way to a tensor; real checkpoints use a handful of levels.
const MAX_DEPTH: usize = 64;

/// How many values a walk may visit. Containers may be shared (a pickle can reference one dict
/// from many places), so a small file could otherwise describe an exponentially large tree.
const MAX_VISITS: usize = 10_000_000;

/// Every tensor under `value` with its dotted name. With `unwrap`, the `state_dict` and `model`
/// entries of a dict that hold dicts add no segment to the name.
fn collect(
    path: &Utf8Path,
    value: &Value,
    unwrap: bool,
) -> Result<Vec<(String, Rc<TensorSpec>)>, PytorchFileError> {
    let mut walk = Walk {
        path,
        visits: 0,
        found: Vec::new(),
    };
    walk.visit(value, "", unwrap, 0)?;
    Ok(walk.found)
}

struct Walk<'a> {
    path: &'a Utf8Path,
    visits: usize,
    found: Vec<(String, Rc<TensorSpec>)>,
}

impl Walk<'_> {
    fn malformed(&self, detail: String) -> PytorchFileError {
        PytorchFileError::Malformed {
            path: self.path.to_owned(),
            detail,
        }
    }

    fn visit(
        &mut self,
        value: &Value,
        prefix: &str,
        unwrap: bool,
        depth: usize,
    ) -> Result<(), PytorchFileError> {
        self.visits += 1;
        if depth > MAX_DEPTH || self.visits > MAX_VISITS {
            return Err(self.malformed(format!(
                "containers nest deeper than {MAX_DEPTH} levels or hold more than {MAX_VISITS} values (at `{prefix}`)"
            )));
        }
        let join = |segment: String| {
            if prefix.is_empty() {
                segment
            } else {
                format!("{prefix}.{segment}")
            }
        };
        match value {
            Value::Tensor(spec) => self.found.push((prefix.to_owned(), Rc::clone(spec))),
            Value::Dict(dict) => {
                let dict = dict
                    .try_borrow()
                    .map_err(|_| self.malformed(format!("dict `{prefix}` in use")))?;
                for (key, item) in dict.entries() {
                    let name = key_text(key);
                    let nested = unwrap
                        && matches!(item, Value::Dict(_))
                        && STATE_DICT_KEYS.contains(&name.as_str());
                    let prefix = if nested {
                        prefix.to_owned()
                    } else {
                        join(name)
                    };
                    self.visit(item, &prefix, nested, depth + 1)?;
                }
            }
            Value::List(items) => {
                let items = items
                    .try_borrow()
                    .map_err(|_| self.malformed(format!("list `{prefix}` in use")))?;
                for (i, item) in items.0.iter().enumerate() {
                    self.visit(item, &join(i.to_string()), false, depth + 1)?;
                }
            }
            Value::Tuple(items) => {
                for (i, item) in items.0.iter().enumerate() {
                    self.visit(item, &join(i.to_string()), false, depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// An unpickled file and where its storages' bytes come from.
struct Loaded {
    pickled: Pickled,
    materializer: Materializer,
}

impl Loaded {
    fn materialize(
        &mut self,
        path: &Utf8Path,
        specs: Vec<(String, Rc<TensorSpec>)>,
    ) -> Result<Vec<(String, Tensor)>, PytorchFileError> {
        let mut seen = HashSet::new();
        if let Some((name, _)) = specs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            let detail =
                format!("two tensors are named `{name}` once nested checkpoints are unwrapped");
            return Err(PytorchFileError::Malformed {
                path: path.to_owned(),
                detail,
            });
        }
        specs
            .into_iter()
            .map(|(name, spec)| Ok((name.clone(), self.materializer.tensor(&name, &spec)?)))
            .collect()
    }
}

/// Opens `path` as whichever format its first bytes announce.
fn open(path: &Utf8Path) -> Result<Loaded, PytorchFileError> {
    let io_err = |source| PytorchFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip_format::open(path, file, file_len);
    }
    if head.first() == Some(&0x80) {
        let bytes = std::fs::read(path).map_err(io_err)?;
        return legacy_format::open(path, bytes);
    }
    Err(PytorchFileError::NotTorchFile {
        path: path.to_owned(),
        found: sniff(&head),
    })
}

/// What a file that is not a torch file looks like, from its first bytes.
fn sniff(head: &[u8]) -> String {
    const MAGICS: [(&[u8], &str); 7] = [
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x1f\x8b", "gzip-compressed data"),
        (b"BZh", "bzip2-compressed data"),
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"\x89HDF", "an HDF5 file"),
    ];
    if head.is_empty() {
        return "an empty file".into();
    }
    if let Some((_, what)) = MAGICS.iter().find(|(magic, _)| head.starts_with(magic)) {
        return (*what).into();
    }
    if head.len() > 8 && head[4..8] == [0; 4] && head[8] == b'{' {
        return "a safetensors file (read it with tch::Tensor::read_safetensors)".into();
    }
    if head.get(257..262) == Some(b"ustar") {
        return "a tar archive (the format of the earliest torch versions; re-save it with a newer torch)".into();
    }
    let text = String::from_utf8_lossy(head);
    if text.chars().all(|c| !c.is_control() || c.is_whitespace()) {
        let first_line: String = text.lines().next().unwrap_or("").chars().take(40).collect();
        return format!("text starting {first_line:?}");
    }
    let bytes: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("binary data starting with bytes {}", bytes.join(" "))
}

/// A pickle error of `part` of the file at `path`; a cut pickle is a truncated file.
fn pickle_error(path: &Utf8Path, part: &str, source: PickleError) -> PytorchFileError {
    match source {
        source if source.is_truncation() => PytorchFileError::Truncated {
            path: path.to_owned(),
            detail: format!("{part}: {source}"),
        },
        PickleError::UnsupportedStorage { key, storage_type } => {
            PytorchFileError::UnsupportedDtype {
                path: path.to_owned(),
                storage: key,
                storage_type,
                supported: tensor::Dtype::supported_storages(),
            }
        }
        source => PytorchFileError::Pickle {
            path: path.to_owned(),
            part: part.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniff_names_common_formats() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), "a PNG image");
        assert_eq!(
            sniff(b"hello world\nsecond"),
            "text starting \"hello world\""
        );
        assert_eq!(sniff(b""), "an empty file");
        assert!(sniff(b"\x00\x01\x02").starts_with("binary data"));
    }
}
