//! torch-mutable-modules: a module whose tensors take assignment and in-place arithmetic
//! while autograd records it, so one network can write another's weights and be trained
//! through them (hypernetworks).
use crate::error::{PatchError, Result};
use crate::handles::exchange_by_name;
use crate::names::{device_name, is_floating, kind_name};
use crate::params::{named_tensors, Parameters, Visitor, VisitorMut};
use crate::tensor_fit::{fit_problems, position, Fit};
use crate::tied::tie_leaders;
use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use tch::{nn, Device, Kind, Tensor};

/// A module whose tensors can be assigned ([`Mutable::set`]) and changed in place
/// ([`Mutable::get_mut`], or the fields through `DerefMut`) with autograd recording it.
///
/// libtorch refuses in-place operations on a leaf that requires grad (every trainable
/// parameter). `Mutable::new` therefore replaces each such leaf by a non-leaf copy of it
/// (`leaf * 1`: gradients still flow back to the leaf through it), and keeps every tensor
/// that requires grad a non-leaf from then on: a leaf given to [`Mutable::set`] is wrapped
/// the same way. Tied tensors stay tied: one copy is made per tied group, and setting one
/// of its names sets all of them.
///
/// The VarStore still holds the original leaves, untouched; [`Mutable::restore`] puts them
/// back, [`Mutable::into_inner`] keeps the current tensors.
///
/// [`Mutable::to_kind`], [`Mutable::to_device`] and [`Mutable::convert`] move the whole
/// module to another dtype or device at once, recorded by autograd like an assignment.
///
/// # `Deref` to the module
/// `Mutable<M>` derefs to `M`, and that view is never stale: assignments and in-place
/// changes are made on the module's own tensor handles, and its forward is the module's
/// forward on them. So a function taking `&M` (an `&nn::Linear`) given `&mutable` computes
/// exactly what `mutable.forward(xs)` does, with the current (assigned) tensors; the
/// VarStore's leaves are what [`Mutable::restore`] gives back.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::mutable::Mutable;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut m = Mutable::new(nn::linear(vs.root(), 1, 1, Default::default()))?;
/// *m.get_mut("weight")? *= 0.0;
/// *m.get_mut("weight")? += 69.0;
/// assert_eq!(m.ws.double_value(&[0, 0]), 69.0);
/// assert!(m.ws.requires_grad() && !m.ws.is_leaf()); // recorded by autograd
///
/// // A hypernetwork writes the weight; its output is what the gradient reaches.
/// let predicted = Tensor::full([1, 1], 2.0, (Kind::Float, Device::Cpu)).set_requires_grad(true);
/// m.set("weight", &predicted)?;
/// let ys = m.forward(&Tensor::ones([1, 1], (Kind::Float, Device::Cpu)));
/// ys.sum(Kind::Float).backward();
/// assert!(predicted.grad().defined());
/// fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
///     linear.forward(xs)
/// }
/// let xs = Tensor::ones([1, 1], (Kind::Float, Device::Cpu));
/// assert!(takes_linear(&m, &xs).equal(&m.forward(&xs))); // sees the assigned weight
/// assert!(m.set("weight", &Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))).is_err());
/// let linear: nn::Linear = m.restore(); // the VarStore's leaves again
/// assert!(linear.ws.is_leaf());
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct Mutable<M: Parameters> {
    module: M,
    /// Every tensor name at creation, in visiting order.
    names: Vec<String>,
    /// For each name, the index of the first name tied to it (itself if none).
    leaders: Vec<usize>,
    /// The module's tensors at creation, by name, for `restore`.
    originals: HashMap<String, Tensor>,
}

