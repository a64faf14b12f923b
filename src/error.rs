//! The umbrella error of the library, and the tensor-level errors every concern shares.
//! Each concern's own error lives in its module and converts into [`PatchError`] with `?`.
use crate::names::{device_name, kind_name, problem_list, quoted_list, shape_text};
use thiserror::Error;

/// What went wrong in a tch-patch operation: the umbrella of the errors of each concern
/// ([`PatchStringError`](crate::registry::PatchStringError), [`TreeError`](crate::tree::TreeError),
/// [`ParametrizeError`](crate::parametrize::ParametrizeError), [`LoadError`](crate::load::LoadError), [`SaveError`](crate::save::SaveError),
/// [`AdapterError`](crate::adapter::AdapterError), [`SwapError`](crate::swap::SwapError)) and of the tensor-level errors every
/// concern shares. Each variant says whether anything was changed; almost always nothing
/// was, because every operation validates everything before it changes anything.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PatchError {
    /// A patch tried to register a tensor under a name the VarStore already holds. Nothing
    /// was registered or changed.
    #[error("cannot register `{name}`: the VarStore already holds a variable named `{name}`")]
    NameTaken {
        /// The full VarStore name, e.g. `emb.delta`.
        name: String,
    },
    /// An index (a token id, a row) is outside the tensor it indexes. Nothing was changed.
    #[error("{what} {index} is out of range for {len} rows")]
    IndexOutOfRange {
        /// What the index is, e.g. "trainable token id".
        what: &'static str,
        /// The offending index.
        index: i64,
        /// The number of valid rows.
        len: i64,
    },
    /// The same index was given twice where each must be unique. Nothing was changed.
    #[error("{what} {index} is given more than once")]
    DuplicateIndex {
        /// What the index is.
        what: &'static str,
        /// The repeated index.
        index: i64,
    },
    /// A list that must not be empty was empty. Nothing was changed.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A tensor had a shape other than the one required. Nothing was changed.
    #[error("`{name}` has shape {}, expected {expected}", shape_text(actual))]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape found.
        actual: Vec<i64>,
        /// The shape required, in words (e.g. "[n, 64]").
        expected: String,
    },
    /// A tensor had a kind (dtype) other than the one required. Nothing was changed.
    #[error("`{name}` has dtype {}, expected {expected}", kind_name(*actual))]
    KindMismatch {
        /// The tensor's name.
        name: String,
        /// The kind found.
        actual: tch::Kind,
        /// The kind required, in words.
        expected: String,
    },
    /// A name that is not one of the module's tensors. Nothing was changed.
    #[error(
        "`{name}` is not a tensor of this module; its tensors are: {}",
        quoted_list(known)
    )]
    UnknownTensor {
        /// The name asked for.
        name: String,
        /// Every tensor name of the module, in visiting order.
        known: Vec<String>,
    },
    /// One or more tensors given for a module did not fit it. Every problem is listed;
    /// nothing was changed.
    #[error("{operation}: {} problem(s): {}", problems.len(), problem_list(problems))]
    InvalidTensors {
        /// What was being done, e.g. "functional_call" or "load `model.safetensors`".
        operation: String,
        /// Every problem found, in the order found.
        problems: Vec<TensorProblem>,
    },
    /// An operation that needs another merge state of a LoRA adapter (merging a merged
    /// one, training a merged one). Nothing was changed.
    #[error("{message}")]
    MergeState {
        /// What was attempted and why it cannot be done now.
        message: String,
    },
    /// A name that cannot be a VarStore variable name (empty, or with a `.`, which tch uses
    /// to join path parts). Nothing was registered.
    #[error("`{name}` cannot be a variable name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A whole-module conversion ([`Mutable::to_kind`](crate::mutable::Mutable::to_kind)) asked
    /// for a dtype that is not floating point. Only a module's floating-point tensors are
    /// converted (integer and bool buffers keep their dtype), and only to a floating-point
    /// dtype: an integer one would drop their fractions, and a tensor that requires grad
    /// cannot hold it. Found before any tensor is converted: nothing was changed.
    #[error(
        "cannot convert the module's floating-point tensors to {}: ask for a floating-point \
         dtype (float16, bfloat16, float32, float64){}",
        kind_name(*kind),
        requiring_grad(requires_grad)
    )]
    NotFloatingKind {
        /// The dtype asked for.
        kind: tch::Kind,
        /// The module's tensors that require grad, which that dtype could not hold.
        requires_grad: Vec<String>,
    },
    /// A device that this machine does not have (a CUDA index past the last GPU). Found
    /// before any tensor is moved: nothing was changed.
    #[error("device {} is not available: this machine has {cuda_devices} CUDA device(s)", device_name(*device))]
    UnavailableDevice {
        /// The device asked for.
        device: tch::Device,
        /// How many CUDA devices libtorch sees.
        cuda_devices: i64,
    },
    /// The linked libtorch does not lay out tensor handles as this library expects. Found
    /// before any handle is exchanged: nothing was changed.
    #[error("the linked libtorch does not support {what}")]
    UnsupportedLibtorch {
        /// The operation that is not supported.
        what: &'static str,
    },
    /// libtorch reported an error (through tch's `f_` methods). Every operation that writes
    /// checks shapes, dtypes and devices first, so this is an error of computing (out of
    /// memory, an unsupported op): a read changed nothing; a write in progress keeps the
    /// tensors it had written (the context names the one that failed).
    #[error("libtorch error while {context}: {source}")]
    Torch {
        /// What the library was doing.
        context: String,
        /// tch's error.
        #[source]
        source: tch::TchError,
    },
    /// A patch string, a patch's arguments or the registry of patches is invalid
    /// ([`PatchStringError`](crate::registry::PatchStringError)).
    #[error(transparent)]
    PatchString(#[from] crate::registry::PatchStringError),
    /// Selecting slots, applying a rule or unpatching failed
    /// ([`TreeError`](crate::tree::TreeError)).
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
    /// A parametrization could not be added, used or removed
    /// ([`ParametrizeError`](crate::parametrize::ParametrizeError)).
    #[error(transparent)]
    Parametrize(#[from] crate::parametrize::ParametrizeError),
    /// A checkpoint could not be loaded ([`LoadError`](crate::load::LoadError)).
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    /// A file or folder could not be written ([`SaveError`](crate::save::SaveError)).
    #[error(transparent)]
    Save(#[from] crate::save::SaveError),
    /// Adapter files or entries are invalid ([`AdapterError`](crate::adapter::AdapterError)).
    #[error(transparent)]
    Adapter(#[from] crate::adapter::AdapterError),
    /// Two tensors could not be swapped ([`SwapError`](crate::swap::SwapError)).
    #[error(transparent)]
    Swap(#[from] crate::swap::SwapError),
}

/// One problem with one named tensor given for a module (an override of a functional call,
/// an entry of a checkpoint). [`PatchError::InvalidTensors`] and
/// [`LoadError::InvalidTensors`](crate::load::LoadError::InvalidTensors) collect them all.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TensorProblem {
    /// The module has this tensor but no value was given for it.
    #[error("`{name}` is missing")]
    Missing {
        /// The module's name for the tensor.
        name: String,
    },
    /// A value was given under a name the module does not have.
    #[error("`{name}` is not a tensor of the module")]
    Unexpected {
        /// The name given.
        name: String,
    },
    /// The same name was given twice.
    #[error("`{name}` is given more than once")]
    Duplicate {
        /// The name given twice.
        name: String,
    },
    /// The value is an undefined tensor (`Tensor::new()`).
    #[error("`{name}` is an undefined tensor")]
    Undefined {
        /// The tensor's name.
        name: String,
    },
    /// The value has another shape than the module's tensor.
    #[error(
        "`{name}` has shape {}, expected {}",
        shape_text(actual),
        shape_text(expected)
    )]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape given.
        actual: Vec<i64>,
        /// The module's shape.
        expected: Vec<i64>,
    },
    /// The value has another dtype than the module's tensor.
    #[error("`{name}` has dtype {}, expected {}", kind_name(*actual), kind_name(*expected))]
    Kind {
        /// The tensor's name.
        name: String,
        /// The dtype given.
        actual: tch::Kind,
        /// The module's dtype.
        expected: tch::Kind,
    },
    /// The value is on another device than the module's tensor.
    #[error("`{name}` is on {}, expected {}", device_name(*actual), device_name(*expected))]
    Device {
        /// The tensor's name.
        name: String,
        /// The device given.
        actual: tch::Device,
        /// The module's device.
        expected: tch::Device,
    },
    /// The module's tensor requires grad, so its new value must be floating point or complex.
    #[error(
        "`{name}` requires grad, so its dtype must be floating point or complex, not {}",
        kind_name(*kind)
    )]
    NotDifferentiable {
        /// The tensor's name.
        name: String,
        /// The dtype given.
        kind: tch::Kind,
    },
    /// Two names of one tied tensor were given different values.
    #[error("`{name}` and `{tied_to}` are one tied tensor but were given different values")]
    TiedConflict {
        /// The later name.
        name: String,
        /// The earlier name it is tied to.
        tied_to: String,
    },
    /// The value holds NaN or infinite entries where only finite ones are accepted
    /// ([`crate::load::LoadOptions::reject_non_finite`]).
    #[error("`{name}` has {count} non-finite (NaN or infinite) value(s)")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// How many entries are NaN or infinite.
        count: i64,
    },
    /// The module's tensor cannot be written in place: it is a view whose elements share
    /// memory (an `expand`ed tensor, a stride of 0), which libtorch refuses to copy into.
    #[error("`{name}` cannot be written in place: its elements share memory (an expanded view); give the module a contiguous tensor")]
    NotWritable {
        /// The tensor's name.
        name: String,
    },
    /// The tensor's dtype cannot be stored in a safetensors file.
    #[error("`{name}` has dtype {}, which safetensors cannot store", kind_name(*kind))]
    UnsupportedKind {
        /// The tensor's name.
        name: String,
        /// Its dtype.
        kind: tch::Kind,
    },
    /// The user's hook failed on this tensor.
    #[error("hook failed on `{name}`: {error}")]
    Hook {
        /// The tensor's name.
        name: String,
        /// What the hook returned.
        error: Box<PatchError>,
    },
}

impl TensorProblem {
    /// The name of the tensor the problem is about.
    pub fn name(&self) -> &str {
        match self {
            TensorProblem::Missing { name }
            | TensorProblem::Unexpected { name }
            | TensorProblem::Duplicate { name }
            | TensorProblem::Undefined { name }
            | TensorProblem::Shape { name, .. }
            | TensorProblem::Kind { name, .. }
            | TensorProblem::Device { name, .. }
            | TensorProblem::NotDifferentiable { name, .. }
            | TensorProblem::TiedConflict { name, .. }
            | TensorProblem::NonFinite { name, .. }
            | TensorProblem::UnsupportedKind { name, .. }
            | TensorProblem::NotWritable { name }
            | TensorProblem::Hook { name, .. } => name,
        }
    }
}

/// `; of its tensors, `weight`, `bias` require grad` for a non-empty list.
fn requiring_grad(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    format!("; of its tensors, {} require grad", quoted_list(names))
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
