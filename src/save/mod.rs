//! Saving tensors to safetensors files, atomically: a save that fails at any step leaves
//! the previous file as it was, and no temporary file behind.
//!
//! - [`save_safetensors_atomic`]: named tensors to a file.
//! - [`save_module`]: every tensor of a module (its `state_dict`), under a prefix.
//!
//! Loading is [`crate::load::load_safetensors`].
mod atomic;
mod error;
#[cfg(test)]
mod fault_tests;
mod fs;
mod serialize;

pub(crate) use atomic::write_bytes_atomic;
pub use atomic::{save_module, save_safetensors_atomic};
pub use error::SaveError;
pub(crate) use serialize::{tensor_bytes, Bytes};

use std::fmt;

/// The steps of an atomic save, in order. [`SaveError::Step`] names the one that
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaveStep {
    /// Creating the temporary file next to the target (`.{name}.tmp-{pid}-{n}`).
    CreateTemp,
    /// Writing the serialized tensors into the temporary file.
    Write,
    /// `fsync` of the temporary file, so its bytes are on disk before it is renamed.
    SyncFile,
    /// Renaming the temporary file over the target (atomic on POSIX file systems).
    Rename,
    /// `fsync` of the folder, so the rename itself is on disk.
    SyncDir,
}

impl SaveStep {
    /// Every step, in the order a save takes them.
    pub const ALL: [SaveStep; 5] = [
        SaveStep::CreateTemp,
        SaveStep::Write,
        SaveStep::SyncFile,
        SaveStep::Rename,
        SaveStep::SyncDir,
    ];
}

impl fmt::Display for SaveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaveStep::CreateTemp => "creating the temporary file",
            SaveStep::Write => "writing the temporary file",
            SaveStep::SyncFile => "syncing the temporary file",
            SaveStep::Rename => "renaming the temporary file over the target",
            SaveStep::SyncDir => "syncing the folder",
        })
    }
}
