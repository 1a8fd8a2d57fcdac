//! Everything that can go wrong while fetching, verifying or unpacking a file, each message saying
//! what to do about it.

use std::io;
use std::path::{Path, PathBuf};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("`{given}` uses an unsupported scheme: give an https://, http:// or file:// URL or a local path")]
    SourceSchemeUnsupported { given: String },

    #[error(
        "no checksum pinned for `{source_text}`: add `sha256 = \"...\"` or `md5 = \"...\"` to the stage \
         (or `verify = false` to accept whatever arrives)"
    )]
    ChecksumMissing { source_text: String },

    #[error(
        "cannot derive a file name from `{source_text}`: set `filename = \"...\"` in the stage"
    )]
    FilenameMissing { source_text: String },

    #[error(
        "`{name}` is not a plain file name: `filename` must not contain `/`, `\\` or be `.`/`..`"
    )]
    FilenameInvalid { name: String },

    #[error("{url} answered HTTP {status}: check the URL, or download it by hand and point `source` at the file")]
    HttpStatus { url: String, status: u16 },

    #[error(
        "{algorithm} of {} is {actual} but the recipe pins {expected}: the download is corrupt or the \
         pinned value is wrong; fix the checksum only if you trust the file",
        file.display()
    )]
    ChecksumMismatch {
        file: PathBuf,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    #[error("no space left on the device while writing {}: free some space and run again", path.display())]
    StorageFull { path: PathBuf },

    #[error("cannot reach {url} ({reason}): check the network, or download it by hand and point `source` at the file")]
    Unreachable { url: String, reason: String },

    #[error(
        "{url} sent nothing for {secs} s: raise `timeout_secs`, check the network, or download it by hand \
         and point `source` at the file"
    )]
    Timeout { url: String, secs: u64 },

    #[error("transfer of {url} broke off after {bytes} bytes ({reason})")]
    TransferBroken {
        url: String,
        bytes: u64,
        reason: String,
    },

    #[error("{last} (gave up after {attempts} attempts)")]
    RetriesExhausted {
        attempts: u32,
        last: Box<DownloadError>,
    },

    #[error("cannot read {}: check `source`", path.display())]
    LocalRead { path: PathBuf, source: io::Error },

    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },

    #[error(
        "`{}` is not an archive hwrun unpacks (.gz, .bz2, .zip, .tar, .tar.gz, .tgz, .tar.bz2): set `unpack = false`",
        file.display()
    )]
    ArchiveUnknown { file: PathBuf },

    #[error(
        "{}: unpacking would write more than {limit} bytes; a decompression bomb, or set a larger `max_unpacked_bytes`",
        archive.display()
    )]
    ArchiveTooLarge { archive: PathBuf, limit: u64 },

    #[error(
        "{}: entry `{entry}` would land outside the output directory; refusing to unpack an unsafe archive",
        archive.display()
    )]
    ArchiveEntryUnsafe { archive: PathBuf, entry: String },

    #[error("cannot unpack {}: {reason}; the archive may be corrupt or of another format", archive.display())]
    ArchiveCorrupt { archive: PathBuf, reason: String },

    #[error("interrupted")]
    Cancelled,
}

impl DownloadError {
    /// Whether another attempt may succeed: network trouble and server errors, not client errors,
    /// checksums or local disks.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::HttpStatus { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            DownloadError::Unreachable { .. }
            | DownloadError::Timeout { .. }
            | DownloadError::TransferBroken { .. } => true,
            _ => false,
        }
    }

    /// Maps a failed write: a full disk gets its own message, anything else names the file.
    pub fn write(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            DownloadError::StorageFull {
                path: path.to_path_buf(),
            }
        } else {
            DownloadError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_gets_its_own_variant() {
        let full =
            DownloadError::write(Path::new("/x"), io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(full, DownloadError::StorageFull { .. }));
        assert!(full.to_string().contains("no space left"));
        let other = DownloadError::write(
            Path::new("/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(other, DownloadError::Write { .. }));
    }

    #[test]
    fn only_network_trouble_is_transient() {
        let status = |status| DownloadError::HttpStatus {
            url: "u".into(),
            status,
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(404).is_transient());
        assert!(DownloadError::Timeout {
            url: "u".into(),
            secs: 1
        }
        .is_transient());
        assert!(!DownloadError::Cancelled.is_transient());
    }
}
