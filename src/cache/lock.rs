//! Locks that work on a shared filesystem (NFS included), where `flock` may not.
//!
//! A lock is a file created with `O_CREAT | O_EXCL` (atomic on every POSIX filesystem and on
//! NFSv3+) holding the holder's host, pid, process start time and a heartbeat timestamp. While
//! it is held, a background thread rewrites the heartbeat every quarter of the stale time
//! (`HWRUN_LOCK_STALE_SECS`, default 60 s). Another process takes a lock over when
//! - its holder shares this process table (the same boot of the same kernel and the same PID
//!   namespace; containers that share a hostname do not) and that process is gone (checked by
//!   pid and start time, so a reused pid does not keep a dead lock alive): at once;
//! - its heartbeat is older than the stale time (a holder on another node that died, or whose
//!   node died): after that time. Nodes' clocks must agree to well within the stale time.
//!
//! Taking over goes through a short-lived `<lock>.break` lock so that two processes breaking the
//! same stale lock cannot delete the fresh lock one of them just created.
//!
//! [`ReaderFile`] is the shared side: one file per process listing the cache entries it reads,
//! with the same header and heartbeat; `gc` skips entries a live reader file lists.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};

/// Default time after which a lock whose heartbeat stopped is taken over.
const DEFAULT_STALE: Duration = Duration::from_secs(60);

/// How long a lock is considered stale after its last heartbeat.
pub fn stale_after() -> Duration {
    std::env::var("HWRUN_LOCK_STALE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_STALE, Duration::from_secs_f64)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// This host's name (`gethostname`).
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = if ok {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        // Spaces and newlines would break the header format.
        let name: String = name.chars().filter(|c| c.is_ascii_graphic()).collect();
        if name.is_empty() {
            "unknown-host".to_owned()
        } else {
            name
        }
    })
}

/// Which process table pids refer to here: this boot's id and this PID namespace's inode. Two
/// containers of one pod can share a hostname but not a PID namespace, where a pid that does
/// not exist here may be a live process there.
pub fn process_table() -> &'static str {
    static TABLE: OnceLock<String> = OnceLock::new();
    TABLE.get_or_init(|| {
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .unwrap_or_default();
        let namespace = fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino());
        let table: String = format!("{boot}:{namespace}")
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(TABLE_WIDTH)
            .collect();
        table
    })
}

/// The width the `table` field of a lock header is padded to, so heartbeats rewrite in place.
const TABLE_WIDTH: usize = 60;

/// The start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Who holds a lock, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    /// [`process_table`] of the holder; empty in locks written before it was recorded.
    pub table: String,
    pub pid: u32,
    pub start: u64,
    pub heartbeat_ms: u128,
}

impl Holder {
    fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            host: hostname().to_owned(),
            table: process_table().to_owned(),
            pid,
            start: process_start(pid).unwrap_or(0),
            heartbeat_ms: now_ms(),
        }
    }

    /// A fixed-length header (for one process), so a heartbeat rewrites it in place.
    fn header(&self) -> String {
        format!(
            "hwrun-lock 2\nhost {}\ntable {:<TABLE_WIDTH$}\npid {:>10}\nstart {:>20}\nheartbeat {:>39}\n",
            self.host, self.table, self.pid, self.start, self.heartbeat_ms
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut lines = text.lines();
        let version = lines.next()?;
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')
                .map(|v| v.trim().to_owned())
        };
        let (host, table) = match version {
            "hwrun-lock 1" => (field("host")?, String::new()),
            "hwrun-lock 2" => (field("host")?, field("table")?),
            _ => return None,
        };
        let pid = field("pid")?.parse().ok()?;
        let start = field("start")?.parse().ok()?;
        let heartbeat_ms = field("heartbeat")?.parse().ok()?;
        Some(Holder {
            host,
            table,
            pid,
            start,
            heartbeat_ms,
        })
    }

    /// Whether the holder is certainly gone: a dead process in this process table, or a
    /// heartbeat older than the stale time.
    pub fn is_stale(&self, stale_after: Duration) -> bool {
        let same_table = if self.table.is_empty() {
            // Written by a hwrun that did not record its table: its host is all there is.
            self.host == hostname()
        } else {
            self.table == process_table()
        };
        if same_table {
            // Same host: the process table is the truth (a reused pid has another start time).
            return match process_start(self.pid) {
                None => true,
                Some(start) => self.start != 0 && start != self.start,
            };
        }
        now_ms().saturating_sub(self.heartbeat_ms) > stale_after.as_millis()
    }

    /// `pid 123 on node7`.
    pub fn describe(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }
}

