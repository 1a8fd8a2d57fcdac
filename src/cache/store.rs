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

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use super::file_hash::{
    describe_type, entry_file_metadata, hash_file_contents, HashError, StatCache,
};
use super::key::CacheKey;
use super::lock::{live_readers, FileLock, ReaderFile};
use super::manifest::{
    FileRecord, Manifest, LOG_FILE, MANIFEST_FILE, MANIFEST_SUM_FILE, OUTPUT_DIR,
};

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

    /// Where a stage keeps its resume checkpoints while it runs: outside its entry, kept when a
    /// run is killed, removed once the entry is committed.
    pub fn checkpoint_dir(&self, key: &CacheKey) -> Utf8PathBuf {
        self.root.join("checkpoints").join(key.hex())
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
        Ok(problems)
    }

    /// Quarantines the entry under `key` if no process holds its lock; returns where it went.
    pub fn repair(&self, key: &CacheKey) -> Result<Option<Utf8PathBuf>, CacheError> {
        let Some(lock) = self.try_lock(key)? else {
            return Ok(None);
        };
        self.quarantine(key, &lock).map(Some)
    }
}

/// How files are hashed: through the stat cache (a run) or re-read in full (fsck, commit).
enum Verifier<'a> {
    Cached(&'a mut StatCache),
    Full,
}

impl Verifier<'_> {
    fn hash(&mut self, path: &Utf8Path) -> Result<(u64, blake3::Hash), HashError> {
        match self {
            Verifier::Cached(stats) => stats.hash_entry_file(path),
            Verifier::Full => {
                let meta = entry_file_metadata(path)?;
                Ok((meta.len(), hash_file_contents(path)?))
            }
        }
    }
}

/// Checks an entry directory: manifest against its hash, then every file it lists.
fn verify(dir: &Utf8Path, key: &CacheKey, verifier: &mut Verifier<'_>) -> Result<Manifest, String> {
    let bytes = fs::read(dir.join(MANIFEST_FILE)).map_err(|e| {
        format!("`{MANIFEST_FILE}` is missing or unreadable ({e}): the entry is incomplete")
    })?;
    let sum = fs::read_to_string(dir.join(MANIFEST_SUM_FILE))
        .map_err(|e| format!("`{MANIFEST_SUM_FILE}` is missing or unreadable ({e})"))?;
    let actual = blake3::hash(&bytes).to_hex();
    if sum.trim() != actual.as_str() {
        return Err(format!(
            "`{MANIFEST_FILE}` has blake3 {actual} but `{MANIFEST_SUM_FILE}` says {}: the manifest (its metrics or file list) changed",
            sum.trim()
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("`{MANIFEST_FILE}` is not a valid manifest: {e}"))?;
    if manifest.key != key.hex() {
        return Err(format!("`{MANIFEST_FILE}` names key {}", manifest.key));
    }
    for record in &manifest.files {
        if !is_inside(Utf8Path::new(&record.path)) {
            return Err(format!(
                "`{MANIFEST_FILE}` lists `{}`, which is not inside the entry",
                record.path
            ));
        }
        let path = dir.join(&record.path);
        if let Some(expected) = &record.link {
            match fs::read_link(&path) {
                Ok(target) if target.as_os_str() == expected.as_str() => continue,
                Ok(target) => {
                    return Err(format!(
                        "`{}` links to `{}` but the manifest says `{expected}`",
                        record.path,
                        target.display()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "`{}` is not the link the manifest lists: {e}",
                        record.path
                    ))
                }
            }
        }
        let (size, hash) = verifier
            .hash(&path)
            .map_err(|e| format!("`{}`: {e}", record.path))?;
        if size != record.size {
            return Err(format!(
                "`{}` is {size} bytes but the manifest says {}",
                record.path, record.size
            ));
        }
        if hash.to_hex().as_str() != record.blake3 {
            return Err(format!(
                "`{}` has blake3 {} but the manifest says {}",
                record.path,
                hash.to_hex(),
                record.blake3
            ));
        }
    }
    Ok(manifest)
}

/// Whether a relative path stays inside the directory it is relative to.
fn is_inside(path: &Utf8Path) -> bool {
    let mut depth: i64 = 0;
    for component in path.components() {
        match component {
            Utf8Component::Normal(_) => depth += 1,
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Utf8Component::RootDir | Utf8Component::Prefix(_) => return false,
        }
    }
    true
}

/// Hash records of every file in an entry directory except the manifest and its hash. Nothing
/// but regular files, directories and links to a relative path inside `out/` is accepted, and
/// special files are never opened.
fn file_records(
    dir: &Utf8Path,
    verifier: &mut Verifier<'_>,
) -> Result<Vec<FileRecord>, CacheError> {
    let mut records = Vec::new();
    walk(dir, Utf8Path::new(""), verifier, &mut records)?;
    records.retain(|r| r.path != MANIFEST_FILE && r.path != MANIFEST_SUM_FILE);
    records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(records)
}

fn walk(
    root: &Utf8Path,
    relative: &Utf8Path,
    verifier: &mut Verifier<'_>,
    out: &mut Vec<FileRecord>,
) -> Result<(), CacheError> {
    let dir = root.join(relative);
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| CacheError::OutputNotPlain {
            path: relative.join(name.to_string_lossy().as_ref()),
            what: "named in non-UTF-8".to_owned(),
        })?;
        let path = relative.join(name);
        let file_type = entry.file_type().map_err(io_err(&root.join(&path)))?;
        if file_type.is_dir() {
            walk(root, &path, verifier, out)?;
        } else if file_type.is_file() {
            let (size, hash) = verifier.hash(&root.join(&path))?;
            out.push(FileRecord {
                path: path.into_string(),
                size,
                blake3: hash.to_hex().to_string(),
                link: None,
            });
        } else if file_type.is_symlink() {
            let target = fs::read_link(root.join(&path)).map_err(io_err(&root.join(&path)))?;
            let target =
                Utf8PathBuf::from_path_buf(target).map_err(|t| CacheError::OutputNotPlain {
                    path: path.clone(),
                    what: format!("a link to the non-UTF-8 path `{}`", t.display()),
                })?;
            // Resolved lexically from the link's directory, it must stay inside `out/`.
            let inside_out = target.is_relative()
                && path
                    .parent()
                    .and_then(|parent| parent.strip_prefix(OUTPUT_DIR).ok())
                    .is_some_and(|parent| is_inside(&parent.join(&target)));
            if !inside_out {
                return Err(CacheError::OutputNotPlain {
                    path,
                    what: format!("a symbolic link to `{target}`, outside the output directory"),
                });
            }
            let hash = blake3::hash(target.as_str().as_bytes());
            out.push(FileRecord {
                path: path.into_string(),
                size: 0,
                blake3: hash.to_hex().to_string(),
                link: Some(target.into_string()),
            });
        } else {
            return Err(CacheError::OutputNotPlain {
                path,
                what: describe_type(file_type).to_owned(),
            });
        }
    }
    Ok(())
}

fn write_synced(path: &Utf8Path, bytes: &[u8]) -> Result<(), CacheError> {
    use std::io::Write;
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

/// Renames an entry directory (read-only: its own mode must allow the rename to update `..`).
fn move_entry(from: &Utf8Path, to: &Utf8Path) -> Result<(), CacheError> {
    fs::set_permissions(from, fs::Permissions::from_mode(0o755)).map_err(io_err(from))?;
    fs::rename(from, to).map_err(io_err(to))
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
    use super::*;
    use crate::cache::key::KeyMaterial;

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
