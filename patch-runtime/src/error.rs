//! The one error type of the runtime. Every variant names what was wrong.
use thiserror::Error;

/// What went wrong in a tch-patch operation. Nothing was changed when one is returned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PatchError {
    /// A patch tried to register a tensor under a name the VarStore already holds.
    #[error("cannot register `{name}`: the VarStore already holds a variable named `{name}`")]
    NameTaken {
        /// The full VarStore name, e.g. `emb.delta`.
        name: String,
    },
    /// An index (a token id, a row) is outside the tensor it indexes.
    #[error("{what} {index} is out of range for {len} rows")]
    IndexOutOfRange {
        /// What the index is, e.g. "trainable token id".
        what: &'static str,
        /// The offending index.
        index: i64,
        /// The number of valid rows.
        len: i64,
    },
    /// The same index was given twice where each must be unique.
    #[error("{what} {index} is given more than once")]
    DuplicateIndex {
        /// What the index is.
        what: &'static str,
        /// The repeated index.
        index: i64,
    },
    /// A list that must not be empty was empty.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A tensor had a shape other than the one required.
    #[error("`{name}` has shape {actual:?}, expected {expected}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape found.
        actual: Vec<i64>,
        /// The shape required, in words (e.g. "[n, 64]").
        expected: String,
    },
    /// A tensor had a kind (dtype) other than the one required.
    #[error("`{name}` has dtype {actual:?}, expected {expected}")]
    KindMismatch {
        /// The tensor's name.
        name: String,
        /// The kind found.
        actual: tch::Kind,
        /// The kind required, in words.
        expected: String,
    },
    /// A tensor of a patch is not in the VarStore it was expected in.
    #[error("`{name}` is not a variable of this VarStore")]
    NotInVarStore {
        /// The tensor's name in the module.
        name: String,
    },
    /// libtorch reported an error (through tch's `f_` methods).
    #[error("libtorch error while {context}: {source}")]
    Torch {
        /// What the library was doing.
        context: String,
        /// tch's error.
        #[source]
        source: tch::TchError,
    },
}

impl PatchError {
    /// Wraps a tch error with what the library was doing when it happened.
    pub fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> PatchError {
        let context = context.into();
        move |source| PatchError::Torch { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PatchError> = std::result::Result<T, E>;
