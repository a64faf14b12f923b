//! Calls with other tensors: `functional_call` and `Mutable`.
use crate::case;
use crate::fingerprint::Fingerprint;
use crate::fixture::{floats, Fixture};
use crate::{only_problem, Case};
use tch::{nn, Device, Kind, Tensor};
use tch_patch::{
    functional::functional_call, functional::Strictness, mutable::Mutable, params::TensorProblem,
    PatchError,
};

fn call(
    fx: &mut Fixture,
    overrides: Vec<(&str, Tensor)>,
    strictness: Strictness,
) -> Result<(), PatchError> {
    functional_call(fx.net(), overrides, strictness, |_| ())
}

/// A mutable copy of `fc1`, the bad call on it, and a check that the call changed none of
/// its tensors (the fixture's fingerprint covers the VarStore's leaves).
fn mutable(
    fx: &mut Fixture,
    bad: impl FnOnce(&mut Mutable<nn::Linear>) -> Result<(), PatchError>,
) -> Result<(), PatchError> {
    let mut m = Mutable::new(fx.take_net().fc1)?;
    let scratch = nn::VarStore::new(Device::Cpu);
    let before = Fingerprint::take(&scratch, Some(&m));
    let result = bad(&mut m);
    let changes = before.differences(&scratch, Some(&m));
    assert!(changes.is_empty(), "the Mutable changed: {changes:?}");
    result
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "functional_call: unknown name",
            |fx| call(fx, vec![("fc3.weight", floats(&[4, 8]))], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::Unexpected { name }) if name == "fc3.weight")
        ),
        case!(
            "functional_call: wrong shape",
            |fx| call(fx, vec![("fc1.weight", floats(&[4, 8]))], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::Shape { actual, expected, .. }) if actual == &[4, 8] && expected == &[8, 4])
        ),
        case!(
            "functional_call: wrong dtype",
            |fx| call(fx, vec![("fc1.bias", Tensor::zeros([8], (Kind::Double, Device::Cpu)))], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::Kind { actual: Kind::Double, expected: Kind::Float, .. }))
        ),
        case!(
            "functional_call: undefined tensor",
            |fx| call(fx, vec![("fc2.bias", Tensor::new())], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { .. }))
        ),
        case!(
            "functional_call: a name given twice",
            |fx| call(fx, vec![("fc2.bias", floats(&[4])), ("fc2.bias", floats(&[4]))], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::Duplicate { name }) if name == "fc2.bias")
        ),
        case!(
            "functional_call: strict with an empty list",
            |fx| call(fx, vec![], Strictness::Strict),
            PatchError::InvalidTensors { problems, .. }
                if problems.len() == 6 && problems.iter().all(|p| matches!(p, TensorProblem::Missing { .. }))
        ),
        case!(
            "functional_call: strict with a tensor left out",
            |fx| call(fx, vec![
                ("emb.weight", floats(&[16, 4])),
                ("fc1.weight", floats(&[8, 4])),
                ("fc1.bias", floats(&[8])),
                ("fc2.weight", floats(&[4, 8])),
            ], Strictness::Strict),
            e if matches!(only_problem(e), Some(TensorProblem::Missing { name }) if name == "fc2.bias")
        ),
        case!(
            "functional_call: two values for one tied tensor",
            |fx| call(fx, vec![("emb.weight", floats(&[16, 4])), ("head.weight", floats(&[16, 4]))], Strictness::Partial),
            e if matches!(only_problem(e), Some(TensorProblem::TiedConflict { name, tied_to }) if name == "head.weight" && tied_to == "emb.weight")
        ),
        case!(
            "mutable: set with a wrong shape",
            |fx| mutable(fx, |m| m.set("weight", &floats(&[4, 8]))),
            e if matches!(only_problem(e), Some(TensorProblem::Shape { .. }))
        ),
        case!(
            "mutable: set with a wrong dtype",
            |fx| mutable(fx, |m| m.set("bias", &Tensor::zeros([8], (Kind::Half, Device::Cpu)))),
            e if matches!(only_problem(e), Some(TensorProblem::Kind { actual: Kind::Half, .. }))
        ),
        case!(
            "mutable: set an undefined tensor",
            |fx| mutable(fx, |m| m.set("bias", &Tensor::new())),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { .. }))
        ),
        case!(
            "mutable: get_mut of an unknown name",
            |fx| mutable(fx, |m| m.get_mut("wieght").map(drop)),
            PatchError::UnknownTensor { name, known } if name == "wieght" && known == &["weight", "bias"]
        ),
    ]
}
