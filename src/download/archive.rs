//! Unpacking downloaded archives into the output directory.
//!
//! The kind is told by the file name: `.tar.gz`/`.tgz`, `.tar.bz2`/`.tbz2`, `.tar`, `.zip`
//! (stored or deflated entries), and single-file `.gz`/`.bz2` (unpacked to the name without the
//! extension, e.g. `usps.bz2` -> `usps`). Entries whose path is absolute or climbs out with `..`
//! abort the unpacking; symbolic and hard links are skipped (data sets do not need them, and a
//! link is the other classic way out of the target directory). Files are written by hand rather
//! than with the crates' own `unpack` helpers so these rules hold for every format alike.

use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use bzip2::read::MultiBzDecoder;
use flate2::read::MultiGzDecoder;

use super::error::DownloadError;
use super::Observer;

/// The archive formats hwrun unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Gz,
    Bz2,
    Zip,
    Tar,
    TarGz,
    TarBz2,
}

impl ArchiveKind {
    /// The kind named by `file_name`'s extension, if any.
    pub fn detect(file_name: &str) -> Option<Self> {
        let lower = file_name.to_ascii_lowercase();
        let kinds = [
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar.bz2", ArchiveKind::TarBz2),
            (".tbz2", ArchiveKind::TarBz2),
            (".tar", ArchiveKind::Tar),
            (".zip", ArchiveKind::Zip),
            (".gz", ArchiveKind::Gz),
            (".bz2", ArchiveKind::Bz2),
        ];
        kinds
            .into_iter()
            .find(|(suffix, _)| lower.ends_with(suffix))
            .map(|(_, kind)| kind)
    }
}

/// What unpacking produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Link entries left out.
    pub skipped_links: usize,
}

/// Unpacks `archive` (whose recipe-facing name is `name`, which decides the format) into `dest`.
/// At most `limit` bytes are written in all.
pub fn unpack(
    archive: &Path,
    name: &str,
    dest: &Path,
    limit: u64,
    observer: &dyn Observer,
) -> Result<Unpacked, DownloadError> {
    let kind = ArchiveKind::detect(name).ok_or_else(|| DownloadError::ArchiveUnknown {
        file: PathBuf::from(name),
    })?;
    let file = File::open(archive).map_err(|source| DownloadError::LocalRead {
        path: archive.to_path_buf(),
        source,
    })?;
    let reader = BufReader::new(file);
    observer.phase(&format!("unpacking {name}"), None);
    let unpacker = Unpacker {
        archive,
        dest,
        observer,
        budget: std::cell::Cell::new(limit),
        limit,
    };
    match kind {
        ArchiveKind::Gz => unpacker.single(MultiGzDecoder::new(reader), strip_suffix(name, ".gz")),
        ArchiveKind::Bz2 => {
            unpacker.single(MultiBzDecoder::new(reader), strip_suffix(name, ".bz2"))
        }
        ArchiveKind::Tar => unpacker.tar(reader),
        ArchiveKind::TarGz => unpacker.tar(MultiGzDecoder::new(reader)),
        ArchiveKind::TarBz2 => unpacker.tar(MultiBzDecoder::new(reader)),
        ArchiveKind::Zip => unpacker.zip(),
    }
}

fn strip_suffix<'a>(name: &'a str, suffix: &str) -> &'a str {
    let stem = &name[..name.len() - suffix.len()];
    if stem.is_empty() {
        "unpacked"
    } else {
        stem
    }
}

/// `path` as a relative path made of plain components, or `None` if it is absolute or uses `..`.
pub fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

struct Unpacker<'a> {
    archive: &'a Path,
    dest: &'a Path,
    observer: &'a dyn Observer,
    /// Bytes still allowed.
    budget: std::cell::Cell<u64>,
    limit: u64,
}

