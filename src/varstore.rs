//! Putting a patch's own tensors into the VarStore under its parent's path, taking them
//! out again, and finding module tensors that a VarStore does not hold.
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::{named_tensors, NamedTensor, Parameters, TensorRole};
use crate::tensor_fit::same_tensor;
use crate::Patch;
use std::sync::Mutex;
use tch::{nn, Tensor};

/// Registers new tensors under `path`, all or none: every name is checked first, so a
/// taken name leaves the VarStore as it was. Params become trainable variables (an
/// optimizer built from the VarStore trains them); buffers are saved and loaded only.
///
/// tch's own `Path::add` silently renames a variable whose name is taken (`weight__3`);
/// this refuses instead, since a renamed tensor would not load from a checkpoint. Where
/// `Path::add` panics, this returns an error: a name that is empty or has a `.`
/// ([`PatchError::InvalidName`]), and in [`PatchError::InvalidTensors`] an undefined
/// tensor, one on another device than the VarStore, or a param that is not floating point
/// or complex (it could not require grad).
///
/// ```
/// use tch::{nn, Device, Kind, Tensor};
/// use tch_patch::{register_tensors, params::TensorRole, PatchError};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let emb = nn::embedding(vs.root() / "emb", 10, 4, Default::default());
/// let [delta] = register_tensors(&(vs.root() / "emb"), [
///     ("delta", Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), TensorRole::Param),
/// ]).unwrap();
/// assert!(delta.requires_grad());
/// assert!(vs.variables().contains_key("emb.delta"));
/// let taken = register_tensors(&(vs.root() / "emb"), [
///     ("weight", Tensor::zeros([1], (Kind::Float, Device::Cpu)), TensorRole::Param),
/// ]);
/// assert!(matches!(taken, Err(PatchError::NameTaken { name }) if name == "emb.weight"));
/// ```
pub fn register_tensors<const N: usize>(
    path: &nn::Path,
    tensors: [(&str, Tensor, TensorRole); N],
) -> Result<[Tensor; N]> {
    check_registrable(path, &tensors)?;
    Ok(tensors.map(|(name, tensor, role)| path.add(name, tensor, role == TensorRole::Param)))
}

