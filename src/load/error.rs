//! What can go wrong loading a checkpoint into a module.
use crate::error::TensorProblem;
use crate::names::problem_list;
use std::path::PathBuf;
use thiserror::Error;

/// Why a load ([`load_safetensors`](super::load_safetensors),
/// [`load_safetensors_with`](super::load_safetensors_with),
/// [`load_torchscript`](crate::export::load_torchscript)) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read: missing, not a regular file, unreadable, truncated or
    /// malformed (its header is checked before its data is read). Nothing was changed.
    #[error("cannot read checkpoint `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What tch or safetensors reported.
        #[source]
        source: tch::TchError,
    },
    /// The file's tensors do not fit the module: every problem is listed (a key the module
    /// lacks, a tensor the file lacks, another shape or dtype, a hook that failed...).
    /// Nothing was changed.
    #[error("load `{}`: {} problem(s): {}", path.display(), problems.len(), problem_list(problems))]
    InvalidTensors {
        /// The file.
        path: PathBuf,
        /// Every problem found, in the module's order, then the file's keys it lacks.
        problems: Vec<TensorProblem>,
    },
    /// An index of a sharded checkpoint (`model.safetensors.index.json`) is malformed, names
    /// a shard that is not there or is not a file of its folder, or does not agree with
    /// its shards (a key placed in a shard that does not hold it, a shard holding a key the
    /// index places elsewhere). Nothing was changed.
    #[error("checkpoint index `{}`: {message}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong, naming the key or the shard.
        message: String,
    },
    /// The file failed while its data was being read, after every check had passed (it
    /// shrank, or the disk failed). Loads that assign tensors took every change back; a
    /// load that copies into the module's own tensors cannot: the tensors in `written`
    /// hold the file's values, the others their old ones.
    #[error("checkpoint `{}` failed while reading `{key}` ({} tensor(s) written before): {source}", path.display(), written.len())]
    Interrupted {
        /// The file.
        path: PathBuf,
        /// The key being read.
        key: String,
        /// The module's tensors written before the failure (empty when the changes were
        /// taken back).
        written: Vec<String>,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// libtorch failed while checking a value or writing it (out of memory). While
    /// checking, nothing was changed; a failed write is reached only after every check has
    /// passed, and the tensors written before it keep their new values (the context names
    /// the one that failed).
    #[error("libtorch error while {context}: {source}")]
    Torch {
        /// What the load was doing.
        context: String,
        /// tch's error.
        #[source]
        source: tch::TchError,
    },
}

impl LoadError {
    /// A closure for `map_err`, making a [`LoadError::Torch`] with this context.
    pub(crate) fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Self {
        let context = context.into();
        move |source| LoadError::Torch { context, source }
    }
}
