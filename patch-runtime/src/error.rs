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
    /// A module has no tensor of the name asked for.
    #[error(
        "the module has no tensor named `{name}`; its tensors are: {}",
        list(available)
    )]
    UnknownTensor {
        /// The name asked for.
        name: String,
        /// Every tensor name the module has, in visiting order.
        available: Vec<String>,
    },
    /// A name was asked for that has no parametrization.
    #[error(
        "`{name}` is not parametrized; the parametrized tensors are: {}",
        list(parametrized)
    )]
    NotParametrized {
        /// The name asked for.
        name: String,
        /// The names that are parametrized.
        parametrized: Vec<String>,
    },
    /// A pruning sparsity outside `[0, 1)`.
    #[error("sparsity {sparsity} is outside [0, 1): it is the fraction of entries set to zero")]
    SparsityOutOfRange {
        /// The sparsity given.
        sparsity: f64,
    },
    /// A dimension index outside the tensor it indexes.
    #[error("{what} {axis} is out of range for `{name}`, which has {ndim} dimensions")]
    AxisOutOfRange {
        /// What the index is, e.g. "per-channel quantization axis".
        what: &'static str,
        /// The index given (negative counts from the end).
        axis: i64,
        /// The tensor's name.
        name: String,
        /// The tensor's number of dimensions.
        ndim: usize,
    },
    /// A transform gave a tensor of another shape, kind or device than its input.
    #[error(
        "transform `{transform}` on `{name}` gives {actual}, but must keep its input's {expected}"
    )]
    TransformChangedTensor {
        /// The transform's name.
        transform: String,
        /// The parametrized tensor's name.
        name: String,
        /// The input's shape, kind and device.
        expected: String,
        /// The output's shape, kind and device.
        actual: String,
    },
    /// A value was assigned through a transform that has no right inverse.
    #[error(
        "transform `{transform}` has no right inverse, so no value can be assigned through it"
    )]
    NoRightInverse {
        /// The transform's name.
        transform: String,
    },
    /// A transform with a trainable tensor was added without a VarStore to register it in.
    #[error("transform `{transform}` adds the trainable tensor `{tensor}`: add it with `push_registered` so that an optimizer built from the VarStore trains it")]
    NeedsVarStore {
        /// The transform's name.
        transform: String,
        /// The tensor's full name, e.g. `weight_g`.
        tensor: String,
    },
    /// The linked libtorch does not lay out tensor handles as this library expects.
    #[error("the linked libtorch does not support {what}")]
    UnsupportedLibtorch {
        /// The operation that is not supported.
        what: &'static str,
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

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PatchError> = std::result::Result<T, E>;
