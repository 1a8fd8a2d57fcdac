//! Content hashes of files and directories outside the cache, with a stat cache so unchanged
//! large files are not read again.
//!
//! A file is re-hashed when its (device, inode, size, mtime) changed, or when its mtime is so
//! close to the moment it was last hashed that a same-tick write could have been missed.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not valid UTF-8 and cannot be named in a recipe")]
    NonUtf8Path { path: std::path::PathBuf },
    #[error(
        "`{path}` is {what}, not a regular file: hwrun hashes only regular files and directories"
    )]
    NotAFile {
        path: Utf8PathBuf,
        what: &'static str,
    },
    #[error("hashing `{path}` was interrupted")]
    Interrupted { path: Utf8PathBuf },
}

/// Set by the first Ctrl-C / SIGTERM: every hash in progress stops at its next chunk.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Stops all hashing in this process (called by the signal handler).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Bytes hashed between two interruption checks.
const CHUNK: usize = 8 << 20;

/// What a non-regular file is, for messages.
pub fn describe_type(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StatEntry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    hashed_at_ns: i128,
    blake3: String,
}

/// Remembers file hashes by stat data; persisted as JSON in the cache directory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: HashMap<Utf8PathBuf, StatEntry>,
    #[serde(skip)]
    dirty: bool,
}

/// Margin under which an mtime is too close to the hashing time to be trusted.
const RACY_MARGIN_NS: i128 = 2_000_000_000;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl StatCache {
    /// Loads the stat cache; a missing or unreadable file starts an empty one.
    pub fn load(path: &Utf8Path) -> StatCache {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Forgets every file under `dir`, so the next hash of each reads its bytes again; says
    /// whether anything was forgotten.
    pub fn forget_under(&mut self, dir: &Utf8Path) -> bool {
        let before = self.entries.len();
        self.entries.retain(|path, _| !path.starts_with(dir));
        let forgot = self.entries.len() != before;
        self.dirty |= forgot;
        forgot
    }

    /// Saves it if anything changed (write to a temporary file, then rename).
    pub fn save(&self, path: &Utf8Path) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|json| fs::write(&tmp, json))
            .and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            // A full disk must not leave a partial temporary file behind.
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(|e| std::io::Error::new(e.kind(), format!("writing `{path}`: {e}")))
    }

    /// The content hash of a file, or of a directory (its sorted relative paths and file hashes).
    pub fn hash_path(&mut self, path: &Utf8Path) -> Result<blake3::Hash, HashError> {
        let meta = fs::metadata(path).map_err(|source| HashError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            self.hash_dir(path)
        } else {
            self.hash_file(path, &meta)
        }
    }

    fn hash_dir(&mut self, dir: &Utf8Path) -> Result<blake3::Hash, HashError> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        files.sort();
        let mut hasher = blake3::Hasher::new();
        for relative in files {
            let path = dir.join(&relative);
            let meta = fs::metadata(&path).map_err(|source| HashError::Unreadable {
                path: path.clone(),
                source,
            })?;
            let hash = self.hash_file(&path, &meta)?;
            hasher.update(&(relative.as_str().len() as u64).to_le_bytes());
            hasher.update(relative.as_str().as_bytes());
            hasher.update(hash.as_bytes());
        }
        Ok(hasher.finalize())
    }

    fn hash_file(
        &mut self,
        path: &Utf8Path,
        meta: &fs::Metadata,
    ) -> Result<blake3::Hash, HashError> {
        require_regular(path, meta)?;
        let absolute = path.canonicalize_utf8().unwrap_or_else(|_| path.to_owned());
        self.cached_hash(absolute, path, meta)
    }

    /// Size and content hash of a file inside a cache entry (`path` absolute). A symbolic link or
    /// special file is an error: entries hold regular files only (links are recorded apart).
    pub fn hash_entry_file(&mut self, path: &Utf8Path) -> Result<(u64, blake3::Hash), HashError> {
        let meta = entry_file_metadata(path)?;
        Ok((meta.len(), self.cached_hash(path.to_owned(), path, &meta)?))
    }

    fn cached_hash(
        &mut self,
        absolute: Utf8PathBuf,
        path: &Utf8Path,
        meta: &fs::Metadata,
    ) -> Result<blake3::Hash, HashError> {
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        if let Some(entry) = self.entries.get(&absolute) {
            let unchanged = entry.dev == meta.dev()
                && entry.ino == meta.ino()
                && entry.size == meta.size()
                && entry.mtime_ns == mtime_ns
                && entry.hashed_at_ns - mtime_ns > RACY_MARGIN_NS;
            if unchanged {
                if let Ok(hash) = blake3::Hash::from_hex(&entry.blake3) {
                    return Ok(hash);
                }
            }
        }
        let hash = hash_file_contents(path)?;
        self.entries.insert(
            absolute,
            StatEntry {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime_ns,
                hashed_at_ns: now_ns(),
                blake3: hash.to_hex().to_string(),
            },
        );
        self.dirty = true;
        Ok(hash)
    }
}

