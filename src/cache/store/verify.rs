//! Checking an entry against its manifest, and the file records a manifest is made of: sizes and
//! blake3 hashes of regular files, and links that stay inside the output directory.

use std::fs;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use super::{io_err, CacheError};
use crate::cache::file_hash::{
    describe_type, entry_file_metadata, hash_file_contents, HashError, StatCache,
};
use crate::cache::key::CacheKey;
use crate::cache::manifest::{FileRecord, Manifest, MANIFEST_FILE, MANIFEST_SUM_FILE, OUTPUT_DIR};

/// How files are hashed: through the stat cache (a run) or re-read in full (fsck, commit).
pub(super) enum Verifier<'a> {
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
pub(super) fn verify(
    dir: &Utf8Path,
    key: &CacheKey,
    verifier: &mut Verifier<'_>,
) -> Result<Manifest, String> {
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
pub(super) fn file_records(
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
