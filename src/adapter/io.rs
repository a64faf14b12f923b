//! The file system, for every adapter and export format: the one place files are written
//! (so an atomic writer can replace [`write_file`] alone) and read.
use crate::error::Result;
use crate::safe_read::{read_regular_file, read_safetensors_file, JSON_LIMIT};
use crate::save::SaveError;
use std::path::Path;

/// Writes `bytes` to `path`, replacing the file if it exists, atomically: a temporary
/// file in the same folder, fsync, rename, fsync of the folder. An interrupted save leaves
/// the previous file intact. Every file this module writes goes through here.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    crate::save::write_bytes_atomic(path, bytes)
}

/// Creates the folder `dir` and its parents if they do not exist.
pub(crate) fn create_dir(dir: &Path) -> Result<(), SaveError> {
    std::fs::create_dir_all(dir).map_err(|source| SaveError::WriteFile {
        path: dir.to_owned(),
        source,
    })
}

/// What a file read by [`read_file`] holds, which bounds what is read of it.
#[derive(Clone, Copy)]
pub(crate) enum FileKind {
    /// A JSON side file: at most [`JSON_LIMIT`] bytes.
    Json,
    /// A safetensors file: its header checked before its data is read.
    Safetensors,
    /// A file this library wrote itself a moment ago (a scratch file).
    Own,
}

/// The bytes of the regular file `path` (a pipe or device is refused, never waited on),
/// or the message of what is wrong with it.
pub(crate) fn read_file(path: &Path, kind: FileKind) -> std::result::Result<Vec<u8>, String> {
    match kind {
        FileKind::Json => read_regular_file(path, JSON_LIMIT),
        FileKind::Safetensors => read_safetensors_file(path),
        FileKind::Own => read_regular_file(path, u64::MAX),
    }
}

/// The kind of an adapter folder's file, by its name.
pub(crate) fn kind_of(name: &str) -> FileKind {
    if name.ends_with(".safetensors") {
        FileKind::Safetensors
    } else {
        FileKind::Json
    }
}