impl<M: Parameters> Mutable<M> {
    /// Makes `module` mutable: every leaf that requires grad is replaced by a non-leaf copy
    /// of it (one per tied group). Costs one copy of those tensors.
    pub fn new(mut module: M) -> Result<Self> {
        let named = named_tensors(&module);
        let leaders = tie_leaders(&named);
        let mut copies: HashMap<usize, Tensor> = HashMap::new();
        for (i, tensor) in named.iter().enumerate() {
            if leaders[i] == i && is_grad_leaf(&tensor.tensor) {
                let copy = tensor
                    .tensor
                    .f_mul_scalar(1)
                    .map_err(PatchError::torch(format!("copying `{}`", tensor.name)))?;
                copies.insert(i, copy);
            }
        }
        let mut handles: HashMap<String, Tensor> = named
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.name.clone(), copies.get(&leaders[i])?.shallow_clone())))
            .collect();
        exchange_by_name(&mut module, &mut handles);
        Ok(Mutable {
            module,
            names: named.iter().map(|t| t.name.clone()).collect(),
            leaders,
            originals: named.into_iter().map(|t| (t.name, t.tensor)).collect(),
        })
    }

    /// Assigns `value` to the tensor `name` (and every name tied to it). `value` must have
    /// the tensor's shape, dtype and device; it is held, not copied, so its graph is kept
    /// and a later in-place change of the tensor changes `value` too. A leaf that requires
    /// grad is held as a non-leaf copy instead, so in-place changes keep working.
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let current = named_tensors(&self.module);
        let index = position(&current, name)?;
        let fit = Fit {
            kind: true,
            device: true,
        };
        let problems = fit_problems(name, value, &current[index].tensor, fit);
        if !problems.is_empty() {
            return Err(PatchError::InvalidTensors {
                operation: format!("set `{name}`"),
                problems,
            });
        }
        let value = if is_grad_leaf(value) {
            value
                .f_mul_scalar(1)
                .map_err(PatchError::torch(format!("copying the value of `{name}`")))?
        } else {
            value.shallow_clone()
        };
        self.write(name, &value);
        Ok(())
    }

    /// A shallow handle to the tensor `name`: the same tensor, no copy.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let current = named_tensors(&self.module);
        let index = position(&current, name)?;
        Ok(current[index].tensor.shallow_clone())
    }

    /// Mutable access to the tensor `name`, for in-place arithmetic
    /// (`*m.get_mut("weight")? *= 2.0`) that autograd records.
    ///
    /// Assigning through the guard (`*guard = t`) is stored back, under every tied name,
    /// when it drops, without the checks of [`Mutable::set`]: prefer `set` to assign.
    pub fn get_mut(&mut self, name: &str) -> Result<TensorMut<'_, M>> {
        let tensor = self.get(name)?;
        Ok(TensorMut {
            owner: self,
            name: name.to_owned(),
            tensor,
        })
    }

    /// The module with its current tensors (assigned values, non-leaf copies). These are
    /// not the VarStore's tensors: use [`Mutable::restore`] to get those back.
    pub fn into_inner(self) -> M {
        self.module
    }

    /// The module with the tensors it had before [`Mutable::new`] (the VarStore's leaves,
    /// unchanged), every assignment and in-place change dropped.
    pub fn restore(mut self) -> M {
        exchange_by_name(&mut self.module, &mut self.originals);
        self.module
    }

    /// Converts every floating-point tensor of the module to `kind`, all or nothing:
    /// integer and bool tensors (token ids, masks) keep their dtype, as in PyTorch's
    /// `module.to(dtype)`. See [`Mutable::convert`] for what autograd sees.
    ///
    /// An error, changing nothing: `kind` is not floating point
    /// ([`PatchError::NotFloatingKind`], naming the tensors that require grad), or
    /// libtorch fails to convert a tensor.
    ///
    /// ```
    /// use tch::{nn, nn::Module, Device, Kind, Tensor};
    /// use tch_patch::{mutable::Mutable, PatchError};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let mut m = Mutable::new(nn::linear(vs.root(), 2, 1, Default::default()))?;
    /// m.to_kind(Kind::Double)?;
    /// assert_eq!(m.ws.kind(), Kind::Double);
    /// m.set("weight", &Tensor::ones([1, 2], (Kind::Double, Device::Cpu)))?; // fits now
    /// let ys = m.forward(&Tensor::ones([3, 2], (Kind::Double, Device::Cpu)));
    /// ys.sum(Kind::Double).backward(); // reaches the VarStore's float32 bias
    /// assert_eq!(vs.variables()["bias"].grad().kind(), Kind::Float);
    /// let refused = m.to_kind(Kind::Int64).unwrap_err();
    /// assert!(matches!(refused, PatchError::NotFloatingKind { .. }));
    /// assert_eq!(m.ws.kind(), Kind::Double);
    /// # Ok::<(), PatchError>(())
    /// ```
    pub fn to_kind(&mut self, kind: Kind) -> Result<()> {
        self.convert_to(Some(kind), None)
    }

    /// Moves every tensor of the module to `device`, all or nothing (the reference's
    /// `weight = weight.cuda()`, for the whole module at once). See [`Mutable::convert`]
    /// for what autograd sees.
    ///
    /// An error, changing nothing: a CUDA device this machine does not have
    /// ([`PatchError::UnavailableDevice`]), or libtorch fails to move a tensor.
    pub fn to_device(&mut self, device: Device) -> Result<()> {
        self.convert_to(None, Some(device))
    }

    /// Converts every floating-point tensor of the module to `kind` and moves every
    /// tensor to `device`, all or nothing: the errors of [`Mutable::to_kind`] and
    /// [`Mutable::to_device`] are checked before any tensor changes.
    ///
    /// The conversion is one more operation autograd records, like an assignment: each
    /// tensor of the module is replaced by its converted copy (tied names stay one
    /// tensor), which requires grad exactly when the tensor did and is a leaf exactly
    /// when it was (tensors that require grad stay non-leaves, so in-place changes keep
    /// working). Gradients flow back through the conversion to whatever the tensor came
    /// from, in that tensor's own dtype and device: the VarStore's leaves (still where
    /// and what they were, so an optimizer built from the VarStore still trains them) or
    /// a hypernetwork's output. [`Mutable::restore`] gives back those untouched leaves.
    /// To train the leaves themselves in another dtype, convert the VarStore
    /// (`VarStore::bfloat16`, `set_device`...) before [`Mutable::new`].
    ///
    /// ```
    /// use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
    /// use tch_patch::mutable::Mutable;
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let mut m = Mutable::new(nn::linear(vs.root(), 2, 1, Default::default()))?;
    /// m.convert(Kind::BFloat16, Device::Cpu)?;
    /// *m.get_mut("weight")? *= 2.0; // in place, still recorded
    /// let before = vs.variables()["weight"].copy();
    /// let mut sgd = nn::Sgd::default().build(&vs, 0.1).unwrap();
    /// let xs = Tensor::ones([4, 2], (Kind::BFloat16, Device::Cpu));
    /// sgd.backward_step(&m.forward(&xs).sum(Kind::Float));
    /// assert!(!vs.variables()["weight"].equal(&before)); // the float32 leaf trained
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn convert(&mut self, kind: Kind, device: Device) -> Result<()> {
        self.convert_to(Some(kind), Some(device))
    }

    /// [`Mutable::convert`] with either part left out.
    fn convert_to(&mut self, kind: Option<Kind>, device: Option<Device>) -> Result<()> {
        let current = named_tensors(&self.module);
        if let Some(kind) = kind.filter(|&kind| !is_floating(kind)) {
            return Err(PatchError::NotFloatingKind {
                kind,
                requires_grad: current
                    .iter()
                    .filter(|t| t.tensor.defined() && t.tensor.requires_grad())
                    .map(|t| t.name.clone())
                    .collect(),
            });
        }
        if let Some(device @ Device::Cuda(index)) = device {
            let cuda_devices = tch::Cuda::device_count();
            if index as i64 >= cuda_devices {
                return Err(PatchError::UnavailableDevice {
                    device,
                    cuda_devices,
                });
            }
        }
        // Every converted tensor first (one per tied group), then all handles at once.
        let leaders = tie_leaders(&current);
        let mut converted: HashMap<usize, Tensor> = HashMap::new();
        for (i, named) in current.iter().enumerate() {
            let tensor = &named.tensor;
            if leaders[i] != i || !tensor.defined() {
                continue;
            }
            let own_kind = tensor.f_kind().map_err(PatchError::torch(format!(
                "reading the dtype of `{}`",
                named.name
            )))?;
            let to_kind = kind.filter(|_| is_floating(own_kind)).unwrap_or(own_kind);
            let to_device = device.unwrap_or_else(|| tensor.device());
            if to_kind == own_kind && to_device == tensor.device() {
                continue;
            }
            let copy = tensor
                .f_to_device_(to_device, to_kind, false, false)
                .map_err(PatchError::torch(format!(
                    "converting `{}` to {} on {}",
                    named.name,
                    kind_name(to_kind),
                    device_name(to_device)
                )))?;
            converted.insert(i, copy);
        }
        let mut handles: HashMap<String, Tensor> = current
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                Some((t.name.clone(), converted.get(&leaders[i])?.shallow_clone()))
            })
            .collect();
        exchange_by_name(&mut self.module, &mut handles);
        Ok(())
    }

    /// Stores `value` under `name` and every name tied to it at creation.
    fn write(&mut self, name: &str, value: &Tensor) {
        let index = self.names.iter().position(|n| n == name);
        let mut handles: HashMap<String, Tensor> = match index {
            Some(index) => self
                .names
                .iter()
                .zip(&self.leaders)
                .filter(|(_, &leader)| leader == self.leaders[index])
                .map(|(n, _)| (n.clone(), value.shallow_clone()))
                .collect(),
            // A tensor that appeared after creation (through `DerefMut`): no known ties.
            None => HashMap::from([(name.to_owned(), value.shallow_clone())]),
        };
        exchange_by_name(&mut self.module, &mut handles);
    }
}

