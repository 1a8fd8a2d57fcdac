//! numpy's `.npy` arrays and `.npz` archives (a zip of `.npy` files), as far as FID statistics
//! need them: little-endian `f8` and `f4` (read as f64), any shape, C or Fortran order.
//!
//! pytorch-fid writes its statistics with `np.savez_compressed(path, mu=mu, sigma=sigma)`: a
//! deflated zip holding `mu.npy` (`[D]` f8) and `sigma.npy` (`[D, D]` f8). [`write_npz`]
//! writes the same layout (format version 1.0 headers, padded to 64 bytes like numpy's).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use camino::{Utf8Path, Utf8PathBuf};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array of f64 values in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Why an `.npy`/`.npz` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a numpy .npz archive: {source}")]
    Zip {
        path: Utf8PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{path} is not a numpy .npz archive: entry `{name}`: {source}")]
    Entry {
        path: Utf8PathBuf,
        name: String,
        source: std::io::Error,
    },
    #[error("{path}: array `{name}`: {problem}")]
    Array {
        path: Utf8PathBuf,
        name: String,
        problem: String,
    },
    #[error(
        "{path} has no array `{name}` (it has: {found}); FID statistics hold `mu` and `sigma`"
    )]
    MissingArray {
        path: Utf8PathBuf,
        name: String,
        found: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteZip {
        path: Utf8PathBuf,
        source: zip::result::ZipError,
    },
}

