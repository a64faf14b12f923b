//! Parametrizations: bad arguments, transforms that break the contract, assignment.
use crate::case;
use crate::fixture::{floats, Fixture};
use crate::{only_problem, Case};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn, Device, Kind, Tensor};
use tch_patch::parametrize::ParametrizeError;
use tch_patch::{
    parametrize::parametrize, parametrize::FakeQuantInt8, parametrize::FnTransform,
    parametrize::MagnitudePrune, parametrize::Parametrized, parametrize::Removal,
    parametrize::Transform, parametrize::WeightNorm, params::TensorProblem, PatchError,
};

/// `fc1` wrapped with no parametrization yet, for calls that must leave it as it was.
fn wrapped(fx: &mut Fixture) -> Parametrized<nn::Linear> {
    Parametrized::new(fx.take_net().fc1)
}

/// `fc1` with its weight shifted by one (right inverse: minus one).
fn shifted(fx: &mut Fixture) -> Parametrized<nn::Linear> {
    let add1 = FnTransform::new("add1", |w: &Tensor| w + 1).with_right_inverse(|v: &Tensor| v - 1);
    parametrize(fx.take_net().fc1, "weight", add1).unwrap()
}

/// A transform that works when added and fails on every later application.
struct FailsLater(AtomicUsize);

impl Transform for FailsLater {
    fn name(&self) -> &str {
        "fails_later"
    }
    fn apply(&self, input: &Tensor) -> Result<Tensor, PatchError> {
        if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
            Ok(input * 3)
        } else {
            Err(PatchError::Empty {
                what: "the transform's patience",
            })
        }
    }
}