/// Whether `tensor` is a leaf that requires grad: libtorch refuses in-place ops on it.
fn is_grad_leaf(tensor: &Tensor) -> bool {
    tensor.defined() && tensor.requires_grad() && tensor.is_leaf()
}

/// Mutable access to one tensor of a [`Mutable`], from [`Mutable::get_mut`]. In-place ops
/// through it change the module's tensor directly; an assigned tensor is stored back when
/// the guard drops.
pub struct TensorMut<'m, M: Parameters> {
    owner: &'m mut Mutable<M>,
    name: String,
    tensor: Tensor,
}

impl<M: Parameters> Deref for TensorMut<'_, M> {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.tensor
    }
}

impl<M: Parameters> DerefMut for TensorMut<'_, M> {
    fn deref_mut(&mut self) -> &mut Tensor {
        &mut self.tensor
    }
}

impl<M: Parameters> Drop for TensorMut<'_, M> {
    fn drop(&mut self) {
        // Keep the invariant "requires grad implies non-leaf" for an assigned leaf.
        let value = if is_grad_leaf(&self.tensor) {
            self.tensor
                .f_mul_scalar(1)
                .unwrap_or_else(|_| self.tensor.shallow_clone())
        } else {
            self.tensor.shallow_clone()
        };
        self.owner.write(&self.name, &value);
    }
}

