//! Tensors on another device than the model's. Only on a machine with CUDA: without a
//! second device there is no such input to give (tch has no meta device).
use crate::case;
use crate::fixture::Fixture;
use crate::{only_problem, Case};
use tch::{Device, Kind, Tensor};
use tch_patch::{
    functional::functional_call, functional::Strictness, params::TensorProblem, params::TensorRole,
    register_tensors, PatchError,
};

fn on_gpu(shape: &[i64]) -> Tensor {
    Tensor::zeros(shape, (Kind::Float, Device::Cuda(0)))
}

fn call(fx: &mut Fixture, name: &str, value: Tensor) -> Result<(), PatchError> {
    functional_call(fx.net(), [(name, value)], Strictness::Partial, |_| ())
}

pub(super) fn cases() -> Vec<Case> {
    if !tch::Cuda::is_available() {
        return Vec::new();
    }
    vec![
        case!(
            "functional_call: a CUDA tensor for a CPU model",
            |fx| call(fx, "fc1.bias", on_gpu(&[8])),
            e if matches!(only_problem(e), Some(TensorProblem::Device { actual: Device::Cuda(0), expected: Device::Cpu, .. }))
        ),
        case!(
            "register: a CUDA tensor in a CPU VarStore",
            |fx| register_tensors(&(fx.vs.root() / "fc1"), [("gain", on_gpu(&[8]), TensorRole::Param)]).map(drop),
            e if matches!(only_problem(e), Some(TensorProblem::Device { .. }))
        ),
    ]
}
