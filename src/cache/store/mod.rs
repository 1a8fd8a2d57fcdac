//! The artifact store: one read-only directory per key under `entries/`.
//!
//! Layout of the cache root:
//! - `entries/<key>/` — `manifest.json`, `manifest.blake3`, `out/` (the stage's outputs), `log.txt`
//! - `tmp/<key>.<pid>.<nonce>/` — a stage being run; renamed into `entries/` only on success
//! - `locks/<key>.lock` — held (an `O_EXCL` lock file with a heartbeat, see [`super::lock`])
//!   while a process runs, quarantines or removes that key
//! - `locks/readers/<host>.<pid>.<nonce>` — the entries a running process reads (shared locks)
//! - `quarantine/<key>.<time>/` — entries found corrupt, moved aside for inspection
//! - `refs/<recipe>/<stage>` — the key a stage had at its last run, to explain the next plan
//! - `failed/<stage>.log` — the log of a stage's last failed run (its staging is deleted)
//! - `checkpoints/<key>/` — resume checkpoints of a stage that has not finished yet
//! - `stat-cache.json` — content hashes by stat data, so unchanged files are not re-read
//!
//! An entry exists only once its manifest, written last inside the staging directory, has been
//! renamed into place with it, so a crash at any point (even `kill -9`) leaves no valid entry.
//! An entry is used only after its files were checked against its manifest ([`Cache::check`]):
//! sizes and blake3 hashes (re-read only when a file's stat data changed), and the manifest
//! against `manifest.blake3`.
//!
//! The [`Cache`] facade, its locks, holds and refs are here; running a stage into the cache is in
//! `staging`, checking an entry against its manifest in `verify`, `gc`, `fsck` and the quarantine
//! in `maintenance`, and the read-only directory trees in `fs_tree`.

mod fs_tree;
mod maintenance;
mod staging;
mod verify;

use std::fs;
use std::sync::{Arc, Mutex, MutexGuard};

use camino::{Utf8Path, Utf8PathBuf};

pub use maintenance::{Corruption, GcReport};
pub use staging::Staging;
use verify::{verify, Verifier};

use super::file_hash::{HashError, StatCache};
use super::key::CacheKey;
use super::lock::{FileLock, ReaderFile};
use super::manifest::{Manifest, OUTPUT_DIR};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache at `{path}`: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(
        "the stage's output `{path}` is {what}: outputs must be regular files and directories \
         (symbolic links only to a relative path inside the output directory)"
    )]
    OutputNotPlain { path: Utf8PathBuf, what: String },
}

fn io_err(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`Cache::check`] found under a key.
#[derive(Debug)]
pub enum Lookup {
    /// A complete entry whose files match its manifest.
    Valid(Box<Manifest>),
    /// No entry.
    Absent,
    /// An entry that must not be used, and why (naming the file).
    Corrupt(String),
}

/// A cache directory.
#[derive(Clone)]
pub struct Cache {
    root: Utf8PathBuf,
    /// `false` for `plan`, `dag` and `compare`: nothing is created or written.
    writable: bool,
    stats: Arc<Mutex<StatCache>>,
    /// This process's shared locks, created on first use.
    readers: Arc<Mutex<Option<ReaderFile>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.root)
    }
}