/// Reads the holder of a lock or reader file; `None` if absent or not (yet) written.
pub fn read_holder(path: &Utf8Path) -> Option<Holder> {
    Holder::parse(&fs::read_to_string(path).ok()?)
}

/// Whether the lock file at `path` may be removed by someone else.
fn file_is_stale(path: &Utf8Path, stale_after: Duration) -> bool {
    match fs::read_to_string(path) {
        Err(_) => false,
        Ok(text) => match Holder::parse(&text) {
            Some(holder) => holder.is_stale(stale_after),
            // Created but never written (the creator died between the two steps, or is between
            // them right now): judge by age.
            None => fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > stale_after),
        },
    }
}

/// The files this process keeps alive with heartbeats, by id.
struct Heartbeats {
    files: Mutex<HashMap<u64, Arc<File>>>,
    next: Mutex<u64>,
}

fn heartbeats() -> &'static Heartbeats {
    static BEATS: OnceLock<Heartbeats> = OnceLock::new();
    BEATS.get_or_init(|| {
        std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            loop {
                // Short ticks, so a changed stale time takes effect at once.
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed()
                    < (stale_after() / 4).clamp(Duration::from_millis(50), Duration::from_secs(15))
                {
                    continue;
                }
                last = std::time::Instant::now();
                let header = Holder::me().header();
                let files: Vec<Arc<File>> = match heartbeats().files.lock() {
                    Ok(files) => files.values().cloned().collect(),
                    Err(_) => return,
                };
                for file in files {
                    // Through the open descriptor: if the lock was taken over, this writes to the
                    // unlinked old file and harms nobody.
                    let _ = file.write_all_at(header.as_bytes(), 0);
                }
            }
        });
        Heartbeats {
            files: Mutex::new(HashMap::new()),
            next: Mutex::new(0),
        }
    })
}

fn register(file: Arc<File>) -> u64 {
    let beats = heartbeats();
    let id = beats.next.lock().map(|mut n| {
        *n += 1;
        *n
    });
    let id = id.unwrap_or(0);
    if let Ok(mut files) = beats.files.lock() {
        files.insert(id, file);
    }
    id
}

fn unregister(id: u64) {
    if let Ok(mut files) = heartbeats().files.lock() {
        files.remove(&id);
    }
}

/// Creates `path` exclusively with this process's header; `None` if it exists.
fn create_exclusive(path: &Utf8Path) -> std::io::Result<Option<File>> {
    match File::options().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            file.write_all(Holder::me().header().as_bytes())?;
            file.sync_data()?;
            Ok(Some(file))
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes `path` if it is still the file behind `file` (not a lock someone took over since).
fn remove_if_ours(path: &Utf8Path, file: &File) {
    let ours = match (file.metadata(), fs::metadata(path)) {
        (Ok(mine), Ok(current)) => mine.dev() == current.dev() && mine.ino() == current.ino(),
        _ => false,
    };
    if ours {
        let _ = fs::remove_file(path);
    }
}

/// An exclusive lock; released (its file removed) on drop, taken over if this process dies.
pub struct FileLock {
    path: Utf8PathBuf,
    file: Arc<File>,
    id: u64,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileLock({})", self.path)
    }
}

