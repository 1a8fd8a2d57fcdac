//! HTTP(S)/file downloads with resume, retries and checksums, and archive unpacking.
//!
//! [`fetch`] takes a [`Request`] (where from, the file name, the pinned digests, whether to
//! unpack, how hard to try) and leaves the file, or the archive's contents, in an output
//! directory:
//! - [`source`]: `https://`/`http://` URLs, `file://` URLs and plain local paths;
//! - [`http`]: the transfer itself, with timeouts, bounded retries and `Range` resumption;
//! - [`checksum`]: SHA-256/MD5 digests as recipes pin them, and their verification;
//! - [`archive`]: `.gz`, `.bz2`, `.zip`, `.tar`, `.tar.gz`/`.tgz`, `.tar.bz2`, with a guard against
//!   entries that would escape the output directory.
//!
//! The file is written as `<filename>.part` and renamed only once its digests match, so an
//! interrupted or corrupt download never looks finished. Progress, log lines and cancellation go
//! through an [`Observer`], which keeps this module free of the runner's types.

pub mod archive;
pub mod checksum;
pub mod error;
pub mod http;
pub mod source;

use std::fs;
use std::path::{Path, PathBuf};

pub use archive::{ArchiveKind, Unpacked};
pub use checksum::{Md5Hex, Pinned, Sha256Hex};
pub use error::DownloadError;
pub use http::HttpOptions;
pub use source::Source;

/// Bytes read and written per step; cancellation and progress are checked between steps.
const CHUNK: usize = 64 * 1024;

/// Receives progress and log lines and answers whether the user cancelled.
pub trait Observer {
    /// A new phase (downloading, verifying, unpacking) of `total` bytes, when known.
    fn phase(&self, message: &str, total: Option<u64>);
    /// Jumps to an absolute position, e.g. when a transfer resumes.
    fn position(&self, bytes: u64);
    /// `bytes` more were processed.
    fn advance(&self, bytes: u64);
    /// A line for the log (a retry, a restart).
    fn note(&self, line: &str);
    fn is_cancelled(&self) -> bool;

