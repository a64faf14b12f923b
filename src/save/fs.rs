//! The file-system seam of an atomic save: every step goes through [`Fs`], so a test can
//! make any one of them fail on real files.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The file operations an atomic save makes, one method per [`super::SaveStep`].
pub(crate) trait Fs {
    /// Creates `path`, which must not exist yet, for writing.
    fn create_new(&self, path: &Path) -> io::Result<File>;
    /// Gives `file` the permissions of the file at `like`, if there is one (the file a
    /// save replaces keeps its permissions).
    fn copy_permissions(&self, file: &File, like: &Path) -> io::Result<()>;
    /// Writes all of `bytes` to `file`.
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()>;
    /// Flushes `file`'s data and metadata to disk.
    fn sync_file(&self, file: &File) -> io::Result<()>;
    /// Renames `from` over `to`, replacing it.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Flushes the folder `dir`'s entries to disk.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file `path` (a temporary file, after a failure).
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's file system.
pub(crate) struct RealFs;

impl Fs for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    fn copy_permissions(&self, file: &File, like: &Path) -> io::Result<()> {
        match std::fs::metadata(like) {
            Ok(meta) if meta.is_file() => file.set_permissions(meta.permissions()),
            _ => Ok(()),
        }
    }

    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On POSIX a folder opened read-only can be fsync'ed; elsewhere this is a no-op.
        if cfg!(unix) {
            File::open(dir)?.sync_all()
        } else {
            Ok(())
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}
