//! What a `Parametrized` module computes: the transformed tensors, the forward that sees
//! them, and the `cached` scope.
use super::nesting;
use super::parametrized::Parametrized;
use crate::error::Result;
use crate::handles::SwappedIn;
use crate::params::Parameters;
use std::cell::RefCell;
use tch::{nn, Tensor};

/// Stack indices, each with the module's handle of its tensor.
type Stacks<'a> = Vec<(usize, &'a Tensor)>;

impl<M: Parameters> Parametrized<M> {
    /// A handle to the original tensor `name` (the module's own, not a copy), also from
    /// inside a forward. Errors when `name` is not parametrized.
    pub fn original(&self, name: &str) -> Result<Tensor> {
        let index = self.stack_index(name)?;
        Ok(self.originals()?.swap_remove(index))
    }

    /// The tensor the module's forward sees for `name`: its transforms applied in order
    /// to the original (or, when a `Parametrized` inside the module transforms `name` too,
    /// to what that one computes), with gradients flowing to the original (`module.weight`
    /// of a PyTorch parametrization). Computed once per [`cached`](Parametrized::cached)
    /// scope.
    pub fn transformed(&self, name: &str) -> Result<Tensor> {
        let index = self.stack_index(name)?;
        self.transformed_at(index, &self.stack_input(index)?)
    }

    /// What stack `index` transforms: what a `Parametrized` inside the module computes for
    /// its name, or else the original.
    pub(super) fn stack_input(&self, index: usize) -> Result<Tensor> {
        match nesting::find(&self.inner(), &self.stacks[index].name) {
            Some((inner, name)) => self.with_first_in_place(|| inner.effective(name)),
            None => Ok(self.originals()?.swap_remove(index)),
        }
    }

    /// Runs `f` on the module while its parametrized tensors are the transformed ones, and
    /// puts the originals back afterwards (also if `f` panics). This is what forward does;
    /// use it for any other method of the module, or to hand the module to a function that
    /// wants `&M` (`Parametrized` has no `Deref` to it: the module outside of this scope
    /// has the untransformed tensors). Within `f` the transformed tensors are not
    /// recomputed by a nested call, and a `Parametrized` inside the module (an inner
    /// `parametrize`) sees them too.
    ///
    /// ```
    /// use tch::{nn, Device, Tensor};
    /// use tch_patch::parametrize::parametrize;
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = nn::linear(vs.root(), 2, 2, Default::default());
    /// let zeroed = parametrize(linear, "weight", |w: &Tensor| w.zeros_like())?;
    /// let seen = zeroed.with_transformed(|linear| linear.ws.abs().sum(None).double_value(&[]))?;
    /// assert_eq!(seen, 0.0);
    /// let original = zeroed.original_module();
    /// assert!(original.ws.abs().sum(None).double_value(&[]) > 0.0); // the original again
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn with_transformed<R>(&self, f: impl FnOnce(&M) -> R) -> Result<R> {
        if self.swapped_out.borrow().is_some() {
            return Ok(f(&self.module));
        }
        let (handles, inner) = self.stack_handles_and_inner()?;
        let originals = handles.iter().map(|h| h.shallow_clone()).collect();
        let (first, on_top) = self.split(handles, &inner);
        let _mark = Mark::set(&self.swapped_out, originals);
        // First this one's tensors that nothing inside the module transforms (the inner
        // parametrizations' own tensors, such as a mask, among them: they then see them),
        // then the inner parametrizations put theirs in place, then this one's transforms
        // of what they computed go on top.
        let _first = self.swap_in(&first)?;
        let mut f = Some(f);
        let mut out = None;
        nesting::enter_all(&inner, &mut || {
            if let Some(f) = f.take() {
                out = Some(self.swap_in(&on_top).map(|_on_top| f(&self.module)));
            }
        })?;
        out.expect("enter_all runs its closure once when it returns Ok")
    }

