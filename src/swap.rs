//! `torch.utils.swap_tensors`: give a module's tensor a new value, shape or dtype while it
//! stays the same tensor object, so the VarStore and every optimizer built from it keep
//! training it.
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::Parameters;
use crate::tensor_fit::{fit_problems, Fit};
use crate::tensor_plan::Planner;
use crate::tied::Agreement;
use std::borrow::Borrow;
use tch::Tensor;

/// Gives the module's tensor `name` the data of `value`: its values, and also its shape,
/// dtype or device if they differ. The tensor object stays the same one (`set_data` under
/// `no_grad`), so the VarStore's variable and an optimizer built from the VarStore see the
/// change and go on training it, where assigning a new tensor to the field would leave
/// them with the old one (see [`crate::params::unregistered_tensors`]).
///
/// A shorthand for [`replace_tensors`] with one entry; see there for the checks.
///
/// ```
/// use tch::{nn, Device, Kind, Tensor};
/// use tch_patch::{swap::replace_tensor, params::unregistered_tensors};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
/// let wider = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
/// replace_tensor(&mut linear, "weight", &wider)?;
/// assert_eq!(vs.variables()["weight"].size(), [2, 5]); // the VarStore sees it
/// assert!(unregistered_tensors(&vs, &linear).is_empty());
/// assert!(replace_tensor(&mut linear, "wieght", &wider).is_err());
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn replace_tensor<M: Parameters + ?Sized>(
    module: &mut M,
    name: &str,
    value: &Tensor,
) -> Result<()> {
    replace_tensors(module, [(name, value)])
}

/// Gives several tensors of the module new data at once, all or none, keeping each tensor
/// object (see [`replace_tensor`]).
///
/// Checked first, every problem reported together in [`PatchError::InvalidTensors`], with
/// nothing changed: a name the module lacks or given twice, an undefined value, a value
/// that is not floating point or complex for a tensor that requires grad, and two names of
/// one tied tensor given different values (one name replaces the tied tensor under all).
///
/// The tensor shares `value`'s storage afterwards (no copy); pass `value.copy()` to keep
/// them apart. Its gradient, if it has one of another shape, dtype or device, is reset to
/// zeros of the new layout. An optimizer's per-tensor state (Adam's moments, SGD's
/// momentum) keeps the old shape: change shapes only with a stateless optimizer or before
/// its first step, as in PyTorch.
pub fn replace_tensors<M, I, K, T>(module: &mut M, values: I) -> Result<()>
where
    M: Parameters + ?Sized,
    I: IntoIterator<Item = (K, T)>,
    K: AsRef<str>,
    T: Borrow<Tensor>,
{
    let mut planner = Planner::new(module, Agreement::SameTensor);
    let any_layout = Fit {
        kind: false,
        device: false,
    };
    planner.offer_all(values, |name, value, target| {
        if !value.defined() {
            return Ok(fit_problems(name, value, target, any_layout));
        }
        if target.defined() && target.requires_grad() {
            let kind = value
                .f_kind()
                .map_err(PatchError::torch(format!("reading the dtype of `{name}`")))?;
            let differentiable = value.f_is_floating_point().unwrap_or(false)
                || value.f_is_complex().unwrap_or(false);
            if !differentiable {
                return Ok(vec![TensorProblem::NotDifferentiable {
                    name: name.to_owned(),
                    kind,
                }]);
            }
        }
        Ok(Vec::new())
    })?;
    let plan = planner.finish_for("replace tensors")?;
    let _no_grad = tch::no_grad_guard();
    plan.write_all(
        |target, name, value| set_data(target, value, name),
        |(mut target, old)| {
            let _ = target.f_set_data(&old);
        },
    )
}

/// Gives `target` the data of `value`, and a gradient of the new layout if it has one of
/// another. Returns the tensor and a handle to its old data. Unchanged on error.
fn set_data(target: Tensor, value: &Tensor, name: &str) -> Result<(Tensor, Tensor)> {
    set_data_keeping_grad(target, value)
        .map_err(PatchError::torch(format!("replacing the data of `{name}`")))
}

/// [`set_data`] with tch's error: what loads that assign use.
pub(crate) fn set_data_keeping_grad(
    mut target: Tensor,
    value: &Tensor,
) -> std::result::Result<(Tensor, Tensor), tch::TchError> {
    let old = target.f_detach()?;
    let mut grad = if target.is_leaf() {
        target.grad()
    } else {
        Tensor::new()
    };
    let grad_zeros = if grad.defined() && layout(&grad) != layout(value) {
        Some(value.f_zeros_like()?)
    } else {
        None
    };
    target.f_set_data(value)?;
    if let Some(zeros) = grad_zeros {
        if let Err(source) = grad.f_set_data(&zeros) {
            let _ = target.f_set_data(&old);
            return Err(source);
        }
    }
    Ok((target, old))
}

/// Shape, dtype and device of a defined tensor.
type Layout = (Vec<i64>, Option<tch::Kind>, tch::Device);

fn layout(tensor: &Tensor) -> Layout {
    (tensor.size(), tensor.f_kind().ok(), tensor.device())
}

