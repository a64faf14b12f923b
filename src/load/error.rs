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
