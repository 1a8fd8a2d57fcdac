//! Keeping the cache in shape: listing its entries, `gc` of the unreachable ones, `fsck` of all,
//! and the quarantine where corrupt entries are moved aside.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use camino::Utf8PathBuf;

use super::fs_tree::{move_entry, remove_tree};
use super::verify::{file_records, verify, Verifier};
use super::{io_err, Cache, CacheError, KeyLock};
use crate::cache::key::CacheKey;
use crate::cache::lock::live_readers;
use crate::cache::manifest::Manifest;

/// A corrupted entry found by [`Cache::fsck`].
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub key: String,
    pub problem: String,
}

/// What [`Cache::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GcReport {
    pub removed: usize,
    pub kept: usize,
    pub bytes_freed: u64,
    /// Unreachable entries kept because a running process reads them: key and holder.
    pub held: Vec<(String, String)>,
    /// Unreachable entries kept because a process holds their lock (writing or checking them).
    pub busy: Vec<String>,
}

/// Entries `gc` moves aside at once before checking the reader files (bounds open lock files).
const GC_BATCH: usize = 256;

impl Cache {
    /// Every entry directory's key (complete or not).
    pub fn keys(&self) -> Result<Vec<CacheKey>, CacheError> {
        let entries = self.root.join("entries");
        let listing = match fs::read_dir(&entries) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !self.writable => {
                return Ok(Vec::new())
            }
            Err(error) => return Err(io_err(&entries)(error)),
        };
        let mut keys: Vec<CacheKey> = listing
            .flatten()
            .filter_map(|e| CacheKey::from_hex(&e.file_name().to_string_lossy()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes every entry not in `keep`, except those a running process reads or holds locked.
    ///
    /// Each doomed entry is first moved into `tmp/` under its key lock, and only then are the
    /// reader files read: a reader records its hold before checking that the entry exists, so
    /// either gc sees the hold (and moves the entry back) or the reader finds the entry gone.
    pub fn gc(&self, keep: &HashSet<CacheKey>) -> Result<GcReport, CacheError> {
        let mut report = GcReport::default();
        let doomed: Vec<CacheKey> = self
            .keys()?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        report.kept = self.keys()?.len() - doomed.len();
        let readers_dir = self.root.join("locks").join("readers");
        for batch in doomed.chunks(GC_BATCH) {
            let mut moved = Vec::new();
            for key in batch {
                let Some(lock) = self.try_lock(key)? else {
                    report.busy.push(key.hex());
                    continue;
                };
                let dir = self.entry_dir(key);
                let bytes =
                    Manifest::read(&dir).map_or(0, |m| m.files.iter().map(|f| f.size).sum::<u64>());
                let trash =
                    self.root
                        .join("tmp")
                        .join(format!("{}.gc{}", key.hex(), std::process::id()));
                move_entry(&dir, &trash)?;
                moved.push((key, lock, dir, trash, bytes));
            }
            let held: HashMap<String, _> = live_readers(&readers_dir);
            for (key, _lock, dir, trash, bytes) in moved {
                if let Some(holder) = held.get(&key.hex()) {
                    fs::rename(&trash, &dir).map_err(io_err(&dir))?;
                    report.held.push((key.hex(), holder.describe()));
                    report.kept += 1;
                    continue;
                }
                remove_tree(&trash)?;
                report.removed += 1;
                report.bytes_freed += bytes;
            }
        }
        Ok(report)
    }

    /// Re-hashes every entry's files (ignoring the stat cache) and checks every manifest.
    pub fn fsck(&self) -> Result<Vec<Corruption>, CacheError> {
        let mut problems = Vec::new();
        for key in self.keys()? {
            let dir = self.entry_dir(&key);
            let corruption = |problem: String| Corruption {
                key: key.hex(),
                problem,
            };
            let manifest = match verify(&dir, &key, &mut Verifier::Full) {
                Ok(manifest) => manifest,
                Err(problem) => {
                    problems.push(corruption(problem));
                    continue;
                }
            };
            let actual = match file_records(&dir, &mut Verifier::Full) {
                Ok(actual) => actual,
                Err(error) => {
                    problems.push(corruption(error.to_string()));
                    continue;
                }
            };
            for extra in actual
                .iter()
                .filter(|a| !manifest.files.iter().any(|f| f.path == a.path))
            {
                problems.push(corruption(format!(
                    "`{}` is not in the manifest",
                    extra.path
                )));
            }
        }
        let corrupt: Vec<CacheKey> = problems
            .iter()
            .filter_map(|problem| CacheKey::from_hex(&problem.key))
            .collect();
        self.forget_hashes(&corrupt)?;
        Ok(problems)
    }

    /// Quarantines the entry under `key` if no process holds its lock; returns where it went.
    pub fn repair(&self, key: &CacheKey) -> Result<Option<Utf8PathBuf>, CacheError> {
        let Some(lock) = self.try_lock(key)? else {
            return Ok(None);
        };
        self.quarantine(key, &lock).map(Some)
    }

    /// Moves the entry under `key` (whose lock the caller holds) to `quarantine/`; returns where.
    pub fn quarantine(&self, key: &CacheKey, _lock: &KeyLock) -> Result<Utf8PathBuf, CacheError> {
        let dir = self.root.join("quarantine");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let target = dir.join(format!("{}.{stamp}", key.hex()));
        move_entry(&self.entry_dir(key), &target)?;
        Ok(target)
    }
}