    /// Runs `f` with this one's transformed tensors that nothing inside the module
    /// transforms in place (they are, inside a forward): the state in which a
    /// parametrization inside the module computes what this one's other transforms get.
    pub(super) fn with_first_in_place<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        if self.swapped_out.borrow().is_some() {
            return f();
        }
        let (handles, inner) = self.stack_handles_and_inner()?;
        let (first, _) = self.split(handles, &inner);
        let _first = self.swap_in(&first)?;
        f()
    }

    /// The stacks with the module's handle of each, in two groups: those on tensors that no
    /// parametrization inside the module transforms, and those that apply on top of one.
    fn split<'a>(
        &self,
        handles: Vec<&'a Tensor>,
        inner: &nesting::InnerAt<'_>,
    ) -> (Stacks<'a>, Stacks<'a>) {
        handles
            .into_iter()
            .enumerate()
            .partition(|(index, _)| nesting::find(inner, &self.stacks[*index].name).is_none())
    }

    /// Puts each stack's transform of what its handle holds behind the handle, until the
    /// guard is dropped.
    fn swap_in<'a>(&self, stacks: &[(usize, &'a Tensor)]) -> Result<SwappedIn<'a>> {
        let values = stacks
            .iter()
            .map(|&(index, held)| self.transformed_at(index, held))
            .collect::<Result<Vec<_>>>()?;
        SwappedIn::new(stacks.iter().map(|&(_, handle)| handle).collect(), values)
    }

    /// Opens a scope in which each transformed tensor is computed once and reused by every
    /// forward and [`transformed`](Parametrized::transformed) call (PyTorch's
    /// `parametrize.cached()`): for several forwards with the same weights, e.g. the time
    /// steps of a recurrent loop, or inference. The cache is dropped when `f` returns.
    ///
    /// Values are not recomputed inside the scope, so an original changed in place there
    /// (an optimizer step) is not seen until the next scope; and a second `backward`
    /// through the same cached tensor needs `keep_graph`, as in PyTorch. Nested scopes
    /// share the outer one's cache. The scope is also one of every `Parametrized` inside the
    /// module (an inner `parametrize`), as PyTorch's scope covers every parametrization.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use tch::{nn, nn::Module, Device, Tensor};
    /// use tch_patch::parametrize::parametrize;
    ///
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let counter = calls.clone();
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = nn::linear(vs.root(), 2, 2, Default::default());
    /// let counted = parametrize(linear, "weight", move |w: &Tensor| {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    ///     w * 2
    /// })?;
    /// calls.store(0, Ordering::SeqCst);
    /// let xs = Tensor::ones([1, 2], (tch::Kind::Float, Device::Cpu));
    /// counted.cached(|m| {
    ///     for _ in 0..5 {
    ///         m.forward(&xs);
    ///     }
    /// });
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn cached<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        if self.cache.borrow().is_some() {
            return f(self);
        }
        let slots = self.stacks.iter().map(|_| None).collect();
        let _open = Mark::set(&self.cache, slots);
        let mut f = Some(f);
        let mut out = None;
        nesting::cached_all(&self.inner(), &mut || {
            if let Some(f) = f.take() {
                out = Some(f(self));
            }
        });
        out.expect("cached_all runs its closure once")
    }

    /// Whether a [`cached`](Parametrized::cached) scope is open.
    pub fn is_cached(&self) -> bool {
        self.cache.borrow().is_some()
    }

    /// Handles to the originals, one per stack: the module's handles, or while they hold
    /// the transformed tensors, the originals put aside.
    fn originals(&self) -> Result<Vec<Tensor>> {
        if let Some(originals) = self.swapped_out.borrow().as_ref() {
            return Ok(originals.iter().map(|t| t.shallow_clone()).collect());
        }
        let handles = self.stack_handles()?;
        Ok(handles.into_iter().map(|h| h.shallow_clone()).collect())
    }

    /// Stack `index` applied to `original`, from the cache when one is open. Always a
    /// fresh handle: the caller may put it behind a module handle.
    fn transformed_at(&self, index: usize, original: &Tensor) -> Result<Tensor> {
        if let Some(Some(hit)) = self.cache.borrow().as_ref().map(|c| &c[index]) {
            return Ok(hit.shallow_clone());
        }
        let value = self.stacks[index].run(original)?;
        if let Some(cache) = self.cache.borrow_mut().as_mut() {
            cache[index] = Some(value.shallow_clone());
        }
        Ok(value)
    }
}

