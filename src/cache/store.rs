//! The artifact store: one read-only directory per key under `entries/`.
//!
//! Layout of the cache root:
//! - `entries/<key>/` — `manifest.json`, `out/` (the stage's outputs), `log.txt`
//! - `tmp/<key>.<pid>.<nonce>/` — a stage being run; renamed into `entries/` only on success
//! - `locks/<key>.lock` — held (flock) while a process runs that key
//! - `refs/<recipe>/<stage>` — the key a stage had at its last run, to explain the next plan
//! - `failed/<stage>.log` — the log of a stage's last failed run (its staging is deleted)
//! - `checkpoints/<key>/` — resume checkpoints of a stage that has not finished yet
//! - `stat-cache.json` — content hashes of external files by stat data
//!
//! An entry exists only once its manifest, written last inside the staging directory, has been
//! renamed into place with it, so a crash at any point (even `kill -9`) leaves no valid entry.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};

use super::file_hash::{collect_files, hash_file_contents, HashError};
use super::key::CacheKey;
use super::manifest::{FileRecord, Manifest, LOG_FILE, MANIFEST_FILE, OUTPUT_DIR};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache at `{path}`: {source}")]
    Io { path: Utf8PathBuf, source: std::io::Error },
    #[error(transparent)]
    Hash(#[from] HashError),
}

fn io_err(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: Utf8PathBuf,
}

/// A held per-key lock; released on drop (and by the OS if the process dies).
pub struct KeyLock {
    _file: File,
}

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

/// A corrupted entry found by [`Cache::fsck`].
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub key: String,
    pub problem: String,
}