/// Why [`swap_tensors`] refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwapError {
    /// One of the tensors is undefined (`Tensor::new()`).
    #[error("cannot swap: the {which} tensor is undefined")]
    Undefined {
        /// `"first"` or `"second"`.
        which: &'static str,
    },
    /// One of the tensors was computed by autograd (it has a `grad_fn`): swapping its data
    /// would make its graph compute gradients for values it never saw. PyTorch refuses it
    /// too.
    #[error("cannot swap: the {which} tensor has a grad_fn (it is not a leaf); swap leaves, or detach it first")]
    NotLeaf {
        /// `"first"` or `"second"`.
        which: &'static str,
    },
    /// One tensor has a gradient and the other none: the gradient would have to move to the
    /// other tensor and leave this one without, which tch cannot do (it cannot unset a
    /// gradient). Both or neither must have one.
    #[error("cannot swap: only the {which} tensor has a gradient; tch cannot move a gradient to a tensor that has none (run both through a backward pass, or swap before the first)")]
    GradOnOneSide {
        /// `"first"` or `"second"`: the one with the gradient.
        which: &'static str,
    },
    /// libtorch refused to give one tensor the other's data. Every change was taken back.
    #[error("libtorch error while swapping: {source}")]
    Torch {
        /// tch's error.
        #[source]
        source: tch::TchError,
    },
}

/// `torch.utils.swap_tensors(a, b)`: `a` and `b` trade everything but their identity: data
/// (values, shape, dtype, device), `requires_grad` and gradient. Every holder of either
/// tensor object (a VarStore, an optimizer, a module field, a shallow clone) sees the swap,
/// and an optimizer's state stays with the object, as in PyTorch.
///
/// Refused, with nothing changed: an undefined tensor ([`SwapError::Undefined`]), a
/// tensor with a `grad_fn` ([`SwapError::NotLeaf`], as PyTorch refuses), and a gradient
/// on one side only ([`SwapError::GradOnOneSide`]).
///
/// ```
/// use tch::{nn, Device, Kind, Tensor};
/// use tch_patch::swap::swap_tensors;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 3, 2, Default::default());
/// let replacement = Tensor::zeros([2, 3], (Kind::Double, Device::Cpu));
/// swap_tensors(&linear.ws, &replacement)?;
/// assert_eq!(vs.variables()["weight"].kind(), Kind::Double); // the VarStore sees it
/// assert!(!vs.variables()["weight"].requires_grad()); // it came with the data
/// assert!(replacement.requires_grad() && replacement.kind() == Kind::Float);
/// # Ok::<(), tch_patch::swap::SwapError>(())
/// ```
pub fn swap_tensors(a: &Tensor, b: &Tensor) -> std::result::Result<(), SwapError> {
    for (tensor, which) in [(a, "first"), (b, "second")] {
        if !tensor.defined() {
            return Err(SwapError::Undefined { which });
        }
        if !tensor.is_leaf() {
            return Err(SwapError::NotLeaf { which });
        }
    }
    let (grad_a, grad_b) = (a.grad(), b.grad());
    match (grad_a.defined(), grad_b.defined()) {
        (true, false) => return Err(SwapError::GradOnOneSide { which: "first" }),
        (false, true) => return Err(SwapError::GradOnOneSide { which: "second" }),
        _ => {}
    }
    let torch = |source| SwapError::Torch { source };
    let _no_grad = tch::no_grad_guard();
    let (requires_a, requires_b) = (a.requires_grad(), b.requires_grad());
    let (data_a, data_b) = (a.f_detach().map_err(torch)?, b.f_detach().map_err(torch)?);
    // `requires_grad` off while the data moves: an integer tensor's data may arrive in a
    // tensor that required grad.
    let _ = a.set_requires_grad(false);
    let _ = b.set_requires_grad(false);
    let restore = |a: &Tensor, b: &Tensor| {
        let _ = a.shallow_clone().f_set_data(&data_a);
        let _ = b.shallow_clone().f_set_data(&data_b);
        let _ = a.set_requires_grad(requires_a);
        let _ = b.set_requires_grad(requires_b);
    };
    let moved = a
        .shallow_clone()
        .f_set_data(&data_b)
        .and_then(|()| b.shallow_clone().f_set_data(&data_a))
        .and_then(|()| a.f_set_requires_grad(requires_b).map(drop))
        .and_then(|()| b.f_set_requires_grad(requires_a).map(drop));
    if let Err(source) = moved {
        restore(a, b);
        return Err(torch(source));
    }
    if grad_a.defined() {
        let old_a = grad_a.f_detach().map_err(torch)?;
        let old_b = grad_b.f_detach().map_err(torch)?;
        let moved = grad_a
            .shallow_clone()
            .f_set_data(&old_b)
            .and_then(|()| grad_b.shallow_clone().f_set_data(&old_a));
        if let Err(source) = moved {
            let _ = grad_a.shallow_clone().f_set_data(&old_a);
            let _ = grad_b.shallow_clone().f_set_data(&old_b);
            restore(a, b);
            return Err(torch(source));
        }
    }
    Ok(())
}