impl<M: Parameters> Deref for Mutable<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.module
    }
}

impl<M: Parameters> DerefMut for Mutable<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.module
    }
}

impl<M: Parameters> Parameters for Mutable<M> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.module.visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.module.visit_mut(visitor);
    }
}

impl<M: Parameters + nn::Module> nn::Module for Mutable<M> {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.module.forward(xs)
    }
}

impl<M: Parameters + fmt::Debug> fmt::Debug for Mutable<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutable")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn leaves_that_require_grad_become_non_leaves() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Mutable::new(nn::linear(vs.root(), 2, 2, Default::default())).unwrap();
        assert!(!m.ws.is_leaf() && m.ws.requires_grad());
        assert!(!m.bs.as_ref().unwrap().is_leaf());
        assert!(m.ws.equal(&vs.variables()["weight"]));
    }

    #[test]
    fn unknown_name_and_wrong_dtype_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Mutable::new(nn::linear(vs.root(), 2, 2, Default::default())).unwrap();
        let before = m.get("weight").unwrap();
        let err = m.get_mut("wieght").err().unwrap();
        assert!(matches!(err, PatchError::UnknownTensor { ref name, .. } if name == "wieght"));
        let double = Tensor::zeros([2, 2], (Kind::Double, Device::Cpu));
        assert!(m.set("weight", &double).is_err());
        assert!(m.ws.is_set_to(&before));
    }

    #[test]
    fn to_kind_keeps_ties_integer_tensors_and_the_var_store_leaves() {
        let vs = nn::VarStore::new(Device::Cpu);
        let first = nn::linear(vs.root() / "a", 2, 2, Default::default());
        let tied = nn::Linear {
            ws: first.ws.shallow_clone(),
            bs: None,
        };
        let mut m = Mutable::new(vec![first, tied]).unwrap();
        m.to_kind(Kind::BFloat16).unwrap();
        assert_eq!(m[0].ws.kind(), Kind::BFloat16);
        assert!(m[0].ws.is_set_to(&m[1].ws), "still one tensor");
        assert!(m[0].ws.requires_grad() && !m[0].ws.is_leaf());
        assert!(vs.variables().values().all(|v| v.kind() == Kind::Float));
        // Setting one tied name sets both, in the new dtype.
        let value = Tensor::ones([2, 2], (Kind::BFloat16, Device::Cpu));
        m.set("0.weight", &value).unwrap();
        assert!(m.get("1.weight").unwrap().equal(&value));
        // Converting to the dtype it has already is a no-op, not a copy.
        let before = m.get("0.weight").unwrap();
        m.convert(Kind::BFloat16, Device::Cpu).unwrap();
        assert!(m.get("0.weight").unwrap().is_set_to(&before));

        let ids = Tensor::from_slice(&[1i64, 2]);
        let floats = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let mut m = Mutable::new(vec![floats, ids.shallow_clone()]).unwrap();
        m.to_kind(Kind::Double).unwrap();
        assert_eq!(m[0].kind(), Kind::Double);
        assert!(m[1].is_set_to(&ids), "an int64 tensor is not converted");
    }

    #[test]
    fn a_non_floating_kind_or_a_missing_gpu_is_refused_before_any_change() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Mutable::new(nn::linear(vs.root(), 2, 1, Default::default())).unwrap();
        let before = m.get("weight").unwrap();
        let err = m.to_kind(Kind::Int).unwrap_err();
        assert!(
            matches!(&err, PatchError::NotFloatingKind { kind: Kind::Int, requires_grad }
            if requires_grad == &["weight", "bias"])
        );
        assert_eq!(
            err.to_string(),
            "cannot convert the module's floating-point tensors to int32: ask for a \
             floating-point dtype (float16, bfloat16, float32, float64); of its tensors, \
             `weight`, `bias` require grad"
        );
        let missing = Device::Cuda(tch::Cuda::device_count() as usize);
        let err = m.convert(Kind::Double, missing).unwrap_err();
        assert!(matches!(err, PatchError::UnavailableDevice { .. }), "{err}");
        assert!(m.ws.is_set_to(&before) && m.ws.kind() == Kind::Float);
    }

    #[test]
    fn assignment_through_the_guard_is_stored() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Mutable::new(nn::linear(vs.root(), 2, 2, Default::default())).unwrap();
        let leaf = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        *m.get_mut("weight").unwrap() = leaf.shallow_clone();
        assert!(m.ws.equal(&leaf));
        assert!(!m.ws.is_leaf()); // wrapped, so in-place ops keep working
        *m.get_mut("weight").unwrap() *= 3.0;
        assert!(m.ws.equal(&(&leaf * 3.0)));
    }
}
