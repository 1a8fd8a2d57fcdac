//! `manifest.json`: what a cache entry holds and how it was made. Written last, so an entry
//! with a manifest is complete; `manifest.blake3` beside it holds the manifest's own hash, so a
//! changed byte anywhere in it (a metric, a file hash) is detected like a changed output file.
//! Paths in it are relative to the entry: a cache directory can be moved as a whole.

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::stage::StageOutcome;

pub const MANIFEST_FILE: &str = "manifest.json";
/// The blake3 of `manifest.json`'s bytes, in hex.
pub const MANIFEST_SUM_FILE: &str = "manifest.blake3";
/// The stage's outputs live in this sub-directory of an entry.
pub const OUTPUT_DIR: &str = "out";
/// The stage log, beside the outputs.
pub const LOG_FILE: &str = "log.txt";
/// 2: `manifest.blake3` and symbolic-link records.
const MANIFEST_FORMAT: u32 = 2;

/// A file in an entry, relative to the entry directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// Of the content; of the link target's text for a symbolic link.
    pub blake3: String,
    /// The target of a symbolic link (relative, inside the entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// An input as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputRecord {
    pub key: String,
    pub output: Option<String>,
}

/// An external file or directory and the content hash it had.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExternalRecord {
    pub path: String,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub kind: String,
    pub stage_version: u32,
    /// The stage's name in the recipe that produced the entry.
    pub stage: String,
    pub recipe: String,
    pub params: serde_json::Value,
    pub seed: u64,
    pub inputs: BTreeMap<String, InputRecord>,
    pub external: Vec<ExternalRecord>,
    pub outcome: StageOutcome,
    pub files: Vec<FileRecord>,
    pub wall_time_s: f64,
    pub device: String,
    pub hwrun_version: String,
    pub created_unix: u64,
}

impl Manifest {
    pub fn format_version() -> u32 {
        MANIFEST_FORMAT
    }

    /// Reads a manifest without checking it against its hash (see `Cache::check` for that).
    pub fn read(entry_dir: &Utf8Path) -> std::io::Result<Manifest> {
        let bytes = std::fs::read(entry_dir.join(MANIFEST_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}
