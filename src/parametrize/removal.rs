//! Writing through a parametrization: assigning a value, and removing the
//! parametrizations with or without baking the transformed values into the originals.
use super::nesting;
use super::parametrized::{check_same_layout, require_defined, Parametrized};
use super::registration;
use crate::error::{PatchError, Result};
use crate::names::{kind_name, shape_text};
use crate::params::Parameters;
use crate::tensor_fit::has_internal_overlap;
use tch::{nn, Tensor};

/// What [`Parametrized::remove`] does with the originals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Writes each transformed value into its original tensor, in place: the same tensor
    /// (same `data_ptr`, same VarStore entry, same optimizer state) now holds what the
    /// forward saw. PyTorch's `remove_parametrizations(leave_parametrized=True)`.
    ///
    /// A `Parametrized` inside the module (an inner `parametrize`) that transforms the same
    /// tensor loses those transforms: the value written already includes them, so the
    /// module returned computes what this one did. Its other parametrizations stay.
    Bake,
    /// Leaves the originals as they are: the module computes what it did before it was
    /// parametrized (a `Parametrized` inside it keeps its transforms). Never fails.
    KeepOriginal,
}

impl<M: Parameters> Parametrized<M> {
    /// Removes every parametrization and returns the plain module, with its originals
    /// baked or kept as `how` says. The transforms' own tensors are dropped, but stay in
    /// a VarStore they were registered in: see [`remove_from`](Parametrized::remove_from).
    ///
    /// Baking computes every transformed value (under `no_grad`) and checks it before the
    /// first write, so an error writes nothing; the module is then dropped with `self`.
    /// On a nested parametrization, baking the outer one writes the whole composition
    /// (see [`Removal::Bake`]).
    ///
    /// ```
    /// use tch::{nn, Device, Tensor};
    /// use tch_patch::{parametrize::parametrize, parametrize::Removal};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = nn::linear(vs.root(), 2, 2, Default::default());
    /// let ptr = linear.ws.data_ptr();
    /// let halved = parametrize(linear, "weight", |w: &Tensor| w / 2)?;
    /// let expected = halved.transformed("weight")?.detach();
    /// let linear = halved.remove(Removal::Bake)?;
    /// assert_eq!(linear.ws.data_ptr(), ptr);
    /// assert!(linear.ws.equal(&expected));
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn remove(mut self, how: Removal) -> Result<M> {
        if how == Removal::Bake {
            self.bake()?;
        }
        Ok(self.module)
    }

    /// Like [`remove`](Parametrized::remove), and takes the transforms' own tensors (a
    /// weight norm's `weight_g`, a pruning mask) out of `vs`, so that a checkpoint of `vs`
    /// is again the plain module's. Nothing is taken out when baking fails.
    pub fn remove_from(mut self, vs: &nn::VarStore, how: Removal) -> Result<M> {
        let mut added = self.transform_tensors();
        if how == Removal::Bake {
            added.extend(self.bake()?);
        }
        registration::forget(vs, &added);
        Ok(self.module)
    }

    /// Writes the transformed values into the originals in place, all or none, then drops
    /// the transforms of those tensors from the parametrizations inside the module, which
    /// the values include. Returns handles to the dropped transforms' own tensors.
    fn bake(&mut self) -> Result<Vec<Tensor>> {
        self.write_transformed()?;
        let names: Vec<String> = self.stacks.iter().map(|s| s.name.clone()).collect();
        Ok(self.drop_inner_stacks(&names))
    }

    /// Writes the transformed values into the originals in place, all or none.
    fn write_transformed(&self) -> Result<()> {
        let handles = self.stack_handles()?;
        let mut values = Vec::with_capacity(handles.len());
        for (index, (stack, original)) in self.stacks.iter().zip(&handles).enumerate() {
            let value = tch::no_grad(|| stack.run(&self.stack_input(index)?))?;
            let transforms = stack.transforms.iter().map(|t| t.name());
            let names = transforms.collect::<Vec<_>>().join(" then ");
            check_same_layout(&names, &stack.name, original, &value)?;
            check_writable(&stack.name, original)?;
            values.push(value);
        }
        for ((stack, original), value) in self.stacks.iter().zip(handles).zip(values) {
            write_in_place(&stack.name, original, &value)?;
        }
        Ok(())
    }