/// The metadata of `path`, a file inside a cache entry: a symbolic link or special file is an
/// error, since entries hold regular files only (links are recorded apart).
pub fn entry_file_metadata(path: &Utf8Path) -> Result<fs::Metadata, HashError> {
    let meta = fs::symlink_metadata(path).map_err(|source| HashError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    require_regular(path, &meta)?;
    Ok(meta)
}

/// Refuses what is not a regular file before it is read: a FIFO would block, a device never end.
fn require_regular(path: &Utf8Path, meta: &fs::Metadata) -> Result<(), HashError> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(HashError::NotAFile {
            path: path.to_owned(),
            what: describe_type(meta.file_type()),
        })
    }
}

/// Reads and hashes a regular file, multi-threaded, in chunks: stops at the size the file had
/// when opened (a growing file cannot keep it busy) and at a Ctrl-C. A FIFO or device is refused
/// before it is read (and opened non-blocking, so a FIFO cannot hang the open either).
pub fn hash_file_contents(path: &Utf8Path) -> Result<blake3::Hash, HashError> {
    let unreadable = |source| HashError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    require_regular(path, &meta)?;
    let mut hasher = blake3::Hasher::new();
    let mut reader = file.take(meta.len());
    let mut buffer = vec![0u8; CHUNK.min(meta.len() as usize).max(1)];
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(HashError::Interrupted {
                path: path.to_owned(),
            });
        }
        let mut filled = 0;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(e)),
            }
        }
        if filled == 0 {
            break;
        }
        hasher.update_rayon(&buffer[..filled]);
        if filled < buffer.len() {
            break;
        }
    }
    Ok(hasher.finalize())
}

/// Relative paths of every file below `dir`.
pub fn collect_files(
    root: &Utf8Path,
    dir: &Utf8Path,
    out: &mut Vec<Utf8PathBuf>,
) -> Result<(), HashError> {
    let entries = fs::read_dir(dir).map_err(|source| HashError::Unreadable {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| HashError::Unreadable {
            path: dir.to_owned(),
            source,
        })?;
        let path = Utf8PathBuf::from_path_buf(entry.path())
            .map_err(|path| HashError::NonUtf8Path { path })?;
        let file_type = entry.file_type().map_err(|source| HashError::Unreadable {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_hash_follows_content_and_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/a.txt"), "a").unwrap();
        fs::write(dir.join("b.txt"), "b").unwrap();
        let mut cache = StatCache::default();
        let first = cache.hash_path(dir).unwrap();
        assert_eq!(cache.hash_path(dir).unwrap(), first);
        fs::write(dir.join("b.txt"), "B").unwrap();
        let changed = cache.hash_path(dir).unwrap();
        assert_ne!(changed, first);
        fs::rename(dir.join("b.txt"), dir.join("c.txt")).unwrap();
        assert_ne!(cache.hash_path(dir).unwrap(), changed);
    }

    #[test]
    fn fifos_and_devices_are_refused_without_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_str()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        let mut cache = StatCache::default();
        for name in ["fifo", "zero"] {
            let err = cache.hash_path(&dir.join(name)).unwrap_err();
            assert!(matches!(err, HashError::NotAFile { .. }), "{name}: {err}");
        }
        assert!(matches!(
            hash_file_contents(&fifo),
            Err(HashError::NotAFile { what: "a FIFO", .. })
        ));
        assert!(
            cache.hash_path(dir).is_err(),
            "a directory holding them is refused too"
        );
    }

    #[test]
    fn persisted_cache_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        fs::write(dir.join("f"), "x").unwrap();
        let mut cache = StatCache::default();
        let hash = cache.hash_path(&dir.join("f")).unwrap();
        cache.save(&dir.join("stat.json")).unwrap();
        let mut loaded = StatCache::load(&dir.join("stat.json"));
        assert_eq!(loaded.hash_path(&dir.join("f")).unwrap(), hash);
    }
}
