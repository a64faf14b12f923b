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
fn set_data(mut target: Tensor, value: &Tensor, name: &str) -> Result<(Tensor, Tensor)> {
    let context = || format!("replacing the data of `{name}`");
    let old = target.f_detach().map_err(PatchError::torch(context()))?;
    let mut grad = if target.is_leaf() {
        target.grad()
    } else {
        Tensor::new()
    };
    let grad_zeros = if grad.defined() && layout(&grad) != layout(value) {
        Some(value.f_zeros_like().map_err(PatchError::torch(context()))?)
    } else {
        None
    };
    target
        .f_set_data(value)
        .map_err(PatchError::torch(context()))?;
    if let Some(zeros) = grad_zeros {
        if let Err(source) = grad.f_set_data(&zeros) {
            let _ = target.f_set_data(&old);
            return Err(PatchError::torch(context())(source));
        }
    }
    Ok((target, old))
}

/// Shape, dtype and device of a defined tensor.
type Layout = (Vec<i64>, Option<tch::Kind>, tch::Device);

fn layout(tensor: &Tensor) -> Layout {
    (tensor.size(), tensor.f_kind().ok(), tensor.device())
}