/// `fc1` with its weight doubled and its bias through `FailsLater`.
fn fails_on_bias(fx: &mut Fixture) -> Parametrized<nn::Linear> {
    let mut p = parametrize(fx.take_net().fc1, "weight", |w: &Tensor| w * 2).unwrap();
    p.push("bias", FailsLater(AtomicUsize::new(0))).unwrap();
    p
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "bake: the second transform fails (the first is not written either)",
            |fx| fails_on_bias(fx).remove(Removal::Bake),
            PatchError::Empty { .. }
        ),
        case!(
            "bake into the VarStore: fails, nothing written or forgotten",
            |fx| {
                let p = fails_on_bias(fx);
                p.remove_from(&fx.vs, Removal::Bake)
            },
            PatchError::Empty { .. }
        ),
        case!(
            "transform called on an undefined tensor",
            |_fx| FakeQuantInt8::per_tensor().prepare("w", &Tensor::new()),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { name }) if name == "w")
        ),
        case!(
            "prune an integer tensor",
            |_fx| MagnitudePrune::new(0.5)?
                .prepare("ids", &Tensor::arange(4, (Kind::Int64, Device::Cpu))),
            PatchError::KindMismatch {
                actual: Kind::Int64,
                ..
            }
        ),
        case!(
            "parametrize: unknown tensor name",
            |fx| parametrize(fx.take_net().fc1, "wieght", |w: &Tensor| w * 2),
            PatchError::UnknownTensor { name, known } if name == "wieght" && known == &["weight", "bias"]
        ),
        case!(
            "prune: sparsity above one",
            |fx| MagnitudePrune::new(1.5).map_err(PatchError::from).and_then(|p| parametrize(fx.take_net().fc1, "weight", p)),
            PatchError::Parametrize(ParametrizeError::SparsityOutOfRange { sparsity }) if *sparsity == 1.5
        ),
        case!(
            "prune: NaN sparsity",
            |fx| MagnitudePrune::new(f64::NAN)
                .map_err(PatchError::from)
                .and_then(|p| parametrize(fx.take_net().fc1, "weight", p)),
            PatchError::Parametrize(ParametrizeError::SparsityOutOfRange { .. })
        ),
        case!(
            "fake quant: channel axis out of range",
            |fx| parametrize(fx.take_net().fc2, "weight", FakeQuantInt8::per_channel(2)),
            PatchError::Parametrize(ParametrizeError::AxisOutOfRange {
                axis: 2,
                ndim: 2,
                ..
            })
        ),
        case!(
            "weight norm: dimension out of range",
            |fx| wrapped(fx).push_registered(
                &(fx.vs.root() / "fc1"),
                "weight",
                WeightNorm::new(-3)
            ),
            PatchError::Parametrize(ParametrizeError::AxisOutOfRange { axis: -3, .. })
        ),
        case!(
            "weight norm: trainable gain without a VarStore",
            |fx| wrapped(fx).push("weight", WeightNorm::new(0)),
            PatchError::Parametrize(ParametrizeError::NeedsVarStore { tensor, .. }) if tensor == "weight_g"
        ),
        case!(
            "weight norm: `fc1.weight_g` already taken",
            setup: |fx| {
                let [_g] = tch_patch::register_tensors(
                    &(fx.vs.root() / "fc1"),
                    [("weight_g", floats(&[8, 1]), tch_patch::params::TensorRole::Param)],
                )
                .unwrap();
            },
            |fx| wrapped(fx).push_registered(&(fx.vs.root() / "fc1"), "weight", WeightNorm::new(0)),
            PatchError::NameTaken { name } if name == "fc1.weight_g"
        ),
        case!(
            "parametrize: the module's tensor is undefined",
            |fx| {
                let mut fc1 = fx.take_net().fc1;
                fc1.bs = Some(Tensor::new());
                parametrize(fc1, "bias", |b: &Tensor| b * 2)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { name }) if name == "bias")
        ),
        case!(
            "transform that changes the shape",
            |fx| parametrize(fx.take_net().fc1, "weight", |w: &Tensor| w.transpose(0, 1)),
            PatchError::Parametrize(ParametrizeError::TransformChangedTensor { .. })
        ),
        case!(
            "transform that changes the dtype",
            |fx| parametrize(fx.take_net().fc1, "bias", |b: &Tensor| b
                .to_kind(Kind::Double)),
            PatchError::Parametrize(ParametrizeError::TransformChangedTensor { .. })
        ),
        case!(
            "transform that returns an undefined tensor",
            |fx| parametrize(fx.take_net().fc1, "bias", |_: &Tensor| Tensor::new()),
            PatchError::Parametrize(ParametrizeError::TransformChangedTensor { actual, .. }) if actual.contains("undefined")
        ),
        case!(
            "assign: a tensor that is not parametrized",
            |fx| shifted(fx).assign("bias", &floats(&[8])),
            PatchError::Parametrize(ParametrizeError::NotParametrized { name, parametrized }) if name == "bias" && parametrized == &["weight"]
        ),
        case!(
            "assign: through a transform with no right inverse",
            |fx| parametrize(fx.take_net().fc1, "weight", |w: &Tensor| w * 2)?.assign("weight", &floats(&[8, 4])),
            PatchError::Parametrize(ParametrizeError::NoRightInverse { transform }) if transform == "closure"
        ),
        case!(
            "assign: wrong shape",
            |fx| shifted(fx).assign("weight", &floats(&[4, 8])),
            PatchError::ShapeMismatch { name, actual, .. } if name == "weight" && actual == &[4, 8]
        ),
        case!(
            "assign: wrong dtype",
            |fx| shifted(fx).assign(
                "weight",
                &Tensor::zeros([8, 4], (Kind::Double, Device::Cpu))
            ),
            PatchError::KindMismatch {
                actual: Kind::Double,
                ..
            }
        ),
        case!(
            "assign: undefined value",
            |fx| shifted(fx).assign("weight", &Tensor::new()),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { name }) if name == "weight")
        ),
        case!(
            "try_forward: the parametrized tensor was taken out of the module",
            |fx| {
                let mut p = parametrize(fx.take_net().fc1, "bias", |b: &Tensor| b * 2)?;
                p.original_module_mut().bs = None;
                p.try_forward(&floats(&[1, 4]))
            },
            PatchError::UnknownTensor { name, .. } if name == "bias"
        ),
    ]
}