/// Every check of [`register_tensors`], before anything is added: names tch can take and
/// that are free, tensors that are defined, on the VarStore's device and, for params,
/// able to require grad. (tch's `Path::add` panics on the first problem otherwise.)
pub(crate) fn check_registrable(
    path: &nn::Path,
    tensors: &[(&str, Tensor, TensorRole)],
) -> Result<()> {
    for (index, (name, _, _)) in tensors.iter().enumerate() {
        if name.is_empty() {
            return Err(PatchError::InvalidName {
                name: String::new(),
                reason: "it is empty",
            });
        }
        if name.contains('.') {
            return Err(PatchError::InvalidName {
                name: (*name).to_owned(),
                reason: "`.` separates path parts; register under `path / \"part\"` instead",
            });
        }
        let taken = path.get(name).is_some()
            || tensors[..index]
                .iter()
                .any(|(earlier, _, _)| earlier == name);
        if taken {
            return Err(PatchError::NameTaken {
                name: path.path(name),
            });
        }
    }
    let mut problems = Vec::new();
    for (name, tensor, role) in tensors {
        let name = path.path(name);
        if !tensor.defined() {
            problems.push(TensorProblem::Undefined { name });
            continue;
        }
        if tensor.device() != path.device() {
            problems.push(TensorProblem::Device {
                name: name.clone(),
                actual: tensor.device(),
                expected: path.device(),
            });
        }
        if *role == TensorRole::Param {
            let differentiable = tensor.f_is_floating_point().unwrap_or(false)
                || tensor.f_is_complex().unwrap_or(false);
            if !differentiable {
                let kind = tensor
                    .f_kind()
                    .map_err(PatchError::torch(format!("reading the dtype of `{name}`")))?;
                problems.push(TensorProblem::NotDifferentiable { name, kind });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PatchError::InvalidTensors {
            operation: "register tensors".into(),
            problems,
        })
    }
}

/// Undoes a patch and takes the tensors it added out of `vs` (its variables and its list
/// of trainable tensors), so a checkpoint of the VarStore is again the parent's alone.
/// The parent's own variables are untouched.
pub fn unpatch<P: Patch>(patch: P, vs: &nn::VarStore) -> P::Base {
    let added: Vec<Tensor> = patch
        .added_tensors()
        .into_iter()
        .map(|(_, t, _)| t.shallow_clone())
        .collect();
    forget_tensors(&vs.variables_, &added);
    patch.into_base()
}

/// Takes `tensors` (the very tensors, by identity) out of a VarStore's variables and its
/// list of trainable tensors. Other variables are untouched.
pub(crate) fn forget_tensors(variables: &Mutex<nn::Variables>, tensors: &[Tensor]) {
    if tensors.is_empty() {
        return;
    }
    let mut variables = variables
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let is_added = |tensor: &Tensor| tensors.iter().any(|a| same_tensor(a, tensor));
    variables
        .named_variables
        .retain(|_, tensor| !is_added(tensor));
    variables
        .trainable_variables
        .retain(|var| !is_added(&var.tensor));
}

/// Takes out of `variables` the tensors of `before` that `after` does not hold: what a
/// change that is now undone had added (a layer taken out of a node, its tensors with it).
pub(crate) fn forget_dropped(
    variables: &Mutex<nn::Variables>,
    before: Vec<NamedTensor>,
    after: &[NamedTensor],
) {
    let dropped: Vec<Tensor> = before
        .into_iter()
        .map(|named| named.tensor)
        .filter(|tensor| !after.iter().any(|kept| same_tensor(&kept.tensor, tensor)))
        .collect();
    forget_tensors(variables, &dropped);
}

/// Puts entries taken out by [`forget_tensors`] back under their full names: `(name,
/// tensor, trainable)`. The very tensors (the VarStore holds handles to them again; a
/// trainable one is in the VarStore's first optimizer group).
pub(crate) fn restore_tensors(vs: &nn::VarStore, entries: Vec<(String, Tensor, bool)>) {
    for (name, tensor, trainable) in entries {
        let (prefix, last) = name.rsplit_once('.').unwrap_or(("", &name));
        let path = crate::tree::path_in(&vs.root(), prefix);
        let _handle = path.add(last, tensor, trainable);
    }
}

/// Names of the module's tensors that are not variables of `vs` (the same tensor, not
/// merely equal values). An optimizer built from `vs` never updates these: the silent
/// "optimizer trains nothing" bug after a tensor was replaced out of place.
pub fn unregistered_tensors<M: Parameters + ?Sized>(vs: &nn::VarStore, module: &M) -> Vec<String> {
    let held: Vec<Tensor> = vs.variables().into_values().collect();
    named_tensors(module)
        .into_iter()
        .filter(|named| {
            // An undefined tensor (a field left `Tensor::new()`) is no variable's.
            !held.iter().any(|var| same_tensor(var, &named.tensor))
        })
        .map(|named| named.name)
        .collect()
}

/// A VarStore that shares `vs`'s variables, for rule closures (and rules) that outlive a
/// borrow of it.
/// Its kind is the default (float): patches create their tensors from their base's kind.
pub(crate) struct SharedStore {
    variables: std::sync::Arc<Mutex<nn::Variables>>,
    device: tch::Device,
}

impl SharedStore {
    pub(crate) fn of(vs: &nn::VarStore) -> Self {
        SharedStore {
            variables: vs.variables_.clone(),
            device: vs.device(),
        }
    }

    pub(crate) fn store(&self) -> nn::VarStore {
        let mut store = nn::VarStore::new(self.device);
        store.variables_ = self.variables.clone();
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn an_undefined_module_tensor_is_reported_not_a_panic() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut linear = nn::linear(vs.root(), 2, 2, Default::default());
        linear.bs = Some(Tensor::new());
        assert_eq!(unregistered_tensors(&vs, &linear), ["bias"]);
    }
}
