//! Checks shared by functional calls, mutable modules, swaps and loads: does a tensor fit
//! the place of a module's tensor, and are two handles one tensor (tied tensors are in
//! `tied.rs`, exchanging handles in `handles.rs`).
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::NamedTensor;
use std::collections::HashSet;
use tch::Tensor;

/// Which properties of a given tensor must equal the module tensor's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fit {
    /// The dtype must be the same.
    pub kind: bool,
    /// The device must be the same.
    pub device: bool,
}

/// Every reason `given` cannot take the place of `expected` (the module's tensor `name`):
/// undefined, another shape, and (as `fit` asks) another dtype or device. Empty if it fits.
pub(crate) fn fit_problems(
    name: &str,
    given: &Tensor,
    expected: &Tensor,
    fit: Fit,
) -> Vec<TensorProblem> {
    if !given.defined() {
        return vec![TensorProblem::Undefined {
            name: name.to_owned(),
        }];
    }
    if !expected.defined() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let (actual, wanted) = (given.size(), expected.size());
    if actual != wanted {
        problems.push(TensorProblem::Shape {
            name: name.to_owned(),
            actual,
            expected: wanted,
        });
    }
    if fit.kind {
        match (given.f_kind(), expected.f_kind()) {
            (Ok(actual), Ok(wanted)) if actual != wanted => problems.push(TensorProblem::Kind {
                name: name.to_owned(),
                actual,
                expected: wanted,
            }),
            _ => {}
        }
    }
    if fit.device && given.device() != expected.device() {
        problems.push(TensorProblem::Device {
            name: name.to_owned(),
            actual: given.device(),
            expected: expected.device(),
        });
    }
    problems
}

/// Whether `copy_` into `tensor` would fail because several of its elements are one memory
/// location (a stride of 0 along a dimension longer than 1: an `expand`ed view). Checked
/// before the first write, so that a load or a bake is all or none.
pub(crate) fn has_internal_overlap(tensor: &Tensor) -> bool {
    tensor.defined()
        && tensor
            .size()
            .iter()
            .zip(tensor.stride())
            .any(|(&len, stride)| stride == 0 && len > 1)
}

/// Whether two given values are one tensor (so two tied names may both be given them).
pub(crate) fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.defined() && b.defined() && a.f_is_set_to(b).unwrap_or(false)
}

/// The index, found by `lookup`, of the module tensor that a value given under `name` is
/// for; `None`, with the problem recorded, for a name already in `seen` (given twice) or
/// one `lookup` does not find (not the module's).
pub(crate) fn given_index(
    name: &str,
    seen: &mut HashSet<String>,
    lookup: impl FnOnce(&str) -> Option<usize>,
    problems: &mut Vec<TensorProblem>,
) -> Option<usize> {
    if !seen.insert(name.to_owned()) {
        problems.push(TensorProblem::Duplicate {
            name: name.to_owned(),
        });
        return None;
    }
    let index = lookup(name);
    if index.is_none() {
        problems.push(TensorProblem::Unexpected {
            name: name.to_owned(),
        });
    }
    index
}

/// The index of `name` in `tensors`, or an error listing every name there is.
pub(crate) fn position(tensors: &[NamedTensor], name: &str) -> Result<usize> {
    tensors
        .iter()
        .position(|named| named.name == name)
        .ok_or_else(|| PatchError::UnknownTensor {
            name: name.to_owned(),
            known: tensors.iter().map(|named| named.name.clone()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_given_twice_or_unknown_is_recorded() {
        let (mut seen, mut problems) = (HashSet::new(), Vec::new());
        let lookup = |name: &str| (name == "weight").then_some(0);
        assert_eq!(
            given_index("weight", &mut seen, lookup, &mut problems),
            Some(0)
        );
        assert_eq!(
            given_index("weight", &mut seen, lookup, &mut problems),
            None
        );
        assert_eq!(
            given_index("wieght", &mut seen, lookup, &mut problems),
            None
        );
        assert!(matches!(&problems[..], [
            TensorProblem::Duplicate { name: twice },
            TensorProblem::Unexpected { name: unknown },
        ] if twice == "weight" && unknown == "wieght"));
    }
}
