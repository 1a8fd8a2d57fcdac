//! Where a file comes from: an http(s) URL, or a local file given as a `file://` URL or a plain
//! path (relative paths are relative to the directory hwrun runs in), and the copy of a local file.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::DownloadError;
use super::Observer;

/// A parsed `source` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http(String),
    /// A file on this machine.
    Local(PathBuf),
}

impl Source {
    /// Classifies `text`; any other `scheme://` is an error rather than a strange relative path.
    pub fn parse(text: &str) -> Result<Self, DownloadError> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Source::Http(trimmed.to_owned()))
        } else if lower.starts_with("file://") {
            Ok(Source::Local(PathBuf::from(&trimmed["file://".len()..])))
        } else if looks_like_url(trimmed) {
            Err(DownloadError::SourceSchemeUnsupported {
                given: trimmed.to_owned(),
            })
        } else {
            Ok(Source::Local(PathBuf::from(trimmed)))
        }
    }

    /// The local file, if this source is one (its content belongs in the cache key).
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Source::Local(path) => Some(path),
            Source::Http(_) => None,
        }
    }

    /// The last path segment (without query or fragment), used when the recipe sets no
    /// `filename`.
    pub fn default_filename(&self) -> Option<String> {
        let name = match self {
            Source::Http(url) => {
                let without_query = url.split(['?', '#']).next().unwrap_or(url);
                let after_scheme = without_query
                    .split_once("://")
                    .map_or(without_query, |(_, rest)| rest);
                // Only a path segment after the host names a file; a bare host does not.
                let (_, path) = after_scheme.split_once('/')?;
                path.rsplit('/').next()?.to_owned()
            }
            Source::Local(path) => path.file_name()?.to_str()?.to_owned(),
        };
        (!name.is_empty()).then_some(name)
    }
}

fn looks_like_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Rejects names that would leave the output directory or are not a single path component.
pub fn check_filename(name: &str) -> Result<(), DownloadError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']);
    if bad {
        Err(DownloadError::FilenameInvalid {
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// Copies a local file to `dest` in chunks, reporting progress and honouring cancellation.
/// Returns the number of bytes copied.
pub fn copy_local(path: &Path, dest: &Path, observer: &dyn Observer) -> Result<u64, DownloadError> {
    let read_error = |source| DownloadError::LocalRead {
        path: path.to_path_buf(),
        source,
    };
    let mut input = File::open(path).map_err(read_error)?;
    let total = input.metadata().map_err(read_error)?.len();
    let mut output = File::create(dest).map_err(|err| DownloadError::write(dest, err))?;
    observer.phase(&format!("copying {}", path.display()), Some(total));
    let mut buffer = vec![0u8; super::CHUNK];
    let mut copied = 0u64;
    loop {
        observer.check_cancelled()?;
        let n = input.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        output
            .write_all(&buffer[..n])
            .map_err(|err| DownloadError::write(dest, err))?;
        copied += n as u64;
        observer.advance(n as u64);
    }
    output
        .sync_all()
        .map_err(|err| DownloadError::write(dest, err))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Silent;

    #[test]
    fn parse_classifies_sources() {
        let https = "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz";
        assert_eq!(Source::parse(https).unwrap(), Source::Http(https.into()));
        assert_eq!(
            Source::parse("file:///data/x.zip").unwrap(),
            Source::Local("/data/x.zip".into())
        );
        assert_eq!(
            Source::parse("data/x.zip").unwrap(),
            Source::Local("data/x.zip".into())
        );
        let ftp = Source::parse("ftp://host/x").unwrap_err();
        assert!(matches!(ftp, DownloadError::SourceSchemeUnsupported { .. }));
    }

    #[test]
    fn default_filename_is_last_segment_without_query() {
        let url =
            Source::Http("http://ufldl.stanford.edu/housenumbers/train_32x32.mat?x=1#y".into());
        assert_eq!(url.default_filename().as_deref(), Some("train_32x32.mat"));
        assert_eq!(
            Source::Http("https://example.org".into()).default_filename(),
            None
        );
        assert_eq!(
            Source::Http("https://example.org/dir/".into()).default_filename(),
            None
        );
        assert_eq!(
            Source::Local("/a/b.bz2".into())
                .default_filename()
                .as_deref(),
            Some("b.bz2")
        );
    }

    #[test]
    fn filenames_must_be_one_component() {
        assert!(check_filename("usps.bz2").is_ok());
        for bad in ["", ".", "..", "a/b", "..\\x"] {
            assert!(check_filename(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_local_copies_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        std::fs::write(&from, b"hello").unwrap();
        assert_eq!(copy_local(&from, &to, &Silent).unwrap(), 5);
        assert_eq!(std::fs::read(&to).unwrap(), b"hello");
    }
}
