//! Patching: `MostlyFrozenEmbedding::from_existing` and `register_tensors`.
use crate::case;
use crate::fixture::{floats, Fixture};
use crate::{only_problem, Case};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{params::TensorProblem, params::TensorRole, register_tensors, PatchError};

fn embed(fx: &mut Fixture, ids: &[i64]) -> Result<MostlyFrozenEmbedding, PatchError> {
    let emb = fx.take_net().emb;
    MostlyFrozenEmbedding::from_existing(emb, &(fx.vs.root() / "emb"), ids)
}

fn register(
    fx: &mut Fixture,
    name: &str,
    tensor: Tensor,
    role: TensorRole,
) -> Result<(), PatchError> {
    register_tensors(&(fx.vs.root() / "fc1"), [(name, tensor, role)]).map(drop)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "embedding: empty id list",
            |fx| embed(fx, &[]),
            PatchError::Empty { .. }
        ),
        case!(
            "embedding: id past the table",
            |fx| embed(fx, &[1, 16]),
            PatchError::IndexOutOfRange {
                index: 16,
                len: 16,
                ..
            }
        ),
        case!(
            "embedding: negative id",
            |fx| embed(fx, &[-1]),
            PatchError::IndexOutOfRange { index: -1, .. }
        ),
        case!(
            "embedding: duplicate id",
            |fx| embed(fx, &[3, 5, 3]),
            PatchError::DuplicateIndex { index: 3, .. }
        ),
        case!(
            "embedding: `emb.token_ids` already taken",
            setup: |fx| {
                let ids = Tensor::zeros([1], (Kind::Int64, Device::Cpu));
                let [_ids] = register_tensors(&(fx.vs.root() / "emb"), [("token_ids", ids, TensorRole::Buffer)]).unwrap();
            },
            |fx| embed(fx, &[2]),
            PatchError::NameTaken { name } if name == "emb.token_ids"
        ),
        case!(
            "embedding: integer table (its delta could not train)",
            |fx| {
                let mut emb = fx.take_net().emb;
                emb.ws = Tensor::zeros([16, 4], (Kind::Int64, Device::Cpu));
                MostlyFrozenEmbedding::from_existing(emb, &(fx.vs.root() / "emb"), &[1])
            },
            e if matches!(only_problem(e), Some(TensorProblem::NotDifferentiable { name, .. }) if name == "emb.delta")
        ),
        case!(
            "register: name of an existing VarStore variable",
            |fx| register(fx, "weight", floats(&[1]), TensorRole::Param),
            PatchError::NameTaken { name } if name == "fc1.weight"
        ),
        case!(
            "register: one name twice in one call",
            |fx| register_tensors(&(fx.vs.root() / "fc1"), [
                ("gain", floats(&[1]), TensorRole::Param),
                ("gain", floats(&[1]), TensorRole::Param),
            ]).map(drop),
            PatchError::NameTaken { name } if name == "fc1.gain"
        ),
        case!(
            "register: dotted name (tch's Path::add panics on it)",
            |fx| register(fx, "lora.a", floats(&[1]), TensorRole::Param),
            PatchError::InvalidName { name, .. } if name == "lora.a"
        ),
        case!(
            "register: empty name",
            |fx| register(fx, "", floats(&[1]), TensorRole::Param),
            PatchError::InvalidName { .. }
        ),
        case!(
            "register: integer param (cannot require grad; tch panics)",
            |fx| register(fx, "counts", Tensor::zeros([2], (Kind::Int64, Device::Cpu)), TensorRole::Param),
            e if matches!(only_problem(e), Some(TensorProblem::NotDifferentiable { name, kind: Kind::Int64 }) if name == "fc1.counts")
        ),
        case!(
            "register: undefined tensor",
            |fx| register(fx, "gain", Tensor::new(), TensorRole::Buffer),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { .. }))
        ),
    ]
}