/// Reads every array of an `.npz` archive, by name (without `.npy`).
pub fn read_npz(path: &Utf8Path) -> Result<BTreeMap<String, NpyArray>, NpzError> {
    let zip_error = |source| NpzError::Zip {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| NpzError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    let mut arrays = BTreeMap::new();
    for index in 0..archive.len() {
        let entry = archive.by_index(index).map_err(zip_error)?;
        let name = entry
            .name()
            .strip_suffix(".npy")
            .unwrap_or(entry.name())
            .to_owned();
        let array = read_npy(entry).map_err(|problem| match problem {
            NpyReadError::Io(source) => NpzError::Entry {
                path: path.to_owned(),
                name: name.clone(),
                source,
            },
            NpyReadError::Invalid(problem) => NpzError::Array {
                path: path.to_owned(),
                name: name.clone(),
                problem,
            },
        })?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

/// The most bytes one array may hold: pytorch-fid's largest statistics (a 2048x2048 f8 sigma)
/// take 32 MiB, so this is room to spare, while a few KB of deflated zeros claiming gigabytes
/// (a zip bomb) are refused before anything is inflated past it.
pub const MAX_ARRAY_BYTES: usize = 512 << 20;

/// The longest header read: numpy's own are under 100 bytes.
const MAX_HEADER_BYTES: usize = 1 << 16;

enum NpyReadError {
    Io(std::io::Error),
    Invalid(String),
}

/// Reads one `.npy` from a stream, inflating no more than its header says the data needs.
fn read_npy(mut reader: impl Read) -> Result<NpyArray, NpyReadError> {
    let mut bytes = vec![0; MAGIC.len() + 4];
    read_exactly(&mut reader, &mut bytes)?;
    let (header_len, start) = header_extent(&bytes).map_err(NpyReadError::Invalid)?;
    if header_len > MAX_HEADER_BYTES {
        return Err(NpyReadError::Invalid(format!(
            "a header of {header_len} bytes is not a numpy header"
        )));
    }
    bytes.resize(start + header_len, 0);
    read_exactly(&mut reader, &mut bytes[MAGIC.len() + 4..])?;
    let header = parse_header(&bytes[start..]).map_err(NpyReadError::Invalid)?;
    let data_start = bytes.len();
    bytes.resize(data_start + header.data_bytes, 0);
    read_exactly(&mut reader, &mut bytes[data_start..])?;
    // Reading on to the end is what makes the zip reader check the entry's CRC.
    let mut past_end = [0; 1];
    match reader.read(&mut past_end).map_err(NpyReadError::Io)? {
        0 => Ok(decode(&bytes[data_start..], header)),
        _ => Err(NpyReadError::Invalid(
            "data continues past the size its header gives".into(),
        )),
    }
}

fn read_exactly(reader: &mut impl Read, buffer: &mut [u8]) -> Result<(), NpyReadError> {
    reader.read_exact(buffer).map_err(|error| {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            NpyReadError::Invalid("truncated: the array ends before its header says".into())
        } else {
            NpyReadError::Io(error)
        }
    })
}

/// Takes array `name` out of `arrays` read from `path`, or says which arrays there are.
pub fn take_array(
    arrays: &mut BTreeMap<String, NpyArray>,
    name: &str,
    path: &Utf8Path,
) -> Result<NpyArray, NpzError> {
    let found = arrays.keys().cloned().collect::<Vec<_>>().join(", ");
    arrays.remove(name).ok_or_else(|| NpzError::MissingArray {
        path: path.to_owned(),
        name: name.to_owned(),
        found,
    })
}

/// Writes `arrays` as a deflated `.npz` archive of little-endian f8 `.npy` files.
pub fn write_npz(path: &Utf8Path, arrays: &[(&str, &NpyArray)]) -> Result<(), NpzError> {
    let write_error = |source| NpzError::Write {
        path: path.to_owned(),
        source,
    };
    let zip_error = |source| NpzError::WriteZip {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, array) in arrays {
        zip.start_file(format!("{name}.npy"), options)
            .map_err(zip_error)?;
        zip.write_all(&npy_bytes(array)).map_err(write_error)?;
    }
    let mut inner = zip.finish().map_err(zip_error)?;
    inner.flush().map_err(write_error)
}

/// One array as `.npy` version 1.0 bytes.
pub fn npy_bytes(array: &NpyArray) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads with spaces so that magic + version + length + header is a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + array.data.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for value in &array.data {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Parses `.npy` bytes (versions 1 to 3); the error says what was wrong.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    let (header_len, start) = header_extent(bytes)?;
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("the header is cut off")?;
    let header = parse_header(header)?;
    let payload = &bytes[start + header_len..];
    if payload.len() < header.data_bytes {
        return Err(format!(
            "truncated: {} bytes of data needed, found {}",
            header.data_bytes,
            payload.len()
        ));
    }
    Ok(decode(&payload[..header.data_bytes], header))
}

/// The header's length and where it starts, from the fixed preamble.
fn header_extent(bytes: &[u8]) -> Result<(usize, usize), String> {
    if !bytes.starts_with(MAGIC) || bytes.len() < MAGIC.len() + 4 {
        return Err("not a .npy array (bad magic)".into());
    }
    match bytes[MAGIC.len()] {
        1 => Ok((u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)),
        2 | 3 if bytes.len() >= 12 => Ok((
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )),
        2 | 3 => Err("the header is cut off".into()),
        other => Err(format!(".npy format version {other} is not supported")),
    }
}

/// What an array's header says about its data.
struct NpyHeader {
    shape: Vec<usize>,
    /// Bytes per value: 8 for `<f8`, 4 for `<f4`.
    width: usize,
    fortran: bool,
    /// Bytes of data that follow the header, checked against [`MAX_ARRAY_BYTES`].
    data_bytes: usize,
}

fn parse_header(header: &[u8]) -> Result<NpyHeader, String> {
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr = header_value(header, "descr").ok_or("the header has no `descr`")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        header_value(header, "fortran_order").ok_or("the header has no `fortran_order`")? == "True";
    let shape = parse_shape(header_value(header, "shape").ok_or("the header has no `shape`")?)?;
    let width = match descr {
        "<f8" => 8usize,
        "<f4" => 4,
        other => return Err(format!("dtype `{other}` is not supported (expected little-endian float64 `<f8` or float32 `<f4`)")),
    };
    let data_bytes = shape
        .iter()
        .try_fold(width, |bytes, &dim| bytes.checked_mul(dim))
        .filter(|&bytes| bytes <= MAX_ARRAY_BYTES)
        .ok_or_else(|| {
            format!(
                "shape {shape:?} of {width}-byte values is larger than the {} MiB an array may hold",
                MAX_ARRAY_BYTES >> 20
            )
        })?;
    Ok(NpyHeader {
        shape,
        width,
        fortran,
        data_bytes,
    })
}

/// The values of `payload` (exactly the header's data bytes) as f64 in C order.
fn decode(payload: &[u8], header: NpyHeader) -> NpyArray {
    let data: Vec<f64> = payload
        .chunks_exact(header.width)
        .map(|c| match c {
            [a, b, c, d] => f64::from(f32::from_le_bytes([*a, *b, *c, *d])),
            _ => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
        })
        .collect();
    let data = if header.fortran {
        fortran_to_c(&data, &header.shape)
    } else {
        data
    };
    NpyArray {
        shape: header.shape,
        data,
    }
}

/// The text of `key`'s value in a header dict like `{'descr': '<f8', 'shape': (3, 4), }`.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn parse_shape(text: &str) -> Result<Vec<usize>, String> {
    let inner = text.trim_start_matches('(').trim_end_matches(')');
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape `{text}`")))
        .collect()
}

/// Reorders column-major values of `shape` into row-major order.
fn fortran_to_c(data: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = data.len();
    let mut out = vec![0.0; n];
    for (f_index, &value) in data.iter().enumerate() {
        // Column-major index -> coordinates -> row-major index.
        let mut rest = f_index;
        let mut c_index = 0;
        let mut stride = 1;
        let coords: Vec<usize> = shape
            .iter()
            .map(|&dim| {
                let coord = rest % dim.max(1);
                rest /= dim.max(1);
                coord
            })
            .collect();
        for (coord, dim) in coords.iter().zip(shape).rev() {
            c_index += coord * stride;
            stride *= dim;
        }
        out[c_index] = value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("stats.npz");
        let mu = NpyArray {
            shape: vec![3],
            data: vec![1.0, -2.5, 1e-300],
        };
        let sigma = NpyArray {
            shape: vec![3, 3],
            data: (0..9).map(f64::from).collect(),
        };
        write_npz(&path, &[("mu", &mu), ("sigma", &sigma)]).unwrap();
        let mut arrays = read_npz(&path).unwrap();
        assert_eq!(take_array(&mut arrays, "mu", &path).unwrap(), mu);
        assert_eq!(take_array(&mut arrays, "sigma", &path).unwrap(), sigma);
        let missing = take_array(&mut arrays, "mu", &path)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no array `mu`"), "{missing}");
    }

    #[test]
    fn headers_are_padded_like_numpys() {
        let bytes = npy_bytes(&NpyArray {
            shape: vec![2, 2],
            data: vec![0.0; 4],
        });
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }"),
            "{header}"
        );
        assert!(header.ends_with(" \n"), "{header:?}");
    }

    #[test]
    fn reads_float32_fortran_order() {
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Column-major [[0, 1, 2], [3, 4, 5]]: 0 3 1 4 2 5.
        for v in [0f32, 3.0, 1.0, 4.0, 2.0, 5.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let array = parse_npy(&bytes).unwrap();
        assert_eq!(
            array,
            NpyArray {
                shape: vec![2, 3],
                data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
            }
        );
    }

    #[test]
    fn rejects_other_dtypes_and_truncation() {
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        assert!(parse_npy(&bytes)
            .unwrap_err()
            .contains("`<i8` is not supported"));
        let mut cut = npy_bytes(&NpyArray {
            shape: vec![4],
            data: vec![1.0; 4],
        });
        cut.truncate(cut.len() - 3);
        assert!(parse_npy(&cut).unwrap_err().contains("truncated"));
    }

    /// An `.npy` with `header` and then `data`, as raw bytes.
    fn raw_npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    /// Writes `entries` (name, bytes) as a deflated zip and reads it back with [`read_npz`].
    fn read_raw_npz(entries: &[(&str, Vec<u8>)]) -> Result<BTreeMap<String, NpyArray>, NpzError> {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("raw.npz")).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        read_npz(&path)
    }

    #[test]
    fn a_shape_whose_size_overflows_is_an_error_not_a_panic() {
        // 2**61 values of 8 bytes wrap a 64-bit byte count to 0.
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }";
        let npy = raw_npy(header, &[]);
        assert!(parse_npy(&npy).unwrap_err().contains("larger than"));
        let error = read_raw_npz(&[("mu.npy", npy)]).unwrap_err().to_string();
        assert!(
            error.contains("array `mu`") && error.contains("larger than"),
            "{error}"
        );
    }

    #[test]
    fn an_array_claiming_more_than_the_limit_is_refused_before_inflating() {
        let values = MAX_ARRAY_BYTES / 8 + 1;
        let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({values},), }}");
        // A few KB of deflated zeros would inflate to the gigabytes the header claims.
        let npy = raw_npy(&header, &vec![0; 1 << 20]);
        let error = read_raw_npz(&[("sigma.npy", npy)]).unwrap_err().to_string();
        assert!(error.contains("larger than the 512 MiB"), "{error}");
    }

    #[test]
    fn data_past_what_the_header_gives_is_refused() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let error = read_raw_npz(&[("mu.npy", raw_npy(header, &[0; 16 + (64 << 10)]))])
            .unwrap_err()
            .to_string();
        assert!(error.contains("continues past"), "{error}");
        let exact = read_raw_npz(&[("mu.npy", raw_npy(header, &[0; 16]))]).unwrap();
        assert_eq!(exact["mu"].data, [0.0, 0.0]);
    }
}
