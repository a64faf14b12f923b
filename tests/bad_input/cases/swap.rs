//! Replacing a tensor's data in place: `replace_tensor(s)`.
use crate::case;
use crate::fixture::{floats, Fixture};
use crate::{only_problem, Case};
use tch::{Device, Kind, Tensor};
use tch_patch::{params::TensorProblem, swap::replace_tensor, swap::replace_tensors, PatchError};

fn replace(fx: &mut Fixture, values: Vec<(&str, Tensor)>) -> Result<(), PatchError> {
    replace_tensors(fx.net(), values)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "replace_tensor: unknown name",
            |fx| replace_tensor(fx.net(), "fc1.wieght", &floats(&[8, 4])),
            e if matches!(only_problem(e), Some(TensorProblem::Unexpected { name }) if name == "fc1.wieght")
        ),
        case!(
            "replace_tensor: integer value for a trained weight",
            |fx| replace_tensor(fx.net(), "fc1.weight", &Tensor::zeros([8, 4], (Kind::Int64, Device::Cpu))),
            e if matches!(only_problem(e), Some(TensorProblem::NotDifferentiable { kind: Kind::Int64, .. }))
        ),
        case!(
            "replace_tensor: undefined value",
            |fx| replace_tensor(fx.net(), "fc2.bias", &Tensor::new()),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { .. }))
        ),
        case!(
            "replace_tensors: a good value and a bad one (all or none)",
            |fx| replace(fx, vec![("fc1.bias", floats(&[8])), ("fc2.bias", Tensor::new())]),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { name }) if name == "fc2.bias")
        ),
        case!(
            "replace_tensors: a name given twice",
            |fx| replace(fx, vec![("fc1.bias", floats(&[8])), ("fc1.bias", floats(&[8]))]),
            e if matches!(only_problem(e), Some(TensorProblem::Duplicate { .. }))
        ),
        case!(
            "replace_tensors: two values for one tied tensor",
            |fx| replace(fx, vec![("head.weight", floats(&[16, 4])), ("emb.weight", floats(&[16, 4]))]),
            e if matches!(only_problem(e), Some(TensorProblem::TiedConflict { name, .. }) if name == "emb.weight")
        ),
    ]
}
