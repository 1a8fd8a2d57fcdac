//! The legacy format of `torch.save` (torch < 1.6, or `_use_new_zipfile_serialization=False`):
//! five pickles back to back (torch's magic number 0x1950a86a20f9469cfc6c, the protocol version
//! 1001, a sys-info dict, the object with storage persistent ids `('storage', type, key, location,
//! numel, view_metadata)`, the list of storage keys), then each listed storage's raw bytes,
//! prefixed by its element count as an 8-byte integer. torch writes the storages little-endian
//! whatever the machine (its sys-info `little_endian` describes the writer, and its own loader
//! ignores it), so this reader does too.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use camino::{Utf8Path, Utf8PathBuf};

use super::pickle::{describe, unpickle, Pickled, Value};
use super::tensor::{Dtype, Materializer, StorageSource};
use super::{Loaded, PytorchFileError};

/// torch's magic number as the little-endian bytes of the pickled int.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Reads the pickles and locates every storage in `bytes`, the whole file.
pub fn open(path: &Utf8Path, bytes: Vec<u8>) -> Result<Loaded, PytorchFileError> {
    let malformed = |detail: String| PytorchFileError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let mut pos = 0;
    let next = |part: &str, pos: &mut usize| -> Result<Pickled, PytorchFileError> {
        let pickled =
            unpickle(&bytes[*pos..]).map_err(|source| super::pickle_error(path, part, source))?;
        *pos += pickled.consumed;
        Ok(pickled)
    };
    let magic = next("the magic number", &mut pos).map_err(|e| match e {
        e @ PytorchFileError::Truncated { .. } => e,
        _ => not_torch(path),
    })?;
    if !matches!(&magic.root, Value::BigInt(b) if **b == MAGIC) {
        return Err(not_torch(path));
    }
    match next("the protocol version", &mut pos)?.root {
        Value::Int(PROTOCOL_VERSION) => {}
        other => {
            return Err(malformed(format!(
                "legacy protocol version is {}, expected {PROTOCOL_VERSION}",
                describe(&other)
            )))
        }
    }
    let sys_info = next("the sys info", &mut pos)?;
    if !matches!(sys_info.root, Value::Dict(_)) {
        return Err(malformed(format!(
            "sys info is {}, expected a dict",
            describe(&sys_info.root)
        )));
    }
    let pickled = next("the object", &mut pos)?;
    let keys = next("the storage keys", &mut pos)?;
    let Value::List(keys) = &keys.root else {
        return Err(malformed(format!(
            "the storage key list is {}",
            describe(&keys.root)
        )));
    };
    let dtypes: HashMap<&str, Dtype> = pickled
        .storages
        .iter()
        .map(|s| (&*s.key, s.dtype))
        .collect();
    let mut ranges = HashMap::new();
    for key in keys
        .try_borrow()
        .map_err(|_| malformed("storage key list in use".into()))?
        .0
        .iter()
    {
        let key: Rc<str> = match key {
            Value::Str(key) => Rc::clone(key),
            Value::Int(key) => key.to_string().into(),
            other => {
                return Err(malformed(format!(
                    "storage key {} is not a string",
                    describe(other)
                )))
            }
        };
        let Some(dtype) = dtypes.get(&*key) else {
            return Err(malformed(format!(
                "storage `{key}` is listed but no tensor references it"
            )));
        };
        let truncated = |detail: String| PytorchFileError::Truncated {
            path: path.to_owned(),
            detail,
        };
        let header: [u8; 8] = bytes
            .get(pos..pos + 8)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| {
                truncated(format!(
                    "the element count of storage `{key}` at byte {pos} is missing"
                ))
            })?;
        let count = u64::from_le_bytes(header);
        pos += 8;
        let available = bytes.len() - pos;
        let nbytes = count
            .checked_mul(dtype.element_size() as u64)
            .filter(|&n| n <= available as u64);
        let Some(nbytes) = nbytes else {
            return Err(truncated(format!(
                "storage `{key}` at byte {pos} has {count} elements of {} bytes, only {available} bytes remain",
                dtype.element_size()
            )));
        };
        ranges.insert(key, pos..pos + nbytes as usize);
        pos += nbytes as usize;
    }
    tracing::debug!(%path, storages = ranges.len(), "legacy torch file");
    let file_len = bytes.len() as u64;
    let source = LegacyStorages {
        path: path.to_owned(),
        bytes,
        ranges,
    };
    Ok(Loaded {
        pickled,
        materializer: Materializer::new(path.to_owned(), Box::new(source), file_len, false),
    })
}

fn not_torch(path: &Utf8Path) -> PytorchFileError {
    let found = "a Python pickle that does not start with torch's magic number".to_owned();
    PytorchFileError::NotTorchFile {
        path: path.to_owned(),
        found,
    }
}

/// The whole file and where each storage's bytes are.
struct LegacyStorages {
    path: Utf8PathBuf,
    bytes: Vec<u8>,
    ranges: HashMap<Rc<str>, Range<usize>>,
}

impl StorageSource for LegacyStorages {
    fn read(&mut self, key: &str, nbytes: u64) -> Result<Cow<'_, [u8]>, PytorchFileError> {
        let range =
            self.ranges
                .get(key)
                .cloned()
                .ok_or_else(|| PytorchFileError::MissingStorage {
                    path: self.path.clone(),
                    storage: key.to_owned(),
                    detail: "the file's list of storage keys does not name it".to_owned(),
                })?;
        if ((range.end - range.start) as u64) < nbytes {
            let detail = format!(
                "storage `{key}` holds {} bytes, the pickle declares {nbytes}",
                range.end - range.start
            );
            return Err(PytorchFileError::Malformed {
                path: self.path.clone(),
                detail,
            });
        }
        Ok(Cow::Borrowed(
            &self.bytes[range.start..range.start + nbytes as usize],
        ))
    }
}