    /// Assigns `value` to the parametrized tensor `name`: the original becomes the
    /// transforms' right inverses applied to `value` (last transform first), written in
    /// place, so that the forward then sees `value` (for values the transforms can
    /// produce). PyTorch's `module.weight = value` on a parametrized module. When a
    /// `Parametrized` inside the module transforms `name` too, its right inverses follow
    /// (the outermost transform's first, the innermost's last).
    ///
    /// Errors, with nothing written: `name` is not parametrized, a transform has no right
    /// inverse, or the result has another shape or kind than the original.
    ///
    /// ```
    /// use tch::{nn, Device, Tensor};
    /// use tch_patch::{parametrize::parametrize, parametrize::FnTransform};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = nn::linear(vs.root(), 2, 2, Default::default());
    /// let add1 = FnTransform::new("add1", |w: &Tensor| w + 1).with_right_inverse(|v: &Tensor| v - 1);
    /// let mut shifted = parametrize(linear, "weight", add1)?;
    /// let value = Tensor::ones([2, 2], (tch::Kind::Float, Device::Cpu));
    /// shifted.assign("weight", &value)?;
    /// assert!(shifted.transformed("weight")?.equal(&value));
    /// assert!(shifted.original("weight")?.equal(&value.zeros_like()));
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn assign(&mut self, name: &str, value: &Tensor) -> Result<()> {
        self.assign_through(name, value)
    }

    /// [`assign`](Parametrized::assign); from `&self`, as it writes in place.
    pub(super) fn assign_through(&self, name: &str, value: &Tensor) -> Result<()> {
        let index = self.stack_index(name)?;
        let original = self.original(name)?;
        let operation = format!("assign `{name}`");
        require_defined(&operation, name, value)?;
        let inverse = tch::no_grad(|| -> Result<Tensor> {
            let mut inverse = value.shallow_clone();
            for transform in self.stacks[index].transforms.iter().rev() {
                inverse = transform.right_inverse(&inverse)?;
            }
            Ok(inverse)
        })?;
        require_defined(&operation, name, &inverse)?;
        if let Some((inner, name)) = nesting::find(&self.inner(), name) {
            return self.with_first_in_place(|| inner.assign_value(name, &inverse));
        }
        if inverse.size() != original.size() {
            return Err(PatchError::ShapeMismatch {
                name: name.to_owned(),
                actual: inverse.size(),
                expected: format!("{}, the original's shape", shape_text(&original.size())),
            });
        }
        let (actual, expected) = (kind_of(name, &inverse)?, kind_of(name, &original)?);
        if actual != expected {
            return Err(PatchError::KindMismatch {
                name: name.to_owned(),
                actual,
                expected: format!("{}, the original's dtype", kind_name(expected)),
            });
        }
        check_writable(name, &original)?;
        write_in_place(name, &original, &inverse)
    }
}

/// Copies `value` into the tensor behind `original`, under `no_grad`: its storage, not
/// its handle, so every holder of the tensor sees the new values.
fn write_in_place(name: &str, original: &Tensor, value: &Tensor) -> Result<()> {
    let mut target = original.shallow_clone();
    tch::no_grad(|| target.f_copy_(value))
        .map_err(PatchError::torch(format!("writing into `{name}`")))
}

fn kind_of(name: &str, tensor: &Tensor) -> Result<tch::Kind> {
    tensor
        .f_kind()
        .map_err(PatchError::torch(format!("reading the dtype of `{name}`")))
}

/// An error when the original cannot be written in place (an expanded view).
fn check_writable(name: &str, original: &Tensor) -> Result<()> {
    if !has_internal_overlap(original) {
        return Ok(());
    }
    Err(PatchError::InvalidTensors {
        operation: format!("write into `{name}`"),
        problems: vec![crate::error::TensorProblem::NotWritable {
            name: name.to_owned(),
        }],
    })
}