    fn check_cancelled(&self) -> Result<(), DownloadError> {
        if self.is_cancelled() {
            Err(DownloadError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    /// Name of the file in the output directory (also decides the archive format).
    pub filename: String,
    pub pinned: Pinned,
    /// Whether a missing checksum is an error.
    pub verify: bool,
    pub unpack: bool,
    /// The most bytes unpacking may write (a decompression bomb stops there); `None`: 100 times
    /// the archive's size, at least 1 GiB.
    pub max_unpacked_bytes: Option<u64>,
    pub http: HttpOptions,
}

/// What [`fetch`] left in the output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Size of the downloaded (or copied) file.
    pub bytes: u64,
    /// The archive's contents, when unpacked (the archive itself is then not kept).
    pub unpacked: Option<Unpacked>,
}

impl Request {
    /// Checks everything that can be checked before any byte moves.
    pub fn validate(&self) -> Result<(), DownloadError> {
        source::check_filename(&self.filename)?;
        if self.verify && self.pinned.is_empty() {
            return Err(DownloadError::ChecksumMissing {
                source_text: self.describe_source(),
            });
        }
        if self.unpack && ArchiveKind::detect(&self.filename).is_none() {
            return Err(DownloadError::ArchiveUnknown {
                file: PathBuf::from(&self.filename),
            });
        }
        Ok(())
    }

    fn describe_source(&self) -> String {
        match &self.source {
            Source::Http(url) => url.clone(),
            Source::Local(path) => path.display().to_string(),
        }
    }
}

/// Fetches, verifies and (if asked) unpacks `request` into `out_dir`.
pub fn fetch(
    request: &Request,
    out_dir: &Path,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    request.validate()?;
    let partial = out_dir.join(format!("{}.part", request.filename));
    let (file, bytes) = match &request.source {
        Source::Http(url) => (
            partial.clone(),
            http::download(url, &partial, &request.http, observer)?,
        ),
        // A local archive is unpacked in place: copying it first would only cost time and space.
        Source::Local(path) if request.unpack => (path.clone(), local_size(path)?),
        Source::Local(path) => (
            partial.clone(),
            source::copy_local(path, &partial, observer)?,
        ),
    };
    // The partial file is gone by the time anyone reads the error: name what was fetched instead.
    request
        .pinned
        .verify(&file, observer)
        .map_err(|err| match err {
            DownloadError::ChecksumMismatch {
                algorithm,
                expected,
                actual,
                ..
            } if file == partial => {
                let fetched = match &request.source {
                    Source::Http(url) => PathBuf::from(url),
                    Source::Local(path) => path.clone(),
                };
                DownloadError::ChecksumMismatch {
                    file: fetched,
                    algorithm,
                    expected,
                    actual,
                }
            }
            other => other,
        })?;
    if request.unpack {
        let limit = request
            .max_unpacked_bytes
            .unwrap_or_else(|| default_unpack_limit(bytes));
        let unpacked = archive::unpack(&file, &request.filename, out_dir, limit, observer)?;
        if file == partial {
            fs::remove_file(&partial).map_err(|err| DownloadError::write(&partial, err))?;
        }
        return Ok(Fetched {
            bytes,
            unpacked: Some(unpacked),
        });
    }
    let target = out_dir.join(&request.filename);
    fs::rename(&partial, &target).map_err(|err| DownloadError::write(&target, err))?;
    Ok(Fetched {
        bytes,
        unpacked: None,
    })
}

/// 100 times the archive's size (real data compresses far less; decompression bombs far more),
/// and at least 1 GiB.
pub fn default_unpack_limit(archive_bytes: u64) -> u64 {
    archive_bytes.saturating_mul(100).max(1 << 30)
}

fn local_size(path: &Path) -> Result<u64, DownloadError> {
    let metadata = fs::metadata(path).map_err(|source| DownloadError::LocalRead {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(metadata.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Silent;

    fn local_request(path: &Path, filename: &str) -> Request {
        Request {
            source: Source::Local(path.to_path_buf()),
            filename: filename.to_owned(),
            pinned: Pinned::default(),
            verify: false,
            unpack: false,
            max_unpacked_bytes: None,
            http: HttpOptions {
                retries: 0,
                timeout: std::time::Duration::from_secs(1),
                backoff: std::time::Duration::ZERO,
            },
        }
    }

    #[test]
    fn validate_requires_a_checksum_unless_verify_is_off() {
        let mut request = local_request(Path::new("/data/x.bin"), "x.bin");
        assert!(request.validate().is_ok());
        request.verify = true;
        let message = request.validate().unwrap_err().to_string();
        assert!(
            message.contains("sha256 = ") && message.contains("verify = false"),
            "{message}"
        );
    }

    #[test]
    fn validate_rejects_unpacking_a_non_archive() {
        let mut request = local_request(Path::new("/data/x.mat"), "x.mat");
        request.unpack = true;
        assert!(matches!(
            request.validate(),
            Err(DownloadError::ArchiveUnknown { .. })
        ));
    }

    #[test]
    fn fetch_leaves_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.bin");
        fs::write(&from, b"payload").unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let fetched = fetch(&local_request(&from, "x.bin"), &out, &Silent).unwrap();
        assert_eq!(
            fetched,
            Fetched {
                bytes: 7,
                unpacked: None
            }
        );
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.bin")]);
    }

    #[test]
    fn checksum_mismatch_keeps_no_finished_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from.bin");
        fs::write(&from, b"payload").unwrap();
        let mut request = local_request(&from, "x.bin");
        request.pinned.md5 = Some(Md5Hex::parse(&"1".repeat(32)).unwrap());
        let err = fetch(&request, dir.path(), &Silent).unwrap_err();
        assert!(matches!(err, DownloadError::ChecksumMismatch { .. }));
        assert!(!dir.path().join("x.bin").exists());
    }
}