/// A held per-key lock; released on drop, taken over by others if this process dies.
pub struct KeyLock {
    _lock: FileLock,
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
        Ok(Cache::with_root(root, true))
    }

    /// Opens the cache at `root` for reading only: nothing is created (a missing directory is an
    /// empty cache), no stat cache or lock is written.
    pub fn open_read_only(root: &Utf8Path) -> Result<Cache, CacheError> {
        let root = match root.canonicalize_utf8() {
            Ok(root) => root,
            Err(_) if root.is_absolute() => root.to_owned(),
            Err(_) => {
                let cwd = std::env::current_dir().map_err(io_err(root))?;
                Utf8PathBuf::from_path_buf(cwd)
                    .map_err(|_| io_err(root)(std::io::Error::other("not UTF-8")))?
                    .join(root)
            }
        };
        Ok(Cache::with_root(root, false))
    }

    fn with_root(root: Utf8PathBuf, writable: bool) -> Cache {
        let stats = StatCache::load(&root.join("stat-cache.json"));
        Cache {
            root,
            writable,
            stats: Arc::new(Mutex::new(stats)),
            readers: Arc::new(Mutex::new(None)),
        }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    /// The stat cache shared by every hash this process computes (external files, entries).
    pub fn stat_cache(&self) -> MutexGuard<'_, StatCache> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists the stat cache (not for a read-only cache).
    pub fn save_stat_cache(&self) -> std::io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.stat_cache().save(&self.root.join("stat-cache.json"))
    }

    /// Forgets the remembered hashes of the files under `keys`, on disk too (one write), so the next check
    /// reads them again: a corruption `fsck` found that kept each file's size, inode and mtime
    /// would otherwise pass the next run's stat-based check. The stat cache is derived data, so
    /// this writes it even for a read-only `fsck`.
    pub fn forget_hashes<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k CacheKey>,
    ) -> Result<(), CacheError> {
        let mut stats = self.stat_cache();
        let mut forgot = false;
        for key in keys {
            forgot |= stats.forget_under(&self.entry_dir(key));
        }
        if forgot {
            let path = self.root.join("stat-cache.json");
            stats.save(&path).map_err(io_err(&path))?;
        }
        Ok(())
    }

    pub fn entry_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("entries").join(key.hex())
    }

    /// Where a finished entry's outputs are.
    pub fn output_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.entry_dir(key).join(OUTPUT_DIR)
    }

    /// The manifest of a complete entry whose files match it, if there is one.
    pub fn lookup(&self, key: &CacheKey) -> Option<Manifest> {
        match self.check(key) {
            Lookup::Valid(manifest) => Some(*manifest),
            _ => None,
        }
    }

    /// Checks the entry under `key` against its manifest, re-reading only files whose stat data
    /// changed since they were last hashed.
    pub fn check(&self, key: &CacheKey) -> Lookup {
        let dir = self.entry_dir(key);
        match fs::symlink_metadata(&dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Lookup::Absent,
            Err(error) => return Lookup::Corrupt(format!("`{dir}` cannot be read: {error}")),
            Ok(meta) if !meta.is_dir() => {
                return Lookup::Corrupt(format!("`{dir}` is not a directory"))
            }
            Ok(_) => {}
        }
        match verify(&dir, key, &mut Verifier::Cached(&mut self.stat_cache())) {
            Ok(manifest) => Lookup::Valid(Box::new(manifest)),
            Err(problem) => Lookup::Corrupt(problem),
        }
    }

    /// Records that this process reads the entry `key` until it exits: `gc` leaves it alone.
    /// Call it before checking the entry, so that `gc` either sees the hold or has already
    /// moved the entry away when it is checked.
    pub fn hold(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.hold_all(std::slice::from_ref(key))
    }

    /// [`Cache::hold`] for many entries at once (one write and one sync).
    pub fn hold_all(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        if !self.writable {
            return Ok(());
        }
        let hex: Vec<String> = keys.iter().map(CacheKey::hex).collect();
        let dir = self.root.join("locks").join("readers");
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.is_none() {
            *readers = Some(ReaderFile::create(&dir).map_err(io_err(&dir))?);
        }
        match readers.as_mut() {
            Some(file) => file
                .add(hex.iter().map(String::as_str))
                .map_err(io_err(&dir)),
            None => Ok(()),
        }
    }

    /// Takes the per-key lock without waiting; `None` when another live process holds it.
    pub fn try_lock(&self, key: &CacheKey) -> Result<Option<KeyLock>, CacheError> {
        let path = self.lock_path(key);
        Ok(FileLock::try_acquire(&path)
            .map_err(io_err(&path))?
            .map(|lock| KeyLock { _lock: lock }))
    }

    /// Takes the per-key lock, waiting for another process that holds it (`on_wait` is called
    /// once if it has to).
    pub fn lock_waiting(
        &self,
        key: &CacheKey,
        on_wait: impl FnOnce(),
    ) -> Result<KeyLock, CacheError> {
        let path = self.lock_path(key);
        Ok(KeyLock {
            _lock: FileLock::acquire(&path, on_wait).map_err(io_err(&path))?,
        })
    }

    /// Takes the per-key lock, waiting for another process that holds it.
    pub fn lock(&self, key: &CacheKey) -> Result<KeyLock, CacheError> {
        self.lock_waiting(key, || {})
    }

    fn lock_path(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.hex()))
    }

    /// Where a stage keeps its resume checkpoints while it runs: outside its entry, kept when a
    /// run is killed, removed once the entry is committed.
    pub fn checkpoint_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("checkpoints").join(key.hex())
    }

    /// Records that `stage` of `recipe` last had `key`.
    pub fn record_ref(&self, recipe: &str, stage: &str, key: &CacheKey) -> Result<(), CacheError> {
        let path = self.ref_path(recipe, stage);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let tmp = Utf8PathBuf::from(format!("{path}.tmp{}", std::process::id()));
        let written = fs::write(&tmp, key.hex())
            .map_err(io_err(&tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err(&path)));
        if written.is_err() {
            // A full disk must not leave an empty temporary file behind.
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// The key `stage` of `recipe` had at its last run.
    pub fn last_ref(&self, recipe: &str, stage: &str) -> Option<CacheKey> {
        let text = fs::read_to_string(self.ref_path(recipe, stage)).ok()?;
        CacheKey::from_hex(text.trim())
    }

    fn ref_path(&self, recipe: &str, stage: &str) -> Utf8PathBuf {
        self.root
            .join("refs")
            .join(sanitize(recipe))
            .join(sanitize(stage))
    }
}

/// A name safe as one path component.
pub fn sanitize(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=.,[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // `.` and `..` would not be names of their own.
    if safe.chars().all(|c| c == '.') {
        safe.replace('.', "_")
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::cache::key::KeyMaterial;
    use crate::cache::manifest::MANIFEST_FILE;

    fn key(n: u64) -> CacheKey {
        KeyMaterial {
            kind: "t",
            version: 1,
            params: &serde_json::Value::Null,
            seed: n,
            inputs: &[],
            external: &[],
        }
        .key()
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
    fn what_fsck_finds_is_found_again_by_the_next_run() {
        let (_tmp, cache) = cache();
        let k = key(3);
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        fs::write(staging.out_dir().join("a"), "xxxx").unwrap();
        cache.commit(staging, manifest(&k)).unwrap();
        let file = cache.output_dir(&k).join("a");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        // An mtime well in the past, so the stat cache trusts it (a fresh one is re-read).
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let set_mtime = || {
            fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(long_ago)
                .unwrap()
        };
        set_mtime();
        // A run checks the entry and saves what it hashed.
        assert!(matches!(cache.check(&k), Lookup::Valid(_)));
        cache.save_stat_cache().unwrap();
        // Flip bytes in place and put the mtime back: size, inode and mtime all unchanged.
        fs::write(&file, "yyyy").unwrap();
        set_mtime();
        let stale = Cache::open(cache.root()).unwrap();
        assert!(
            matches!(stale.check(&k), Lookup::Valid(_)),
            "the stat cache trusts unchanged stat data, as designed"
        );
        assert_eq!(Cache::open(cache.root()).unwrap().fsck().unwrap().len(), 1);
        let next_run = Cache::open(cache.root()).unwrap();
        assert!(matches!(next_run.check(&k), Lookup::Corrupt(_)));
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
            committed(&cache, n, &[]);
        }
        let report = cache.gc(&HashSet::from([key(4)])).unwrap();
        assert_eq!((report.removed, report.kept), (1, 1));
        assert!(cache.lookup(&key(5)).is_none());
    }

    /// Commits an entry from another `Cache` (as another process would: a committing process
    /// holds what it commits until it is done).
    fn committed(cache: &Cache, n: u64, files: &[(&str, &str)]) -> CacheKey {
        let cache = Cache::open(cache.root()).unwrap();
        let k = key(n);
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        for (name, text) in files {
            let path = staging.out_dir().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        cache.commit(staging, manifest(&k)).unwrap();
        k
    }

    fn overwrite(path: &Utf8Path, text: &[u8]) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_changed_byte_or_manifest_makes_the_entry_corrupt() {
        let (_tmp, cache) = cache();
        let k = committed(&cache, 10, &[("a.bin", "hello")]);
        assert!(matches!(cache.check(&k), Lookup::Valid(_)));
        overwrite(&cache.output_dir(&k).join("a.bin"), b"hellp");
        let Lookup::Corrupt(problem) = cache.check(&k) else {
            panic!("flip not detected")
        };
        assert!(problem.contains("out/a.bin"), "{problem}");

        let k = committed(&cache, 11, &[("a.bin", "hello")]);
        let manifest = cache.entry_dir(&k).join(MANIFEST_FILE);
        let text = fs::read_to_string(&manifest)
            .unwrap()
            .replace("\"wall_time_s\": 0.0", "\"wall_time_s\": 1.0");
        overwrite(&manifest, text.as_bytes());
        let Lookup::Corrupt(problem) = cache.check(&k) else {
            panic!("manifest change not detected")
        };
        assert!(problem.contains("manifest.blake3"), "{problem}");
        assert_eq!(cache.fsck().unwrap().len(), 2);
    }

    #[test]
    fn an_entry_without_manifest_never_blocks_a_commit() {
        let (_tmp, cache) = cache();
        let k = committed(&cache, 12, &[("a", "x")]);
        let dir = cache.entry_dir(&k);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
        assert!(matches!(cache.check(&k), Lookup::Corrupt(_)));
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        fs::write(staging.out_dir().join("a"), "x").unwrap();
        cache.commit(staging, manifest(&k)).unwrap();
        assert!(matches!(cache.check(&k), Lookup::Valid(_)));
        assert_eq!(
            fs::read_dir(cache.root().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn special_files_and_escaping_links_fail_the_commit() {
        let (_tmp, cache) = cache();
        for (n, make) in [
            (
                20u64,
                Box::new(|out: &Utf8Path| {
                    std::os::unix::fs::symlink("/dev/zero", out.join("z")).unwrap()
                }) as Box<dyn Fn(&Utf8Path)>,
            ),
            (
                21,
                Box::new(|out: &Utf8Path| {
                    std::os::unix::fs::symlink("../../../etc/passwd", out.join("p")).unwrap()
                }),
            ),
            (
                22,
                Box::new(|out: &Utf8Path| {
                    let c = std::ffi::CString::new(out.join("fifo").as_str()).unwrap();
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
                }),
            ),
        ] {
            let k = key(n);
            let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
            make(&staging.out_dir());
            let err = cache.commit(staging, manifest(&k)).unwrap_err();
            assert!(matches!(err, CacheError::OutputNotPlain { .. }), "{err}");
            assert!(cache.lookup(&k).is_none());
        }
        let k = key(23);
        let staging = cache.stage(k, cache.lock(&k).unwrap()).unwrap();
        fs::create_dir_all(staging.out_dir().join("sub")).unwrap();
        fs::write(staging.out_dir().join("sub/data"), "d").unwrap();
        std::os::unix::fs::symlink("sub/data", staging.out_dir().join("inner")).unwrap();
        cache.commit(staging, manifest(&k)).unwrap();
        assert!(
            matches!(cache.check(&k), Lookup::Valid(_)),
            "a link inside the output is fine"
        );
    }

    #[test]
    fn gc_skips_entries_a_process_reads() {
        let (_tmp, cache) = cache();
        let held = committed(&cache, 30, &[("a", "1")]);
        let free = committed(&cache, 31, &[("b", "2")]);
        let reader = Cache::open(cache.root()).unwrap();
        reader.hold(&held).unwrap();
        let report = cache.gc(&HashSet::new()).unwrap();
        assert_eq!((report.removed, report.held.len()), (1, 1), "{report:?}");
        assert!(cache.lookup(&held).is_some() && cache.lookup(&free).is_none());
    }

    #[test]
    fn a_moved_cache_directory_still_validates() {
        let (tmp, cache) = cache();
        let k = committed(&cache, 40, &[("a", "1")]);
        let moved = Utf8Path::from_path(tmp.path())
            .unwrap()
            .join("../moved-cache-test");
        let _ = fs::remove_dir_all(&moved);
        fs::rename(cache.root(), &moved).unwrap();
        let again = Cache::open(&moved).unwrap();
        assert!(matches!(again.check(&k), Lookup::Valid(_)));
        fs::rename(&moved, cache.root()).unwrap();
    }

    #[test]
    fn refs_remember_the_last_key() {
        let (_tmp, cache) = cache();
        cache.record_ref("quick start", "train", &key(6)).unwrap();
        assert_eq!(cache.last_ref("quick start", "train"), Some(key(6)));
        assert_eq!(cache.last_ref("quick start", "other"), None);
    }
}
