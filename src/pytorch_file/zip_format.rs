//! The zip format of `torch.save` (torch >= 1.6): a zip archive with one top folder, whose name
//! varies (the file's stem, or `archive`), holding `data.pkl` (the object pickle; storages are
//! persistent ids `('storage', type, key, location, numel)`), `data/<key>` (each storage's raw bytes,
//! stored uncompressed), `byteorder` (`little` or `big`; absent in files older than torch 1.10:
//! little) and `version`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};

use camino::{Utf8Path, Utf8PathBuf};
use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::unpickle;
use super::tensor::{storage_budget, Materializer, StorageSource};
use super::{Loaded, PytorchFileError};

type Archive = ZipArchive<BufReader<File>>;

/// Opens the archive, unpickles `data.pkl` and leaves the storages to be read on demand.
pub fn open(path: &Utf8Path, file: File, file_len: u64) -> Result<Loaded, PytorchFileError> {
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| match e {
        ZipError::Io(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            PytorchFileError::Io {
                path: path.to_owned(),
                source,
            }
        }
        // The zip directory sits at the end of the file; a cut file loses it first.
        other => PytorchFileError::Truncated {
            path: path.to_owned(),
            detail: format!(
                "it starts like a zip archive but its zip directory cannot be read ({other})"
            ),
        },
    })?;
    let Some(prefix) = top_folder(&archive) else {
        let names: Vec<&str> = archive.file_names().take(5).collect();
        let found = format!(
            "a zip archive without a data.pkl entry (entries: {})",
            names.join(", ")
        );
        return Err(PytorchFileError::NotTorchFile {
            path: path.to_owned(),
            found,
        });
    };
    if archive
        .index_for_name(&format!("{prefix}constants.pkl"))
        .is_some()
    {
        let found = "a TorchScript archive (written by torch.jit.save, not torch.save)".to_owned();
        return Err(PytorchFileError::NotTorchFile {
            path: path.to_owned(),
            found,
        });
    }
    let big_endian = match read_entry(path, &mut archive, &format!("{prefix}byteorder"), 16)? {
        None => false,
        Some(order) => match order.trim_ascii() {
            b"little" => false,
            b"big" => true,
            other => {
                let detail = format!(
                    "byteorder entry says {:?}, expected \"little\" or \"big\"",
                    String::from_utf8_lossy(other)
                );
                return Err(PytorchFileError::Malformed {
                    path: path.to_owned(),
                    detail,
                });
            }
        },
    };
    let part = format!("{prefix}data.pkl");
    let data = read_entry(path, &mut archive, &part, file_len)?.unwrap_or_default();
    let pickled = unpickle(&data).map_err(|source| super::pickle_error(path, &part, source))?;
    tracing::debug!(%path, entries = archive.len(), big_endian, "torch zip archive");
    let source = ZipStorages {
        path: path.to_owned(),
        archive,
        prefix,
        file_len,
    };
    Ok(Loaded {
        pickled,
        materializer: Materializer::new(path.to_owned(), Box::new(source), file_len, big_endian),
    })
}

/// The top folder (with its trailing `/`) of the entry `<folder>/data.pkl`.
fn top_folder(archive: &Archive) -> Option<String> {
    archive.file_names().find_map(|name| {
        let folder = name.strip_suffix("data.pkl")?;
        let single_level = folder.is_empty() || folder.find('/') == Some(folder.len() - 1);
        single_level.then(|| folder.to_owned())
    })
}

/// The bytes of entry `name` (at most `limit`), or `None` if the archive has no such entry.
fn read_entry(
    path: &Utf8Path,
    archive: &mut Archive,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, PytorchFileError> {
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt_entry(path, name, e.to_string())),
    };
    let mut bytes = Vec::with_capacity(entry.size().min(limit) as usize);
    (&mut entry)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt_entry(path, name, e.to_string()))?;
    Ok(Some(bytes))
}

fn corrupt_entry(path: &Utf8Path, name: &str, problem: String) -> PytorchFileError {
    PytorchFileError::Malformed {
        path: path.to_owned(),
        detail: format!("cannot read archive entry `{name}`: {problem}"),
    }
}

/// The `data/<key>` entries of an open archive.
struct ZipStorages {
    path: Utf8PathBuf,
    archive: Archive,
    prefix: String,
    file_len: u64,
}

impl StorageSource for ZipStorages {
    fn read(&mut self, key: &str, nbytes: u64) -> Result<Cow<'_, [u8]>, PytorchFileError> {
        let name = format!("{}data/{key}", self.prefix);
        // The materializer asks for no more than the file's storage budget, so a deflated entry
        // inflates no further than that.
        let bytes = read_entry(
            &self.path,
            &mut self.archive,
            &name,
            nbytes.min(storage_budget(self.file_len)),
        )?
        .ok_or_else(|| PytorchFileError::MissingStorage {
            path: self.path.clone(),
            storage: key.to_owned(),
            detail: format!("the archive has no entry `{name}`"),
        })?;
        if (bytes.len() as u64) < nbytes {
            let detail = format!(
                "archive entry `{name}` holds {} bytes, the pickle declares {nbytes}",
                bytes.len()
            );
            return Err(PytorchFileError::Malformed {
                path: self.path.clone(),
                detail,
            });
        }
        Ok(Cow::Owned(bytes))
    }
}
