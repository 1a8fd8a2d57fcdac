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
        let mut entry = archive.by_index(index).map_err(zip_error)?;
        let name = entry
            .name()
            .strip_suffix(".npy")
            .unwrap_or(entry.name())
            .to_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| NpzError::Entry {
                path: path.to_owned(),
                name: name.clone(),
                source,
            })?;
        let array = parse_npy(&bytes).map_err(|problem| NpzError::Array {
            path: path.to_owned(),
            name: name.clone(),
            problem,
        })?;
        arrays.insert(name, array);
    }
    Ok(arrays)
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
    if !bytes.starts_with(MAGIC) || bytes.len() < MAGIC.len() + 4 {
        return Err("not a .npy array (bad magic)".into());
    }
    let major = bytes[MAGIC.len()];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        other => return Err(format!(".npy format version {other} is not supported")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("the header is cut off")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr = header_value(header, "descr").ok_or("the header has no `descr`")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        header_value(header, "fortran_order").ok_or("the header has no `fortran_order`")? == "True";
    let shape = parse_shape(header_value(header, "shape").ok_or("the header has no `shape`")?)?;
    let count: usize = shape.iter().product();
    let payload = &bytes[start + header_len..];
    let width = match descr {
        "<f8" => 8,
        "<f4" => 4,
        other => return Err(format!("dtype `{other}` is not supported (expected little-endian float64 `<f8` or float32 `<f4`)")),
    };
    if payload.len() < count * width {
        return Err(format!(
            "truncated: {count} values of {width} bytes need {} bytes, found {}",
            count * width,
            payload.len()
        ));
    }
    let data: Vec<f64> = payload[..count * width]
        .chunks_exact(width)
        .map(|c| match c {
            [a, b, c, d] => f64::from(f32::from_le_bytes([*a, *b, *c, *d])),
            _ => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
        })
        .collect();
    let data = if fortran {
        fortran_to_c(&data, &shape)
    } else {
        data
    };
    Ok(NpyArray { shape, data })
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
}