impl Unpacker<'_> {
    fn corrupt(&self, reason: impl ToString) -> DownloadError {
        DownloadError::ArchiveCorrupt {
            archive: self.archive.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// Checks an entry name and returns where it goes; `None` for the archive root itself.
    fn target(&self, entry: &Path) -> Result<Option<PathBuf>, DownloadError> {
        let relative = safe_relative(entry).ok_or_else(|| DownloadError::ArchiveEntryUnsafe {
            archive: self.archive.to_path_buf(),
            entry: entry.display().to_string(),
        })?;
        Ok((!relative.as_os_str().is_empty()).then(|| self.dest.join(relative)))
    }

    fn single(&self, reader: impl Read, output: &str) -> Result<Unpacked, DownloadError> {
        let bytes = self.write_file(reader, &self.dest.join(output))?;
        Ok(Unpacked {
            files: 1,
            bytes,
            skipped_links: 0,
        })
    }

    fn tar(&self, reader: impl Read) -> Result<Unpacked, DownloadError> {
        let mut archive = tar::Archive::new(reader);
        let mut unpacked = Unpacked::default();
        for entry in archive.entries().map_err(|err| self.corrupt(err))? {
            self.observer.check_cancelled()?;
            let entry = entry.map_err(|err| self.corrupt(err))?;
            let path = entry.path().map_err(|err| self.corrupt(err))?.into_owned();
            let entry_type = entry.header().entry_type();
            let Some(target) = self.target(&path)? else {
                continue;
            };
            if entry_type.is_dir() {
                create_dir(&target)?;
            } else if entry_type.is_file() || entry_type.is_contiguous() {
                unpacked.bytes += self.write_file(entry, &target)?;
                unpacked.files += 1;
            } else if entry_type.is_symlink() || entry_type.is_hard_link() {
                unpacked.skipped_links += 1;
            }
            // Other entry types (pax/GNU metadata, devices, fifos) carry no data set content.
        }
        Ok(unpacked)
    }

    fn zip(&self) -> Result<Unpacked, DownloadError> {
        let file = File::open(self.archive).map_err(|source| DownloadError::LocalRead {
            path: self.archive.to_path_buf(),
            source,
        })?;
        let mut archive =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|err| self.corrupt(err))?;
        let mut unpacked = Unpacked::default();
        for index in 0..archive.len() {
            self.observer.check_cancelled()?;
            let entry = archive.by_index(index).map_err(|err| self.corrupt(err))?;
            let Some(target) = self.target(Path::new(entry.name()))? else {
                continue;
            };
            if entry.is_symlink() {
                unpacked.skipped_links += 1;
            } else if entry.is_dir() {
                create_dir(&target)?;
            } else {
                unpacked.bytes += self.write_file(entry, &target)?;
                unpacked.files += 1;
            }
        }
        Ok(unpacked)
    }

    /// Streams one entry to `target` (creating its parent directories); returns its size.
    fn write_file(&self, mut reader: impl Read, target: &Path) -> Result<u64, DownloadError> {
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        let mut output = File::create(target).map_err(|err| DownloadError::write(target, err))?;
        let mut buffer = vec![0u8; super::CHUNK];
        let mut written = 0u64;
        loop {
            self.observer.check_cancelled()?;
            let n = reader.read(&mut buffer).map_err(|err| self.corrupt(err))?;
            if n == 0 {
                break;
            }
            let left = self.budget.get().checked_sub(n as u64).ok_or_else(|| {
                DownloadError::ArchiveTooLarge {
                    archive: self.archive.to_path_buf(),
                    limit: self.limit,
                }
            })?;
            self.budget.set(left);
            output
                .write_all(&buffer[..n])
                .map_err(|err| DownloadError::write(target, err))?;
            written += n as u64;
            self.observer.advance(n as u64);
        }
        Ok(written)
    }
}

fn create_dir(dir: &Path) -> Result<(), DownloadError> {
    fs::create_dir_all(dir).map_err(|err| DownloadError::write(dir, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Silent;

    #[test]
    fn detect_by_extension() {
        assert_eq!(
            ArchiveKind::detect("BSR_bsds500.tgz"),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(ArchiveKind::detect("x.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(
            ArchiveKind::detect("train-images-idx3-ubyte.gz"),
            Some(ArchiveKind::Gz)
        );
        assert_eq!(ArchiveKind::detect("usps.t.bz2"), Some(ArchiveKind::Bz2));
        assert_eq!(ArchiveKind::detect("x.tar.bz2"), Some(ArchiveKind::TarBz2));
        assert_eq!(ArchiveKind::detect("hw2_data.ZIP"), Some(ArchiveKind::Zip));
        assert_eq!(ArchiveKind::detect("train_32x32.mat"), None);
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("bomb.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&archive).unwrap(),
            flate2::Compression::best(),
        );
        gz.write_all(&vec![0u8; 4 << 20]).unwrap();
        gz.finish().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        let err = unpack(&archive, "bomb.gz", &out, 1 << 20, &Silent).unwrap_err();
        assert!(
            matches!(err, DownloadError::ArchiveTooLarge { limit: 1048576, .. }),
            "{err}"
        );
        assert!(unpack(&archive, "bomb.gz", &out, 8 << 20, &Silent).is_ok());
    }

    #[test]
    fn safe_relative_rejects_escapes() {
        assert_eq!(
            safe_relative(Path::new("./a/b.png")),
            Some(PathBuf::from("a/b.png"))
        );
        assert_eq!(safe_relative(Path::new("../evil")), None);
        assert_eq!(safe_relative(Path::new("a/../../evil")), None);
        assert_eq!(safe_relative(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn gz_unpacks_to_name_without_extension() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("download.part");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(b"idx bytes").unwrap();
        encoder.finish().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let unpacked = unpack(&archive, "labels.gz", &out, u64::MAX, &Silent).unwrap();
        assert_eq!(
            unpacked,
            Unpacked {
                files: 1,
                bytes: 9,
                skipped_links: 0
            }
        );
        assert_eq!(fs::read(out.join("labels")).unwrap(), b"idx bytes");
    }

    /// A tar whose entry name climbs out; the name is written into the raw header because the
    /// tar crate's path setters refuse `..`.
    fn escaping_tar(path: &Path) {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_size(2);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut builder = tar::Builder::new(File::create(path).unwrap());
        builder.append(&header, &b"hi"[..]).unwrap();
        builder.finish().unwrap();
    }

    #[test]
    fn tar_entry_escaping_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar");
        escaping_tar(&archive);
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let err = unpack(&archive, "evil.tar", &out, u64::MAX, &Silent).unwrap_err();
        assert!(
            matches!(err, DownloadError::ArchiveEntryUnsafe { .. }),
            "{err}"
        );
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = unpack(
            Path::new("/nonexistent"),
            "x.mat",
            Path::new("/tmp"),
            u64::MAX,
            &Silent,
        )
        .unwrap_err();
        assert!(err.to_string().contains("set `unpack = false`"), "{err}");
    }
}
