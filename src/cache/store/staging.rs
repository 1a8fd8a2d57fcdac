//! Running a stage into the cache: its staging directory under `tmp/`, the commit that hashes
//! it and renames it into `entries/`, and the clean-up of stagings that runs left behind.

use std::fs::{self, File};
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};

use super::fs_tree::{make_read_only, remove_tree, write_synced};
use super::verify::{file_records, Verifier};
use super::{io_err, sanitize, Cache, CacheError, KeyLock};
use crate::cache::key::CacheKey;
use crate::cache::manifest::{Manifest, LOG_FILE, MANIFEST_FILE, MANIFEST_SUM_FILE, OUTPUT_DIR};

/// A stage being run: its staging directory, and the lock that keeps other processes off it.
pub struct Staging {
    key: CacheKey,
    dir: Utf8PathBuf,
    _lock: KeyLock,
}

impl Staging {
    /// Where the stage writes its outputs.
    pub fn out_dir(&self) -> Utf8PathBuf {
        self.dir.join(OUTPUT_DIR)
    }

    pub fn log_path(&self) -> Utf8PathBuf {
        self.dir.join(LOG_FILE)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Committed stagings were renamed away; anything left is a failed or interrupted run.
        if self.dir.exists() {
            let _ = remove_tree(&self.dir);
        }
    }
}

impl Cache {
    /// Creates a fresh staging directory for `key`, holding `lock`.
    pub fn stage(&self, key: CacheKey, lock: KeyLock) -> Result<Staging, CacheError> {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            self.root
                .join("tmp")
                .join(format!("{}.{}.{nonce}", key.hex(), std::process::id()));
        fs::create_dir_all(dir.join(OUTPUT_DIR)).map_err(io_err(&dir))?;
        Ok(Staging {
            key,
            dir,
            _lock: lock,
        })
    }

    /// Hashes the staged files (refusing special files and links that leave the entry), writes
    /// the manifest and its hash last, moves the entry into place and makes it read-only. An
    /// incomplete or corrupt directory already under the key is quarantined first. Returns the
    /// completed manifest.
    pub fn commit(&self, staging: Staging, mut manifest: Manifest) -> Result<Manifest, CacheError> {
        manifest.files = file_records(&staging.dir, &mut Verifier::Full)?;
        let manifest_path = staging.dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::Io {
            path: manifest_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_synced(&manifest_path, &json)?;
        write_synced(
            &staging.dir.join(MANIFEST_SUM_FILE),
            blake3::hash(&json).to_hex().as_bytes(),
        )?;
        let target = self.entry_dir(&staging.key);
        if fs::symlink_metadata(&target).is_ok() {
            // Only an entry that failed its check gets here (the caller holds the lock and found
            // no valid entry): it must not block this commit forever.
            let moved = self.quarantine(&staging.key, &staging._lock)?;
            tracing::warn!(
                "moved the invalid entry `{target}` to `{moved}` before committing its replacement"
            );
        }
        self.hold(&staging.key)?;
        fs::rename(&staging.dir, &target).map_err(io_err(&target))?;
        if let Some(parent) = target.parent() {
            // The rename is durable once the directory holding it is.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        make_read_only(&target)?;
        // The entry is what counts now; a leftover checkpoint would only take space.
        let _ = fs::remove_dir_all(self.checkpoint_dir(&staging.key));
        Ok(manifest)
    }

    /// Keeps the log of a failed run (its staging directory is about to go) as
    /// `failed/<stage>.log`; returns where, if there was a log.
    pub fn keep_failed_log(&self, staging: &Staging, stage: &str) -> Option<Utf8PathBuf> {
        let dir = self.root.join("failed");
        let target = dir.join(format!("{}.log", sanitize(stage)));
        fs::create_dir_all(&dir).ok()?;
        fs::copy(staging.log_path(), &target).ok()?;
        Some(target)
    }

    /// Removes staging directories left by crashed or killed runs (those whose lock is free).
    pub fn clean_stale_staging(&self) -> Result<usize, CacheError> {
        let tmp = self.root.join("tmp");
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.split('.').next().and_then(CacheKey::from_hex) else {
                continue;
            };
            if let Some(_lock) = self.try_lock(&key)? {
                let path = tmp.join(&name);
                remove_tree(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes this process's staging directories (a forced exit on a second signal).
    pub fn remove_own_staging(root: &Utf8Path) {
        let marker = format!(".{}.", std::process::id());
        let tmp = root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(&marker) {
                let _ = remove_tree(&tmp.join(&name));
            }
        }
    }
}
