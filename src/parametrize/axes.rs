//! Dimension arguments of the built-in transforms: checked against a tensor, normalised.
use super::ParametrizeError;
use crate::error::{PatchError, Result, TensorProblem};
use tch::Tensor;

/// `axis` as an index in `0..ndim` (a negative one counts from the end), or an error.
pub(super) fn normalise(what: &'static str, axis: i64, name: &str, tensor: &Tensor) -> Result<i64> {
    let ndim = tensor.dim();
    let signed = ndim as i64;
    let index = if axis < 0 { axis + signed } else { axis };
    if (0..signed).contains(&index) {
        Ok(index)
    } else {
        Err(ParametrizeError::AxisOutOfRange {
            what,
            axis,
            name: name.to_owned(),
            ndim,
        }
        .into())
    }
}

/// Every dimension of a tensor with `ndim` dimensions except `axis`.
pub(super) fn all_but(ndim: usize, axis: i64) -> Vec<i64> {
    (0..ndim as i64).filter(|&d| d != axis).collect()
}

/// `Ok` for a floating-point tensor; the built-in transforms need one.
pub(super) fn require_float(name: &str, tensor: &Tensor, transform: &str) -> Result<()> {
    if !tensor.defined() {
        return Err(PatchError::InvalidTensors {
            operation: transform.to_owned(),
            problems: vec![TensorProblem::Undefined {
                name: name.to_owned(),
            }],
        });
    }
    if tensor.is_floating_point() {
        return Ok(());
    }
    let actual = tensor
        .f_kind()
        .map_err(PatchError::torch(format!("reading the dtype of `{name}`")))?;
    Err(PatchError::KindMismatch {
        name: name.to_owned(),
        actual,
        expected: format!("a floating-point kind for {transform}"),
    })
}
