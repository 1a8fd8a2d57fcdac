//! A reader for the numeric arrays of MATLAB level-5 MAT-files (spec: "MAT-File Format",
//! <https://www.mathworks.com/help/pdf_doc/matlab/matfile_format.pdf>), enough for SVHN's
//! `{train,test}_32x32.mat` and files written by `scipy.io.savemat`.
//!
//! Layout: a 128-byte header (text, subsystem offset, version `0x0100`, endian indicator `IM` for
//! little-endian files or `MI` for big-endian ones at bytes 126..128), then data elements. Each
//! element has an 8-byte tag (data type u32, byte count u32) and data padded to 8 bytes, or the
//! "small data element" form: byte count and type packed into one u32 (count in the upper 16
//! bits) and up to 4 bytes of data in the same 8 bytes. Variables are `miMATRIX` elements, often
//! wrapped in an unpadded `miCOMPRESSED` (zlib) element. A matrix holds sub-elements: array flags
//! (class in the low byte), dimensions (`miINT32`), name (`miINT8`) and the real part, stored in
//! any numeric type (MATLAB stores a double array of small integers as `miUINT8`). Values are in
//! column-major order. Cells, structs, sparse and char arrays are skipped; of a complex array only
//! the real part is kept.

use std::io::Read;
use std::ops::Range;

const HEADER_LEN: usize = 128;
const TAG_LEN: usize = 8;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// Array classes `mxDOUBLE_CLASS` (6) to `mxUINT64_CLASS` (15).
const NUMERIC_CLASSES: std::ops::RangeInclusive<u8> = 6..=15;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Endian {
    Little,
    Big,
}

#[derive(Debug, thiserror::Error)]
pub enum MatError {
    #[error("not a MATLAB 5 MAT-file: expected endian indicator `IM` or `MI` at bytes 126..128, found {found:?} (MATLAB 7.3 files are HDF5: save with `-v7` instead)")]
    NotMat5 { found: String },
    #[error("truncated: the element at byte {offset} needs {expected} bytes, found {found}")]
    Truncated {
        offset: usize,
        expected: usize,
        found: usize,
    },
    #[error("cannot decompress the element at byte {offset}: {source}")]
    Decompress {
        offset: usize,
        source: std::io::Error,
    },
    #[error("expected {expected} at byte {offset} of a matrix, found data type {found}")]
    UnexpectedElement {
        offset: usize,
        expected: &'static str,
        found: u32,
    },
    #[error("variable `{name}`: unsupported data type {data_type} for numbers")]
    UnsupportedType { name: String, data_type: u32 },
    #[error(
        "variable `{name}`: {found} bytes of data type {data_type} do not fill dimensions {dims:?}"
    )]
    SizeMismatch {
        name: String,
        dims: Vec<usize>,
        data_type: u32,
        found: usize,
    },
    #[error("variable `{name}`: value {value} at index {index} is not an integer in 0..=255")]
    NotU8 {
        name: String,
        index: usize,
        value: f64,
    },
}

/// One numeric variable: its name, MATLAB dimensions and real part as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub name: String,
    /// Dimensions in MATLAB order (rows first); data is column-major.
    pub dims: Vec<usize>,
    /// The array class (6 = double, 9 = uint8, ...).
    pub class: u8,
    data_type: u32,
    data: Vec<u8>,
    endian: Endian,
}

/// One element: its data type, where its data lies in the buffer and where the next one starts.
struct Element {
    data_type: u32,
    data: Range<usize>,
    next: usize,
}

/// Parses all numeric variables of a MAT-file held in memory.
pub fn parse(bytes: &[u8]) -> Result<Vec<MatArray>, MatError> {
    let endian = endian(bytes)?;
    let mut arrays = Vec::new();
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        let element = element(bytes, offset, endian)?;
        let array = match element.data_type {
            MI_COMPRESSED => compressed_matrix(&bytes[element.data.clone()], offset, endian)?,
            MI_MATRIX => matrix(bytes, element.data.clone(), endian)?
                .map(|(array, range)| array.with_data(bytes[range].to_vec())),
            _ => None,
        };
        arrays.extend(array);
        offset = element.next;
    }
    Ok(arrays)
}

