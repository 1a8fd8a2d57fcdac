//! Storages and the tensors that view them: the dtypes torch storages name, the description
//! `_rebuild_tensor_v2` receives, and its rebuild into a CPU `tch::Tensor` from the storage's bytes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use camino::Utf8PathBuf;
use tch::{Device, Kind, Tensor};

use super::PytorchFileError;

/// The element types of the storages hwrun reads, by torch's legacy storage class names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

/// `torch.<name>` storage classes and their dtypes.
const STORAGE_TYPES: [(&str, Dtype); 10] = [
    ("FloatStorage", Dtype::F32),
    ("HalfStorage", Dtype::F16),
    ("BFloat16Storage", Dtype::BF16),
    ("DoubleStorage", Dtype::F64),
    ("LongStorage", Dtype::I64),
    ("IntStorage", Dtype::I32),
    ("ShortStorage", Dtype::I16),
    ("CharStorage", Dtype::I8),
    ("ByteStorage", Dtype::U8),
    ("BoolStorage", Dtype::Bool),
];

impl Dtype {
    /// The dtype of storage class `torch.<name>`, if hwrun reads it.
    pub fn from_storage_name(name: &str) -> Option<Dtype> {
        STORAGE_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, dtype)| dtype)
    }

    /// The storage class names hwrun reads, for error messages.
    pub fn supported_storages() -> String {
        STORAGE_TYPES
            .iter()
            .map(|(n, _)| format!("torch.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn element_size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::Bool => Kind::Bool,
        }
    }
}

/// A storage as the pickle's persistent id names it: its key (the archive entry or the legacy
/// storage key), dtype and element count, and for legacy storage views the viewed range.
#[derive(Debug, PartialEq)]
pub struct StorageRef {
    pub key: Rc<str>,
    pub dtype: Dtype,
    pub numel: u64,
    /// Legacy files (torch < 0.4) may reference a slice `(offset, len)` of a storage, in elements.
    pub view: Option<(u64, u64)>,
}

/// What `torch._utils._rebuild_tensor_v2` receives: a strided view of a storage.
#[derive(Debug, PartialEq)]
pub struct TensorSpec {
    pub storage: Rc<StorageRef>,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// Where a format keeps the raw bytes of its storages.
pub trait StorageSource {
    /// The first `nbytes` bytes of storage `key`, in the file's byte order.
    fn read(&mut self, key: &str, nbytes: u64) -> Result<Cow<'_, [u8]>, PytorchFileError>;
}

/// A materialised tensor may be larger than its storage (a stride-0 expanded view), but never by
/// more than this factor over the whole file, so a crafted shape cannot exhaust memory.
const MAX_EXPANSION: u64 = 16;

/// The most bytes all of a file's storages may inflate to, whatever their compression:
/// `torch.save` stores storages uncompressed, so a storage larger than the file can only be a
/// deflated one, and deflate's 1032:1 would let a few MB of zeros claim gigabytes (a zip bomb).
pub fn storage_budget(file_len: u64) -> u64 {
    file_len.max(4 << 20).saturating_mul(MAX_EXPANSION)
}

/// Builds tensors from their specs, reading each storage once.
pub struct Materializer {
    path: Utf8PathBuf,
    source: Box<dyn StorageSource>,
    file_len: u64,
    big_endian: bool,
    storages: HashMap<Rc<str>, (Dtype, Tensor)>,
    /// Bytes of storage read so far, against [`storage_budget`].
    inflated: u64,
}

impl Materializer {
    pub fn new(
        path: Utf8PathBuf,
        source: Box<dyn StorageSource>,
        file_len: u64,
        big_endian: bool,
    ) -> Self {
        Materializer {
            path,
            source,
            file_len,
            big_endian,
            storages: HashMap::new(),
            inflated: 0,
        }
    }

    fn malformed(&self, detail: String) -> PytorchFileError {
        PytorchFileError::Malformed {
            path: self.path.clone(),
            detail,
        }
    }

