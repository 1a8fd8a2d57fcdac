//! Content hashes of files and directories outside the cache, with a stat cache so unchanged
//! large files are not read again.
//!
//! A file is re-hashed when its (device, inode, size, mtime) changed, or when its mtime is so
//! close to the moment it was last hashed that a same-tick write could have been missed.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read `{path}`: {source}")]
    Unreadable { path: Utf8PathBuf, source: std::io::Error },
    #[error("`{path}` is not valid UTF-8 and cannot be named in a recipe")]
    NonUtf8Path { path: std::path::PathBuf },
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
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

impl StatCache {
    /// Loads the stat cache; a missing or unreadable file starts an empty one.
    pub fn load(path: &Utf8Path) -> StatCache {
        fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Saves it if anything changed (write to a temporary file, then rename).
    pub fn save(&self, path: &Utf8Path) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        fs::rename(tmp, path)
    }

    /// The content hash of a file, or of a directory (its sorted relative paths and file hashes).
    pub fn hash_path(&mut self, path: &Utf8Path) -> Result<blake3::Hash, HashError> {
        let meta = fs::metadata(path).map_err(|source| HashError::Unreadable { path: path.to_owned(), source })?;
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
            let meta = fs::metadata(&path).map_err(|source| HashError::Unreadable { path: path.clone(), source })?;
            let hash = self.hash_file(&path, &meta)?;
            hasher.update(&(relative.as_str().len() as u64).to_le_bytes());
            hasher.update(relative.as_str().as_bytes());
            hasher.update(hash.as_bytes());
        }
        Ok(hasher.finalize())
    }

    fn hash_file(&mut self, path: &Utf8Path, meta: &fs::Metadata) -> Result<blake3::Hash, HashError> {
        let absolute = path.canonicalize_utf8().unwrap_or_else(|_| path.to_owned());
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

/// Reads and hashes a whole file (memory-mapped by blake3 for large ones, multi-threaded).
pub fn hash_file_contents(path: &Utf8Path) -> Result<blake3::Hash, HashError> {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_mmap_rayon(path)
        .map_err(|source| HashError::Unreadable { path: path.to_owned(), source })?;
    Ok(hasher.finalize())
}

/// Relative paths of every file below `dir`.
pub fn collect_files(root: &Utf8Path, dir: &Utf8Path, out: &mut Vec<Utf8PathBuf>) -> Result<(), HashError> {
    let entries = fs::read_dir(dir).map_err(|source| HashError::Unreadable { path: dir.to_owned(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| HashError::Unreadable { path: dir.to_owned(), source })?;
        let path = Utf8PathBuf::from_path_buf(entry.path()).map_err(|path| HashError::NonUtf8Path { path })?;
        let file_type = entry.file_type().map_err(|source| HashError::Unreadable { path: path.clone(), source })?;
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