impl FileLock {
    /// Takes the lock if it is free or stale; `None` while a live process holds it.
    pub fn try_acquire(path: &Utf8Path) -> std::io::Result<Option<FileLock>> {
        let stale_after = stale_after();
        for _ in 0..3 {
            if let Some(file) = create_exclusive(path)? {
                let file = Arc::new(file);
                let id = register(Arc::clone(&file));
                return Ok(Some(FileLock {
                    path: path.to_owned(),
                    file,
                    id,
                }));
            }
            if !file_is_stale(path, stale_after) || !break_stale(path, stale_after)? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Takes the lock, waiting (polling) while a live process holds it; `on_wait` is called once
    /// when it has to wait.
    pub fn acquire(path: &Utf8Path, on_wait: impl FnOnce()) -> std::io::Result<FileLock> {
        let mut on_wait = Some(on_wait);
        let mut delay = Duration::from_millis(10);
        loop {
            if let Some(lock) = FileLock::try_acquire(path)? {
                return Ok(lock);
            }
            if let Some(call) = on_wait.take() {
                call();
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// Whoever holds the lock at `path`, if anyone does.
    pub fn holder(path: &Utf8Path) -> Option<Holder> {
        read_holder(path)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        unregister(self.id);
        remove_if_ours(&self.path, &self.file);
    }
}

/// Removes a stale lock under the `<lock>.break` lock, re-checking that it is still stale (and
/// not a fresh lock created since it was judged). Returns whether it was removed.
fn break_stale(path: &Utf8Path, stale_after: Duration) -> std::io::Result<bool> {
    let breaker = Utf8PathBuf::from(format!("{path}.break"));
    let Some(file) = create_exclusive(&breaker)? else {
        // Someone else is breaking it right now, or died doing so (held for microseconds, so an
        // old break lock is a dead one).
        if file_is_stale(&breaker, stale_after) {
            let _ = fs::remove_file(&breaker);
        }
        return Ok(false);
    };
    let removed = file_is_stale(path, stale_after) && fs::remove_file(path).is_ok();
    if removed {
        tracing::info!("took over the stale lock `{path}`");
    }
    remove_if_ours(&breaker, &file);
    Ok(removed)
}

/// This process's list of the cache entries it reads (shared locks), one file per process under
/// `locks/readers/`, removed on drop. Keys are only appended, so a concurrent reader of the file
/// sees every key appended before it opened it.
pub struct ReaderFile {
    path: Utf8PathBuf,
    file: Arc<File>,
    id: u64,
    held: std::collections::HashSet<String>,
}

impl ReaderFile {
    pub fn create(dir: &Utf8Path) -> std::io::Result<ReaderFile> {
        fs::create_dir_all(dir)?;
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("{}.{}.{nonce}", hostname(), std::process::id()));
        let file = create_exclusive(&path)?.ok_or_else(|| {
            std::io::Error::new(ErrorKind::AlreadyExists, format!("`{path}` exists"))
        })?;
        let file = Arc::new(file);
        let id = register(Arc::clone(&file));
        Ok(ReaderFile {
            path,
            file,
            id,
            held: Default::default(),
        })
    }

    /// Appends `keys` (hex cache keys) not listed yet, flushed to the filesystem (one sync for
    /// all of them) before returning.
    pub fn add<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) -> std::io::Result<()> {
        let mut lines = String::new();
        for key in keys {
            if self.held.insert(key.to_owned()) {
                lines.push_str(&format!("key {key}\n"));
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        let mut file: &File = &self.file;
        file.write_all(lines.as_bytes())?;
        file.sync_data()
    }
}

impl Drop for ReaderFile {
    fn drop(&mut self) {
        unregister(self.id);
        remove_if_ours(&self.path, &self.file);
    }
}

/// Keys listed by live reader files in `dir`, with who holds each; stale files are removed.
pub fn live_readers(dir: &Utf8Path) -> HashMap<String, Holder> {
    let stale_after = stale_after();
    let mut held = HashMap::new();
    let Ok(entries) = dir.read_dir_utf8() else {
        return held;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let Some(holder) = Holder::parse(&text) else {
            if file_is_stale(path, stale_after) {
                let _ = fs::remove_file(path);
            }
            continue;
        };
        if holder.is_stale(stale_after) {
            let _ = fs::remove_file(path);
            continue;
        }
        for key in text.lines().filter_map(|l| l.strip_prefix("key ")) {
            held.insert(key.trim().to_owned(), holder.clone());
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        (tmp, path)
    }

    fn foreign(host: &str, pid: u32, heartbeat_ms: u128) -> String {
        Holder {
            host: host.into(),
            table: if host == hostname() {
                process_table().into()
            } else {
                format!("{host}-boot:1")
            },
            pid,
            start: 1,
            heartbeat_ms,
        }
        .header()
    }

    #[test]
    fn a_held_lock_excludes_and_is_released_on_drop() {
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        let lock = FileLock::try_acquire(&path).unwrap().unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        assert_eq!(FileLock::holder(&path).unwrap().pid, std::process::id());
        drop(lock);
        assert!(!path.exists());
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_dead_local_holder_is_taken_over_at_once() {
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        // No process has pid u32::MAX - 1.
        fs::write(&path, foreign(hostname(), u32::MAX - 1, now_ms())).unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_remote_holder_is_taken_over_only_after_its_heartbeat_expires() {
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        fs::write(&path, foreign("another-node", 1, now_ms())).unwrap();
        assert!(
            FileLock::try_acquire(&path).unwrap().is_none(),
            "fresh heartbeat: still held"
        );
        fs::write(
            &path,
            foreign(
                "another-node",
                1,
                now_ms() - stale_after().as_millis() - 1000,
            ),
        )
        .unwrap();
        assert!(
            FileLock::try_acquire(&path).unwrap().is_some(),
            "expired heartbeat: taken over"
        );
    }

    #[test]
    fn a_holder_in_another_pid_namespace_of_this_host_waits_for_its_heartbeat() {
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        // A container beside this one: same hostname, a pid that does not exist here.
        let neighbour = |heartbeat_ms| {
            Holder {
                host: hostname().into(),
                table: format!("{}-other-namespace", process_table()),
                pid: u32::MAX - 1,
                start: 1,
                heartbeat_ms,
            }
            .header()
        };
        fs::write(&path, neighbour(now_ms())).unwrap();
        assert!(
            FileLock::try_acquire(&path).unwrap().is_none(),
            "its process is not in this table: alive as far as anyone here knows"
        );
        fs::write(&path, neighbour(0)).unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_live_local_holder_is_never_taken_over() {
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        // This process, with an ancient heartbeat: alive, so not stale.
        let me = Holder {
            heartbeat_ms: 0,
            ..Holder::me()
        };
        fs::write(&path, me.header()).unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
    }

    #[test]
    fn heartbeats_rewrite_the_header_in_place() {
        std::env::set_var("HWRUN_LOCK_STALE_SECS", "0.4");
        let (_tmp, dir) = dir();
        let path = dir.join("k.lock");
        let _lock = FileLock::try_acquire(&path).unwrap().unwrap();
        let first = FileLock::holder(&path).unwrap().heartbeat_ms;
        std::thread::sleep(Duration::from_millis(1200));
        let later = FileLock::holder(&path).unwrap().heartbeat_ms;
        assert!(later > first, "{first} -> {later}");
    }

    #[test]
    fn reader_files_list_keys_until_dropped() {
        let (_tmp, dir) = dir();
        let mut reader = ReaderFile::create(&dir).unwrap();
        reader.add(["abc"]).unwrap();
        reader.add(["def", "abc"]).unwrap();
        let held = live_readers(&dir);
        assert_eq!(held.len(), 2);
        assert_eq!(held["abc"].pid, std::process::id());
        fs::write(
            dir.join("dead"),
            format!("{}key zzz\n", foreign(hostname(), u32::MAX - 1, now_ms())),
        )
        .unwrap();
        assert!(!live_readers(&dir).contains_key("zzz"));
        assert!(!dir.join("dead").exists(), "stale reader files are cleaned");
        drop(reader);
        assert!(live_readers(&dir).is_empty());
    }
}