impl<M: Parameters + nn::Module> Parametrized<M> {
    /// The module's forward, seeing the transformed tensors. An error when a transform
    /// fails or a parametrized tensor is no longer in the module.
    pub fn try_forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.with_transformed(|module| module.forward(xs))
    }
}

impl<M: Parameters + nn::ModuleT> Parametrized<M> {
    /// The module's `forward_t`, seeing the transformed tensors (for modules such as
    /// `nn::BatchNorm` that implement only `nn::ModuleT`).
    pub fn try_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.with_transformed(|module| module.forward_t(xs, train))
    }
}

/// Forward panics with the error's message where [`Parametrized::try_forward`] returns it,
/// as tch's layers panic on a bad input.
impl<M: Parameters + nn::Module> nn::Module for Parametrized<M> {
    fn forward(&self, xs: &Tensor) -> Tensor {
        match self.try_forward(xs) {
            Ok(ys) => ys,
            Err(error) => panic!("forward of a parametrized module: {error}"),
        }
    }
}

/// Sets a `RefCell<Option<T>>` for the guard's lifetime and clears it when dropped.
struct Mark<'a, T>(&'a RefCell<Option<T>>);

impl<'a, T> Mark<'a, T> {
    fn set(cell: &'a RefCell<Option<T>>, value: T) -> Self {
        *cell.borrow_mut() = Some(value);
        Mark(cell)
    }
}

impl<T> Drop for Mark<'_, T> {
    fn drop(&mut self) {
        *self.0.borrow_mut() = None;
    }
}

#[cfg(test)]
mod tests {
    use crate::{parametrize::parametrize, parametrize::Parametrized};
    use tch::{nn, nn::Module, Device, Kind, Tensor};

    fn doubled(vs: &nn::VarStore) -> Parametrized<nn::Linear> {
        let linear = nn::linear(vs.root(), 3, 3, Default::default());
        parametrize(linear, "weight", |w: &Tensor| w * 2).unwrap()
    }

    #[test]
    fn nested_calls_do_not_transform_twice() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = doubled(&vs);
        let w = p.original_module().ws.copy();
        let (outer, inner) = p
            .with_transformed(|m| {
                let inner = p.with_transformed(|m| m.ws.copy()).unwrap();
                (m.ws.copy(), inner)
            })
            .unwrap();
        assert!(outer.equal(&(&w * 2)));
        assert!(inner.equal(&(&w * 2)));
    }

    #[test]
    fn original_and_transformed_are_right_inside_a_forward() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = doubled(&vs);
        let w = p.original_module().ws.copy();
        let (original, transformed, seen) = p
            .with_transformed(|m| {
                let original = p.original("weight").unwrap();
                let transformed = p.transformed("weight").unwrap();
                (original, transformed, m.ws.shallow_clone())
            })
            .unwrap();
        assert!(original.equal(&w) && original.is_set_to(&p.original_module().ws));
        assert!(transformed.equal(&(&w * 2)));
        assert!(seen.equal(&(&w * 2)));
        assert!(p.original_module().ws.equal(&w));
    }

    #[test]
    fn a_replaced_module_tensor_is_what_the_transforms_see_next() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut p = doubled(&vs);
        p.original_module_mut().ws = Tensor::ones([3, 3], (Kind::Float, Device::Cpu));
        let xs = Tensor::eye(3, (Kind::Float, Device::Cpu));
        let expected = xs.linear(
            &Tensor::full([3, 3], 2.0, (Kind::Float, Device::Cpu)),
            p.original_module().bs.as_ref(),
        );
        assert!(p.forward(&xs).equal(&expected));
    }

    #[test]
    fn a_parametrized_tensor_taken_out_of_the_module_is_an_error_in_try_forward() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 3, 3, Default::default());
        let mut p = parametrize(linear, "bias", |b: &Tensor| b * 2).unwrap();
        p.original_module_mut().bs = None;
        let error = p
            .try_forward(&Tensor::ones([1, 3], (Kind::Float, Device::Cpu)))
            .unwrap_err();
        assert!(
            matches!(error, crate::PatchError::UnknownTensor { ref name, .. } if name == "bias")
        );
    }
}
