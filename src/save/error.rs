//! Errors of writing files: atomic saves and the folders adapters and exports are written to.
use super::SaveStep;
use std::path::PathBuf;
use thiserror::Error;

/// A file or folder could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SaveError {
    /// An atomic save failed at one step. The target file is as it was before the save
    /// (for every step but [`SaveStep::SyncDir`], where the new file is already in place
    /// but its rename may not survive a power loss), and no temporary file is left behind.
    #[error("cannot save `{}`: {step} failed: {source}", path.display())]
    Step {
        /// The file being saved.
        path: PathBuf,
        /// The step that failed.
        step: SaveStep,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be written (a folder to save into, a scratch file).
    /// What was written before it stays.
    #[error("cannot write `{}`: {source}", path.display())]
    WriteFile {
        /// The file or folder.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
}