fn endian(bytes: &[u8]) -> Result<Endian, MatError> {
    match bytes.get(HEADER_LEN - 2..HEADER_LEN) {
        Some(b"IM") => Ok(Endian::Little),
        Some(b"MI") => Ok(Endian::Big),
        Some(other) => Err(MatError::NotMat5 {
            found: String::from_utf8_lossy(other).into_owned(),
        }),
        None => Err(MatError::Truncated {
            offset: 0,
            expected: HEADER_LEN,
            found: bytes.len(),
        }),
    }
}

fn read_u32(buf: &[u8], offset: usize, endian: Endian) -> Result<u32, MatError> {
    let b: [u8; 4] = buf
        .get(offset..offset + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(MatError::Truncated {
            offset,
            expected: 4,
            found: buf.len().saturating_sub(offset),
        })?;
    Ok(match endian {
        Endian::Little => u32::from_le_bytes(b),
        Endian::Big => u32::from_be_bytes(b),
    })
}

/// Reads the tag at `offset`, handling the small data element form.
fn element(buf: &[u8], offset: usize, endian: Endian) -> Result<Element, MatError> {
    let word = read_u32(buf, offset, endian)?;
    let (data_type, start, len, next) = if word >> 16 != 0 {
        let len = (word >> 16) as usize;
        (word & 0xffff, offset + 4, len, offset + TAG_LEN)
    } else {
        let len = read_u32(buf, offset + 4, endian)? as usize;
        let padded = if word == MI_COMPRESSED {
            len
        } else {
            len.div_ceil(TAG_LEN) * TAG_LEN
        };
        (word, offset + TAG_LEN, len, offset + TAG_LEN + padded)
    };
    if start + len > buf.len() {
        return Err(MatError::Truncated {
            offset,
            expected: start + len - offset,
            found: buf.len() - offset,
        });
    }
    Ok(Element {
        data_type,
        data: start..start + len,
        next,
    })
}

fn compressed_matrix(
    zlib: &[u8],
    offset: usize,
    endian: Endian,
) -> Result<Option<MatArray>, MatError> {
    let mut inner = Vec::with_capacity(zlib.len() * 2);
    flate2::read::ZlibDecoder::new(zlib)
        .read_to_end(&mut inner)
        .map_err(|source| MatError::Decompress { offset, source })?;
    let element = element(&inner, 0, endian)?;
    if element.data_type != MI_MATRIX {
        return Ok(None);
    }
    let Some((array, range)) = matrix(&inner, element.data, endian)? else {
        return Ok(None);
    };
    // Reuse the decompressed buffer for the values instead of copying up to hundreds of MB.
    inner.truncate(range.end);
    inner.drain(..range.start);
    Ok(Some(array.with_data(inner)))
}

fn expect(
    element: &Element,
    data_type: u32,
    what: &'static str,
    offset: usize,
) -> Result<(), MatError> {
    if element.data_type == data_type {
        Ok(())
    } else {
        Err(MatError::UnexpectedElement {
            offset,
            expected: what,
            found: element.data_type,
        })
    }
}

/// Parses a matrix's sub-elements in `buf[range]`; `None` for non-numeric classes. Returns the
/// array without data and the range of its real part.
fn matrix(
    buf: &[u8],
    range: Range<usize>,
    endian: Endian,
) -> Result<Option<(MatArray, Range<usize>)>, MatError> {
    let body = &buf[..range.end];
    let flags = element(body, range.start, endian)?;
    expect(&flags, MI_UINT32, "array flags (miUINT32)", range.start)?;
    let class = (read_u32(body, flags.data.start, endian)? & 0xff) as u8;
    let dims_el = element(body, flags.next, endian)?;
    expect(&dims_el, MI_INT32, "dimensions (miINT32)", flags.next)?;
    let dims = dims_el
        .data
        .clone()
        .step_by(4)
        .map(|at| read_u32(body, at, endian).map(|d| d as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let name_el = element(body, dims_el.next, endian)?;
    expect(&name_el, MI_INT8, "array name (miINT8)", dims_el.next)?;
    let name = String::from_utf8_lossy(&body[name_el.data.clone()]).into_owned();
    if !NUMERIC_CLASSES.contains(&class) {
        return Ok(None);
    }
    let real = element(body, name_el.next, endian)?;
    let array = MatArray {
        name,
        dims,
        class,
        data_type: real.data_type,
        data: Vec::new(),
        endian,
    };
    let size = type_size(real.data_type).ok_or_else(|| MatError::UnsupportedType {
        name: array.name.clone(),
        data_type: real.data_type,
    })?;
    if real.data.len() != array.len() * size {
        return Err(MatError::SizeMismatch {
            name: array.name,
            dims: array.dims,
            data_type: real.data_type,
            found: real.data.len(),
        });
    }
    Ok(Some((array, real.data)))
}

fn type_size(data_type: u32) -> Option<usize> {
    match data_type {
        MI_INT8 | MI_UINT8 => Some(1),
        MI_INT16 | MI_UINT16 => Some(2),
        MI_INT32 | MI_UINT32 | MI_SINGLE => Some(4),
        MI_DOUBLE | MI_INT64 | MI_UINT64 => Some(8),
        _ => None,
    }
}

impl MatArray {
    fn with_data(self, data: Vec<u8>) -> Self {
        MatArray { data, ..self }
    }

    /// Number of values (product of the dimensions).
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f64, column-major.
    pub fn to_f64(&self) -> Vec<f64> {
        let size = type_size(self.data_type).unwrap_or(1);
        self.data
            .chunks_exact(size)
            .map(|b| self.value(b))
            .collect()
    }

    /// One stored value: normalised to little-endian in 8 bytes, then read as its data type.
    fn value(&self, bytes: &[u8]) -> f64 {
        let mut raw = [0u8; 8];
        raw[..bytes.len()].copy_from_slice(bytes);
        if self.endian == Endian::Big {
            raw[..bytes.len()].reverse();
        }
        let [a, b, c, d, ..] = raw;
        match self.data_type {
            MI_INT8 => a as i8 as f64,
            MI_UINT8 => a as f64,
            MI_INT16 => i16::from_le_bytes([a, b]) as f64,
            MI_UINT16 => u16::from_le_bytes([a, b]) as f64,
            MI_INT32 => i32::from_le_bytes([a, b, c, d]) as f64,
            MI_UINT32 => u32::from_le_bytes([a, b, c, d]) as f64,
            MI_SINGLE => f32::from_le_bytes([a, b, c, d]) as f64,
            MI_INT64 => i64::from_le_bytes(raw) as f64,
            MI_UINT64 => u64::from_le_bytes(raw) as f64,
            _ => f64::from_le_bytes(raw),
        }
    }

    /// The values as u8, column-major: stored `miUINT8` data is moved out as is; other types
    /// must hold integers in 0..=255.
    pub fn into_u8(self) -> Result<Vec<u8>, MatError> {
        if self.data_type == MI_UINT8 {
            return Ok(self.data);
        }
        self.to_f64()
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                if value.fract() == 0.0 && (0.0..=255.0).contains(&value) {
                    Ok(value as u8)
                } else {
                    Err(MatError::NotU8 {
                        name: self.name.clone(),
                        index,
                        value,
                    })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A tag plus data padded to 8 bytes, little-endian.
    fn el(data_type: u32, data: &[u8]) -> Vec<u8> {
        let mut out = data_type.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    /// The small data element form: count and type in one word, data in the next 4 bytes.
    fn small(data_type: u32, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() as u32) << 16 | data_type)
            .to_le_bytes()
            .to_vec();
        out.extend_from_slice(data);
        out.resize(8, 0);
        out
    }

    fn matrix_el(class: u8, dims: &[i32], name: &str, real: Vec<u8>) -> Vec<u8> {
        let mut body = el(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(el(
            MI_INT32,
            &dims
                .iter()
                .flat_map(|d| d.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        body.extend(if name.len() <= 4 {
            small(MI_INT8, name.as_bytes())
        } else {
            el(MI_INT8, name.as_bytes())
        });
        body.extend(real);
        el(MI_MATRIX, &body)
    }

    fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![b' '; 124];
        out.extend_from_slice(&[0x00, 0x01]);
        out.extend_from_slice(b"IM");
        for e in elements {
            out.extend_from_slice(e);
        }
        out
    }

    fn compressed(element: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(element).unwrap();
        let zlib = z.finish().unwrap();
        let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
        out.extend_from_slice(&(zlib.len() as u32).to_le_bytes());
        out.extend(zlib);
        out
    }

    #[test]
    fn reads_plain_compressed_and_small_elements() {
        let x = matrix_el(9, &[2, 3], "X", el(MI_UINT8, &[1, 2, 3, 4, 5, 6]));
        // A double array stored compactly as uint8 in a small element, as MATLAB does.
        let y = matrix_el(6, &[1, 2], "y", small(MI_UINT8, &[10, 3]));
        let labels = matrix_el(
            6,
            &[1, 1],
            "long_name",
            el(MI_DOUBLE, &2.5f64.to_le_bytes()),
        );
        let arrays = parse(&file(&[x, compressed(&y), compressed(&labels)])).unwrap();
        assert_eq!(arrays.len(), 3);
        assert_eq!(
            (arrays[0].name.as_str(), arrays[0].dims.clone()),
            ("X", vec![2, 3])
        );
        assert_eq!(arrays[0].clone().into_u8().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(arrays[1].to_f64(), vec![10.0, 3.0]);
        assert_eq!(arrays[2].name, "long_name");
        assert_eq!(arrays[2].to_f64(), vec![2.5]);
        assert!(matches!(
            arrays[2].clone().into_u8(),
            Err(MatError::NotU8 { index: 0, .. })
        ));
    }

    #[test]
    fn skips_non_numeric_arrays() {
        let chars = matrix_el(4, &[1, 2], "s", small(16, b"hi"));
        let arrays = parse(&file(&[
            chars,
            matrix_el(9, &[1, 1], "n", small(MI_UINT8, &[7])),
        ]))
        .unwrap();
        assert_eq!(
            arrays.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["n"]
        );
    }

    #[test]
    fn rejects_other_files_and_truncation() {
        assert!(matches!(parse(&[0; 200]), Err(MatError::NotMat5 { .. })));
        assert!(matches!(parse(b"short"), Err(MatError::Truncated { .. })));
        let bytes = file(&[matrix_el(
            9,
            &[2, 3],
            "X",
            el(MI_UINT8, &[1, 2, 3, 4, 5, 6]),
        )]);
        let err = parse(&bytes[..bytes.len() - 9]).unwrap_err();
        assert!(
            matches!(err, MatError::Truncated { offset: 128, .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_data_that_does_not_fill_the_dimensions() {
        let bytes = file(&[matrix_el(9, &[2, 3], "X", el(MI_UINT8, &[1, 2, 3]))]);
        let err = parse(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("3 bytes of data type 2 do not fill dimensions [2, 3]"),
            "{err}"
        );
    }

    #[test]
    fn reads_big_endian_files() {
        let mut bytes = vec![b' '; 124];
        bytes.extend_from_slice(&[0x01, 0x00]);
        bytes.extend_from_slice(b"MI");
        let be = |t: u32, data: &[u8]| {
            let mut out = t.to_be_bytes().to_vec();
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(8) * 8, 0);
            out
        };
        let mut body = be(MI_UINT32, &[0, 0, 0, 6, 0, 0, 0, 0]);
        body.extend(be(MI_INT32, &[0, 0, 0, 1, 0, 0, 0, 2]));
        body.extend(be(MI_INT8, b"v"));
        body.extend(be(MI_INT16, &[0x01, 0x02, 0xff, 0xfe]));
        bytes.extend(be(MI_MATRIX, &body));
        let arrays = parse(&bytes).unwrap();
        assert_eq!(arrays[0].to_f64(), vec![258.0, -2.0]);
    }
}
