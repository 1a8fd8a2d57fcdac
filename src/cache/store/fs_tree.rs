//! Directory trees of the store: synced writes, entries made read-only, and their moves and
//! removal (which must open the modes up again first).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;

use camino::{Utf8Path, Utf8PathBuf};

use super::{io_err, CacheError};

pub(super) fn write_synced(path: &Utf8Path, bytes: &[u8]) -> Result<(), CacheError> {
    use std::io::Write;
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

/// Renames an entry directory (read-only: its own mode must allow the rename to update `..`).
pub(super) fn move_entry(from: &Utf8Path, to: &Utf8Path) -> Result<(), CacheError> {
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

pub(super) fn make_read_only(path: &Utf8Path) -> Result<(), CacheError> {
    set_mode_recursive(path, 0o444, 0o555)
}

/// Deletes a tree, read-only entries included.
pub(super) fn remove_tree(path: &Utf8Path) -> Result<(), CacheError> {
    set_mode_recursive(path, 0o644, 0o755)?;
    fs::remove_dir_all(path).map_err(io_err(path))
}