    /// The tensor `name` described by `spec`, as a contiguous CPU tensor with its own dtype.
    pub fn tensor(&mut self, name: &str, spec: &TensorSpec) -> Result<Tensor, PytorchFileError> {
        let storage = &spec.storage;
        let kind = storage.dtype.kind();
        let (view_start, view_len) = storage.view.unwrap_or((0, storage.numel));
        if view_start
            .checked_add(view_len)
            .is_none_or(|end| end > storage.numel)
        {
            return Err(self.malformed(format!(
                "storage view ({view_start}, {view_len}) lies outside storage `{}` of {} elements",
                storage.key, storage.numel
            )));
        }
        if spec.size.len() != spec.stride.len()
            || spec.size.iter().chain(&spec.stride).any(|&v| v < 0)
            || spec.offset < 0
        {
            return Err(self.malformed(format!(
                "tensor `{name}` has an invalid layout: shape {:?}, strides {:?}, offset {}",
                spec.size, spec.stride, spec.offset
            )));
        }
        let numel = spec
            .size
            .iter()
            .try_fold(1u64, |n, &s| n.checked_mul(s as u64));
        let limit = self.file_len.max(1 << 20).saturating_mul(MAX_EXPANSION);
        let tensor_err = |source| PytorchFileError::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            source,
        };
        match numel.and_then(|n| n.checked_mul(storage.dtype.element_size() as u64)) {
            None => return Err(self.malformed(format!("tensor `{name}` of shape {:?} overflows", spec.size))),
            Some(0) => return Tensor::f_zeros(&spec.size, (kind, Device::Cpu)).map_err(tensor_err),
            Some(bytes) if bytes > limit => {
                return Err(self.malformed(format!(
                    "tensor `{name}` of shape {:?} would take {bytes} bytes, more than {MAX_EXPANSION} times the file",
                    spec.size
                )))
            }
            Some(_) => {}
        }
        // The last element the view reaches, relative to the start of the (possibly sliced) storage.
        let last = spec
            .size
            .iter()
            .zip(&spec.stride)
            .try_fold(spec.offset as u64, |end, (&size, &stride)| {
                end.checked_add((size as u64 - 1).checked_mul(stride as u64)?)
            });
        let needed = last.and_then(|l| l.checked_add(1));
        if needed.is_none_or(|n| n > view_len) {
            return Err(PytorchFileError::StorageTooShort {
                path: self.path.clone(),
                tensor: name.to_owned(),
                storage: storage.key.to_string(),
                size: spec.size.clone(),
                stride: spec.stride.clone(),
                offset: spec.offset,
                needed: needed.unwrap_or(u64::MAX),
                available: view_len,
            });
        }
        let base = self.storage(storage)?;
        // `needed` fits in the storage, whose byte size fits in memory, so these fit in i64.
        base.f_as_strided(
            &spec.size,
            &spec.stride,
            (view_start + spec.offset as u64) as i64,
        )
        .and_then(|view| view.f_contiguous())
        .map_err(|source| PytorchFileError::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            source,
        })
    }

    /// The whole storage as a 1-D tensor, read on first use.
    fn storage(&mut self, storage: &StorageRef) -> Result<Tensor, PytorchFileError> {
        if let Some((dtype, tensor)) = self.storages.get(&storage.key) {
            if *dtype != storage.dtype {
                return Err(self.malformed(format!(
                    "storage `{}` is referenced both as {dtype:?} and as {:?}",
                    storage.key, storage.dtype
                )));
            }
            return Ok(tensor.shallow_clone());
        }
        let size = storage.dtype.element_size();
        let nbytes = storage
            .numel
            .checked_mul(size as u64)
            .filter(|&n| n <= storage_budget(self.file_len).saturating_sub(self.inflated));
        let Some(nbytes) = nbytes else {
            return Err(self.malformed(format!(
                "storage `{}` claims {} elements, more than a file of {} bytes can hold ({} times its size, or 64 MiB, for all storages together)",
                storage.key, storage.numel, self.file_len, MAX_EXPANSION
            )));
        };
        self.inflated += nbytes;
        let mut bytes = self.source.read(&storage.key, nbytes)?;
        if (bytes.len() as u64) < nbytes {
            let detail = format!(
                "storage `{}` has {} of its {nbytes} bytes",
                storage.key,
                bytes.len()
            );
            return Err(PytorchFileError::Truncated {
                path: self.path.clone(),
                detail,
            });
        }
        if self.big_endian && size > 1 {
            bytes
                .to_mut()
                .chunks_exact_mut(size)
                .for_each(|element| element.reverse());
        }
        if storage.dtype == Dtype::Bool && bytes.iter().any(|&b| b > 1) {
            // libtorch assumes bools are 0 or 1; Python's `bool(byte)` is what torch would show.
            bytes
                .to_mut()
                .iter_mut()
                .for_each(|b| *b = u8::from(*b != 0));
        }
        let numel = storage.numel as i64;
        let tensor =
            Tensor::f_from_data_size(&bytes, &[numel], storage.dtype.kind()).map_err(|source| {
                PytorchFileError::Tensor {
                    path: self.path.clone(),
                    tensor: format!("storage {}", storage.key),
                    source,
                }
            })?;
        self.storages.insert(
            Rc::clone(&storage.key),
            (storage.dtype, tensor.shallow_clone()),
        );
        Ok(tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One storage `s` held in memory.
    struct InMemory(Vec<u8>);

    impl StorageSource for InMemory {
        fn read(&mut self, _key: &str, nbytes: u64) -> Result<Cow<'_, [u8]>, PytorchFileError> {
            Ok(Cow::Borrowed(
                self.0.get(..nbytes as usize).unwrap_or(&self.0),
            ))
        }
    }

    fn materializer(bytes: Vec<u8>, big_endian: bool) -> Materializer {
        Materializer::new(
            "test.pt".into(),
            Box::new(InMemory(bytes)),
            1 << 10,
            big_endian,
        )
    }

    fn spec(numel: u64, offset: i64, size: &[i64], stride: &[i64]) -> TensorSpec {
        let storage = Rc::new(StorageRef {
            key: "s".into(),
            dtype: Dtype::F32,
            numel,
            view: None,
        });
        TensorSpec {
            storage,
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn floats(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    #[test]
    fn a_strided_view_reads_the_elements_it_names() {
        let mut m = materializer(floats(12), false);
        let t = m.tensor("w", &spec(12, 1, &[2, 2], &[1, 4])).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            [1.0, 5.0, 2.0, 6.0]
        );
        let scalar = m.tensor("s", &spec(12, 11, &[], &[])).unwrap();
        assert_eq!((scalar.size(), scalar.double_value(&[])), (vec![], 11.0));
    }

    #[test]
    fn a_view_past_the_end_of_its_storage_is_refused() {
        let err = materializer(floats(12), false)
            .tensor("w", &spec(12, 1, &[3, 4], &[4, 1]))
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                PytorchFileError::StorageTooShort {
                    needed: 13,
                    available: 12,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("test.pt") && err.to_string().contains("`w`"),
            "{err}"
        );
    }

    /// A source that would hand out any number of zero bytes, as a deflated zip bomb inflates,
    /// and counts what it was asked for.
    struct Zeros(u64);

    impl StorageSource for Zeros {
        fn read(&mut self, _key: &str, nbytes: u64) -> Result<Cow<'_, [u8]>, PytorchFileError> {
            self.0 += nbytes;
            Ok(Cow::Owned(vec![0; nbytes as usize]))
        }
    }

    #[test]
    fn storages_inflate_no_further_than_the_files_budget() {
        let budget_elements = storage_budget(1 << 10) / 4;
        let mut m = Materializer::new("bomb.pt".into(), Box::new(Zeros(0)), 1 << 10, false);
        // A tiny view into a storage that claims more than the whole budget: refused unread.
        let err = m
            .tensor("w", &spec(budget_elements + 1, 0, &[3], &[1]))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("more than a file of 1024 bytes can hold"),
            "{err}"
        );
        // Two storages of two thirds of the budget each: the second one is over what is left.
        let two_thirds = budget_elements * 2 / 3;
        let storage = |key: &str| {
            Rc::new(StorageRef {
                key: key.into(),
                dtype: Dtype::F32,
                numel: two_thirds,
                view: None,
            })
        };
        let view = |storage| TensorSpec {
            storage,
            offset: 0,
            size: vec![3],
            stride: vec![1],
        };
        assert!(m.tensor("a", &view(storage("a"))).is_ok());
        assert!(m.tensor("b", &view(storage("b"))).is_err());
    }

    #[test]
    fn an_overflowing_or_huge_shape_is_refused_before_allocating() {
        let mut m = materializer(floats(1), false);
        assert!(m.tensor("w", &spec(1, 0, &[i64::MAX, 4], &[0, 0])).is_err());
        assert!(m.tensor("w", &spec(1, 0, &[1 << 30], &[0])).is_err());
        assert!(m.tensor("w", &spec(1, 0, &[2], &[-1])).is_err());
        assert_eq!(m.tensor("w", &spec(1, 0, &[3], &[0])).unwrap().size(), [3]);
    }

    #[test]
    fn a_legacy_storage_view_offsets_and_bounds_the_tensor() {
        let mut m = materializer(floats(12), false);
        let storage = Rc::new(StorageRef {
            key: "s".into(),
            dtype: Dtype::F32,
            numel: 12,
            view: Some((2, 4)),
        });
        let spec = |offset, size: i64| TensorSpec {
            storage: Rc::clone(&storage),
            offset,
            size: vec![size],
            stride: vec![1],
        };
        let t = m.tensor("w", &spec(1, 3)).unwrap();
        assert_eq!(Vec::<f32>::try_from(t).unwrap(), [3.0, 4.0, 5.0]);
        let err = m.tensor("w", &spec(1, 4)).err().unwrap();
        assert!(
            matches!(
                err,
                PytorchFileError::StorageTooShort {
                    needed: 5,
                    available: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn big_endian_storages_are_swapped() {
        let bytes = (0..3).flat_map(|i| (i as f32).to_be_bytes()).collect();
        let t = materializer(bytes, true)
            .tensor("w", &spec(3, 0, &[3], &[1]))
            .unwrap();
        assert_eq!(Vec::<f32>::try_from(t).unwrap(), [0.0, 1.0, 2.0]);
    }
}
