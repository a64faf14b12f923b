//! Errors of parametrizations: adding, running and removing transforms.
use crate::names::quoted_list;
use thiserror::Error;

/// What went wrong adding a transform to a tensor, running it or assigning through it.
/// Each variant says whether anything was changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParametrizeError {
    /// A name was asked for that has no parametrization. Nothing was changed.
    #[error(
        "`{name}` is not parametrized; the parametrized tensors are: {}",
        quoted_list(parametrized)
    )]
    NotParametrized {
        /// The name asked for.
        name: String,
        /// The names that are parametrized.
        parametrized: Vec<String>,
    },
    /// A pruning sparsity outside `[0, 1)`. Nothing was changed.
    #[error("sparsity {sparsity} is outside [0, 1): it is the fraction of entries set to zero")]
    SparsityOutOfRange {
        /// The sparsity given.
        sparsity: f64,
    },
    /// A dimension index outside the tensor it indexes. Found before the transform is
    /// added: nothing was changed.
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
    /// A transform gave a tensor of another shape, kind or device than its input. Found
    /// when it is added or run: it was not added, and nothing was written.
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
    /// A value was assigned through a transform that has no right inverse. Nothing was
    /// written.
    #[error(
        "transform `{transform}` has no right inverse, so no value can be assigned through it"
    )]
    NoRightInverse {
        /// The transform's name.
        transform: String,
    },
    /// A transform with a trainable tensor was added without a VarStore to register it in.
    /// It was not added: nothing was changed.
    #[error("transform `{transform}` adds the trainable tensor `{tensor}`: add it with `push_registered` so that an optimizer built from the VarStore trains it")]
    NeedsVarStore {
        /// The transform's name.
        transform: String,
        /// The tensor's full name, e.g. `weight_g`.
        tensor: String,
    },
}
