//! Pinned checksums: hex digests as recipes write them, and streaming verification of a file.
//!
//! A recipe pins `sha256 = "<64 hex digits>"` or `md5 = "<32 hex digits>"`. A sha256 pin may
//! also be a prefix of at least 8 hex digits, the way torch.hub names its files
//! (`pt_inception-2015-12-05-6726825d.pth` carries the first 8): the file's digest must then
//! start with it. The digests are validated (length, hex) and lower-cased while the recipe is
//! parsed, so a typo fails before anything downloads and two spellings of the same digest give
//! the same cache key.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::Md5;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::error::DownloadError;
use super::Observer;

/// A lower-case hex digest of `LEN` digits, or a prefix of it of at least `MIN` digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexDigest<const LEN: usize, const MIN: usize = LEN>(String);

impl<const LEN: usize, const MIN: usize> schemars::JsonSchema for HexDigest<LEN, MIN> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("HexDigest{LEN}").into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": format!("^[0-9a-f]{{{MIN},{LEN}}}$") })
    }
}

/// A SHA-256 digest (64 hex digits), or its first 8 or more digits (torch.hub's file names).
pub type Sha256Hex = HexDigest<64, 8>;
/// An MD5 digest (32 hex digits).
pub type Md5Hex = HexDigest<32>;

impl<const LEN: usize, const MIN: usize> HexDigest<LEN, MIN> {
    /// Validates and lower-cases `text`; the error says what was wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.len() != LEN && !(MIN..LEN).contains(&trimmed.len()) {
            let expected = if MIN < LEN {
                format!("{LEN} hex digits (or a prefix of at least {MIN})")
            } else {
                format!("{LEN} hex digits")
            };
            return Err(format!(
                "expected {expected}, found {} characters in `{trimmed}`",
                trimmed.len()
            ));
        }
        if let Some(bad) = trimmed.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("`{bad}` is not a hex digit in `{trimmed}`"));
        }
        Ok(HexDigest(trimmed.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const LEN: usize, const MIN: usize> fmt::Display for HexDigest<LEN, MIN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const LEN: usize, const MIN: usize> Serialize for HexDigest<LEN, MIN> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de, const LEN: usize, const MIN: usize> Deserialize<'de> for HexDigest<LEN, MIN> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HexDigest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The digests a file must match; empty when the recipe opted out with `verify = false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    pub sha256: Option<Sha256Hex>,
    pub md5: Option<Md5Hex>,
}

impl Pinned {
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.md5.is_none()
    }

    /// What the summary line says was checked: "sha256 ok", "md5 ok", "sha256+md5 ok" or
    /// "not verified".
    pub fn verdict(&self) -> &'static str {
        match (&self.sha256, &self.md5) {
            (Some(_), Some(_)) => "sha256+md5 ok",
            (Some(_), None) => "sha256 ok",
            (None, Some(_)) => "md5 ok",
            (None, None) => "not verified",
        }
    }

    /// Hashes `path` once and compares it with every pinned digest.
    pub fn verify(&self, path: &Path, observer: &dyn Observer) -> Result<(), DownloadError> {
        if self.is_empty() {
            return Ok(());
        }
        let (sha256, md5) = digest_file(path, observer)?;
        if let Some(expected) = &self.sha256 {
            compare(path, "sha256", expected.as_str(), &sha256)?;
        }
        if let Some(expected) = &self.md5 {
            compare(path, "md5", expected.as_str(), &md5)?;
        }
        Ok(())
    }
}

/// The digest must equal `expected`, or start with it when the pin is a prefix.
fn compare(
    path: &Path,
    algorithm: &'static str,
    expected: &str,
    actual: &str,
) -> Result<(), DownloadError> {
    if actual.starts_with(expected) && !expected.is_empty() {
        Ok(())
    } else {
        Err(DownloadError::ChecksumMismatch {
            file: path.to_path_buf(),
            algorithm,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}

/// SHA-256 and MD5 of a file as lower-case hex, computed in one pass (MD5 is cheap next to the
/// disk read, and hashing once keeps big archives from being read twice).
pub fn digest_file(
    path: &Path,
    observer: &dyn Observer,
) -> Result<(String, String), DownloadError> {
    let read_error = |source| DownloadError::LocalRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let total = file.metadata().map_err(read_error)?.len();
    observer.phase("verifying", Some(total));
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; super::CHUNK];
    loop {
        observer.check_cancelled()?;
        let n = file.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        md5.update(&buffer[..n]);
        observer.advance(n as u64);
    }
    Ok((hex::encode(sha256.finalize()), hex::encode(md5.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Silent;

    #[test]
    fn parse_accepts_and_lowercases_hex() {
        let digest = Md5Hex::parse("F68B3C2DCBEAAA9FBDD348BBDEB94873").unwrap();
        assert_eq!(digest.as_str(), "f68b3c2dcbeaaa9fbdd348bbdeb94873");
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert!(Md5Hex::parse("abc")
            .unwrap_err()
            .contains("expected 32 hex digits"));
        let not_hex = "z".repeat(64);
        assert!(Sha256Hex::parse(&not_hex)
            .unwrap_err()
            .contains("`z` is not a hex digit"));
    }

    #[test]
    fn digests_match_known_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let (sha256, md5) = digest_file(&path, &Silent).unwrap();
        assert_eq!(
            sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(md5, "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn sha256_prefix_pins_of_eight_or_more_digits_check_the_start() {
        assert!(Sha256Hex::parse("6726825D").is_ok());
        assert!(Sha256Hex::parse("6726825")
            .unwrap_err()
            .contains("a prefix of at least 8"));
        assert!(Md5Hex::parse("f68b3c2d")
            .unwrap_err()
            .contains("expected 32 hex digits,"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let pin = |digits: &str| Pinned {
            sha256: Some(Sha256Hex::parse(digits).unwrap()),
            md5: None,
        };
        pin("ba7816bf").verify(&path, &Silent).unwrap();
        let message = pin("ba7816be")
            .verify(&path, &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("ba7816be") && message.contains("ba7816bf8f01cfea"),
            "{message}"
        );
    }

    #[test]
    fn mismatch_names_expected_and_actual() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let pinned = Pinned {
            sha256: None,
            md5: Some(Md5Hex::parse(&"0".repeat(32)).unwrap()),
        };
        let message = pinned.verify(&path, &Silent).unwrap_err().to_string();
        assert!(message.contains(&"0".repeat(32)), "{message}");
        assert!(
            message.contains("900150983cd24fb0d6963f7d28e17f72"),
            "{message}"
        );
    }
}