/// What [`Cache::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub removed: usize,
    pub kept: usize,
    pub bytes_freed: u64,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Utf8Path) -> Result<Cache, CacheError> {
        for sub in ["entries", "tmp", "locks", "refs"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        // Absolute, so the paths hwrun prints work from any directory.
        let root = root.canonicalize_utf8().map_err(io_err(root))?;
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn stat_cache_path(&self) -> Utf8PathBuf {
        self.root.join("stat-cache.json")
    }

    pub fn entry_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("entries").join(key.hex())
    }

    /// Where a finished entry's outputs are.
    pub fn output_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.entry_dir(key).join(OUTPUT_DIR)
    }

    /// The manifest of a complete entry, if there is one.
    pub fn lookup(&self, key: &CacheKey) -> Option<Manifest> {
        Manifest::read(&self.entry_dir(key)).ok()
    }

    /// Takes the per-key lock without waiting; `None` when another process holds it.
    pub fn try_lock(&self, key: &CacheKey) -> Result<Option<KeyLock>, CacheError> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(CacheError::Io { path: self.lock_path(key), source }),
        }
    }

    /// Takes the per-key lock, waiting for another process that holds it.
    pub fn lock(&self, key: &CacheKey) -> Result<KeyLock, CacheError> {
        let file = self.lock_file(key)?;
        file.lock().map_err(io_err(&self.lock_path(key)))?;
        Ok(KeyLock { _file: file })
    }

    fn lock_path(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.hex()))
    }

    fn lock_file(&self, key: &CacheKey) -> Result<File, CacheError> {
        let path = self.lock_path(key);
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))
    }

    /// Creates a fresh staging directory for `key`, holding `lock`.
    pub fn stage(&self, key: CacheKey, lock: KeyLock) -> Result<Staging, CacheError> {
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = self.root.join("tmp").join(format!("{}.{}.{nonce}", key.hex(), std::process::id()));
        fs::create_dir_all(dir.join(OUTPUT_DIR)).map_err(io_err(&dir))?;
        Ok(Staging { key, dir, _lock: lock })
    }

    /// Where a stage keeps its resume checkpoints while it runs: outside its entry, kept when a
    /// run is killed, removed once the entry is committed.
    pub fn checkpoint_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("checkpoints").join(key.hex())
    }

    /// Hashes the staged files, writes the manifest last, moves the entry into place and makes it
    /// read-only. Returns the completed manifest.
    pub fn commit(&self, staging: Staging, mut manifest: Manifest) -> Result<Manifest, CacheError> {
        manifest.files = file_records(&staging.dir)?;
        let manifest_path = staging.dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::Io {
            path: manifest_path.clone(),
            source: std::io::Error::other(e),
        })?;
        fs::write(&manifest_path, json).map_err(io_err(&manifest_path))?;
        File::open(&manifest_path).and_then(|f| f.sync_all()).map_err(io_err(&manifest_path))?;
        let target = self.entry_dir(&staging.key);
        fs::rename(&staging.dir, &target).map_err(io_err(&target))?;
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
            let Some(key) = name.split('.').next().and_then(CacheKey::from_hex) else { continue };
            if let Some(_lock) = self.try_lock(&key)? {
                let path = tmp.join(&name);
                remove_tree(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records that `stage` of `recipe` last had `key`.
    pub fn record_ref(&self, recipe: &str, stage: &str, key: &CacheKey) -> Result<(), CacheError> {
        let path = self.ref_path(recipe, stage);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, key.hex()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The key `stage` of `recipe` had at its last run.
    pub fn last_ref(&self, recipe: &str, stage: &str) -> Option<CacheKey> {
        let text = fs::read_to_string(self.ref_path(recipe, stage)).ok()?;
        CacheKey::from_hex(text.trim())
    }

    fn ref_path(&self, recipe: &str, stage: &str) -> Utf8PathBuf {
        self.root.join("refs").join(sanitize(recipe)).join(sanitize(stage))
    }

    /// Every complete entry's key.
    pub fn keys(&self) -> Result<Vec<CacheKey>, CacheError> {
        let entries = self.root.join("entries");
        let mut keys: Vec<CacheKey> = fs::read_dir(&entries)
            .map_err(io_err(&entries))?
            .flatten()
            .filter_map(|e| CacheKey::from_hex(&e.file_name().to_string_lossy()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes every entry not in `keep`.
    pub fn gc(&self, keep: &HashSet<CacheKey>) -> Result<GcReport, CacheError> {
        let mut report = GcReport::default();
        for key in self.keys()? {
            if keep.contains(&key) {
                report.kept += 1;
                continue;
            }
            let dir = self.entry_dir(&key);
            let Some(_lock) = self.try_lock(&key)? else { continue };
            report.bytes_freed += self
                .lookup(&key)
                .map_or(0, |m| m.files.iter().map(|f| f.size).sum::<u64>());
            remove_tree(&dir)?;
            report.removed += 1;
        }
        Ok(report)
    }

    /// Re-hashes every entry's files against its manifest.
    pub fn fsck(&self) -> Result<Vec<Corruption>, CacheError> {
        let mut problems = Vec::new();
        for key in self.keys()? {
            let dir = self.entry_dir(&key);
            let corruption = |problem: String| Corruption { key: key.hex(), problem };
            let manifest = match Manifest::read(&dir) {
                Ok(m) => m,
                Err(err) => {
                    problems.push(corruption(format!("unreadable manifest: {err}")));
                    continue;
                }
            };
            if manifest.key != key.hex() {
                problems.push(corruption(format!("manifest names key {}", manifest.key)));
            }
            let actual = file_records(&dir)?;
            for expected in &manifest.files {
                match actual.iter().find(|a| a.path == expected.path) {
                    None => problems.push(corruption(format!("`{}` is missing", expected.path))),
                    Some(found) if found.blake3 != expected.blake3 => problems.push(corruption(format!(
                        "`{}` has blake3 {} but the manifest says {}",
                        expected.path, found.blake3, expected.blake3
                    ))),
                    Some(_) => {}
                }
            }
            for extra in actual.iter().filter(|a| !manifest.files.iter().any(|f| f.path == a.path)) {
                problems.push(corruption(format!("`{}` is not in the manifest", extra.path)));
            }
        }
        Ok(problems)
    }
}

/// Hash records of every file in an entry directory except the manifest.
fn file_records(dir: &Utf8Path) -> Result<Vec<FileRecord>, CacheError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.retain(|f| f.as_str() != MANIFEST_FILE);
    files.sort();
    files
        .into_iter()
        .map(|relative| {
            let path = dir.join(&relative);
            let size = fs::metadata(&path).map_err(io_err(&path))?.len();
            let hash = hash_file_contents(&path)?;
            Ok(FileRecord { path: relative.into_string(), size, blake3: hash.to_hex().to_string() })
        })
        .collect()
}

fn set_mode_recursive(path: &Utf8Path, file_mode: u32, dir_mode: u32) -> Result<(), CacheError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        // Directories are opened up before descending and closed after, so both directions work.
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_err(path))?;
        for entry in fs::read_dir(path).map_err(io_err(path))?.flatten() {
            if let Ok(child) = Utf8PathBuf::from_path_buf(entry.path()) {
                set_mode_recursive(&child, file_mode, dir_mode)?;
            }
        }
        fs::set_permissions(path, fs::Permissions::from_mode(dir_mode)).map_err(io_err(path))
    } else if meta.is_file() {
        fs::set_permissions(path, fs::Permissions::from_mode(file_mode)).map_err(io_err(path))
    } else {
        Ok(())
    }
}

fn make_read_only(path: &Utf8Path) -> Result<(), CacheError> {
    set_mode_recursive(path, 0o444, 0o555)
}

/// Deletes a tree, read-only entries included.
fn remove_tree(path: &Utf8Path) -> Result<(), CacheError> {
    set_mode_recursive(path, 0o644, 0o755)?;
    fs::remove_dir_all(path).map_err(io_err(path))
}

/// A name safe as one path component.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_=.,".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::KeyMaterial;

    fn key(n: u64) -> CacheKey {
        KeyMaterial { kind: "t", version: 1, params: &serde_json::Value::Null, seed: n, inputs: &[], external: &[] }.key()
    }

    fn manifest(key: &CacheKey) -> Manifest {
        Manifest {
            format: Manifest::format_version(),
            key: key.hex(),
            kind: "t".into(),
            stage_version: 1,
            stage: "s".into(),
            recipe: "r".into(),
            params: serde_json::Value::Null,
            seed: 0,
            inputs: Default::default(),
            external: Vec::new(),
            outcome: Default::default(),
            files: Vec::new(),
            wall_time_s: 0.0,
            device: "cpu".into(),
            hwrun_version: "test".into(),
            created_unix: 0,
        }
    }

    fn cache() -> (tempfile::TempDir, Cache) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(Utf8Path::from_path(tmp.path()).unwrap()).unwrap();
        (tmp, cache)
    }

    #[test]
    fn committed_entries_are_found_and_verified() {
        let (_tmp, cache) = cache();
        let k = key(1);
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        fs::write(staging.out_dir().join("result.txt"), "42").unwrap();
        assert!(cache.lookup(&k).is_none());
        let committed = cache.commit(staging, manifest(&k)).unwrap();
        assert_eq!(committed.files.len(), 1);
        assert_eq!(cache.lookup(&k).unwrap().files, committed.files);
        assert!(cache.fsck().unwrap().is_empty());
    }

    #[test]
    fn fsck_reports_changed_files() {
        let (_tmp, cache) = cache();
        let k = key(2);
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        fs::write(staging.out_dir().join("a"), "x").unwrap();
        cache.commit(staging, manifest(&k)).unwrap();
        let file = cache.output_dir(&k).join("a");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&file, "y").unwrap();
        let problems = cache.fsck().unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].problem.contains("out/a"), "{problems:?}");
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let (_tmp, cache) = cache();
        let k = key(3);
        drop(cache.stage(k, cache.lock(&k).unwrap()).unwrap());
        assert!(cache.lookup(&k).is_none());
        assert_eq!(fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn gc_keeps_only_reachable_entries() {
        let (_tmp, cache) = cache();
        for n in [4, 5] {
            let k = key(n);
            let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
            cache.commit(staging, manifest(&k)).unwrap();
        }
        let report = cache.gc(&HashSet::from([key(4)])).unwrap();
        assert_eq!((report.removed, report.kept), (1, 1));
        assert!(cache.lookup(&key(5)).is_none());
    }

    #[test]
    fn refs_remember_the_last_key() {
        let (_tmp, cache) = cache();
        cache.record_ref("quick start", "train", &key(6)).unwrap();
        assert_eq!(cache.last_ref("quick start", "train"), Some(key(6)));
        assert_eq!(cache.last_ref("quick start", "other"), None);
    }
}
