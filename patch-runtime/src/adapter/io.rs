//! The file system, for every adapter and export format: the one place files are written
//! (so an atomic writer can replace [`write_file`] alone) and read.
use crate::error::{PatchError, Result};
use std::path::Path;

/// Writes `bytes` to `path`, replacing the file if it exists, atomically: a temporary
/// file in the same folder, fsync, rename, fsync of the folder. An interrupted save leaves
/// the previous file intact. Every file this module writes goes through here.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::state::write_bytes_atomic(path, bytes)
}

/// Creates the folder `dir` and its parents if they do not exist.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| PatchError::WriteFile {
        path: dir.to_owned(),
        source,
    })
}

/// The bytes of `path`, or the system's message.
pub(crate) fn read_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| error.to_string())
}
