//! Exchanging tensor handles: the one place where a module's tensors are put behind other
//! handles and back, O(1) per tensor, no storage touched. By name or by position through
//! `visit_mut` (functional calls, `Mutable`), or from `&self` for the length of a forward
//! ([`SwappedIn`], parametrizations).
//!
//! From `&self`: a tch `Tensor` is a pointer to a heap-allocated C++ `at::Tensor`, and an
//! `at::Tensor` is one `intrusive_ptr<TensorImpl>`: a single pointer (`TensorBase::impl_`,
//! its only data member). Exchanging the contents of two `at::Tensor` objects is C++'s
//! `std::swap` of two tensors: O(1), no storage touched, reference counts unchanged. The
//! Rust `Tensor` structs are not written, so shared Rust references to them stay valid;
//! only the C++ object behind them changes, as it does in any in-place libtorch call.
//! `Tensor` is not `Sync`, so every `&Tensor` to a module's handle lives on the current
//! thread: nothing can observe the swap concurrently. (Why not `visit_mut` there:
//! `nn::Module::forward` takes `&self`, so a forward has no `&mut` to the module; a
//! `RefCell` around the module would take away `Deref` to it and the lifetimes that
//! [`Parameters::visit`](crate::Parameters::visit) hands out.)
use crate::error::{PatchError, Result};
use crate::params::{Parameters, VisitorMut};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::OnceLock;
use tch::Tensor;

/// Exchanges the tensors behind two handles.
///
/// # Safety
/// Both handles must be live tch tensors, and no other thread may use either handle
/// during the call (guaranteed for `&Tensor` since `Tensor: !Sync`). The layout assumption
/// is checked by [`check_layout`] before the first swap.
unsafe fn exchange(a: &Tensor, b: &Tensor) {
    let a = a.as_ptr() as *mut *mut c_void;
    let b = b.as_ptr() as *mut *mut c_void;
    if a != b {
        // SAFETY: both point to the one-pointer `at::Tensor` objects of live handles (the
        // caller's contract), which `std::ptr::swap` may read and write; `a != b`.
        unsafe { std::ptr::swap(a, b) };
    }
}

/// Checks once per process, on two scalar tensors, that exchanging handles exchanges the
/// tensors they refer to and nothing else.
fn check_layout() -> Result<()> {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    let ok = *CHECKED.get_or_init(|| {
        let one = Tensor::from(1i64);
        let two = Tensor::from(2i64);
        let (one_ptr, two_ptr) = (one.data_ptr(), two.data_ptr());
        // SAFETY: two live tensors owned here, on this thread.
        unsafe { exchange(&one, &two) };
        let swapped = one.data_ptr() == two_ptr
            && two.data_ptr() == one_ptr
            && one.int64_value(&[]) == 2
            && two.int64_value(&[]) == 1;
        // SAFETY: as above; this puts them back.
        unsafe { exchange(&one, &two) };
        swapped && one.int64_value(&[]) == 1
    });
    if ok {
        Ok(())
    } else {
        Err(PatchError::UnsupportedLibtorch {
            what: "exchanging tensor handles (at::Tensor is not a single intrusive_ptr)",
        })
    }
}

/// Module handles with other tensors behind them, put back when dropped (also on unwind).
pub(crate) struct SwappedIn<'a> {
    /// Each module handle, with the handle that now holds the module's own tensor.
    slots: Vec<(&'a Tensor, Tensor)>,
}

impl<'a> SwappedIn<'a> {
    /// Puts `replacements[i]`'s tensor behind `slots[i]` until the guard is dropped.
    /// The handles must be distinct (each module tensor at most once).
    pub(crate) fn new(slots: Vec<&'a Tensor>, replacements: Vec<Tensor>) -> Result<Self> {
        check_layout()?;
        let mut guard = SwappedIn {
            slots: Vec::with_capacity(slots.len()),
        };
        for (slot, replacement) in slots.into_iter().zip(replacements) {
            // SAFETY: `slot` is a live handle of a `!Sync` tensor borrowed for 'a on this
            // thread; `replacement` is owned here. The guard swaps back before 'a ends.
            unsafe { exchange(slot, &replacement) };
            guard.slots.push((slot, replacement));
        }
        Ok(guard)
    }
}

impl Drop for SwappedIn<'_> {
    fn drop(&mut self) {
        for (slot, held) in self.slots.iter().rev() {
            // SAFETY: as in `new`: this exchange undoes that one.
            unsafe { exchange(slot, held) };
        }
    }
}

/// For each name in `handles`, exchanges the module's tensor handle with the map's: after
/// the call the module holds the map's handles and the map the module's former ones.
/// Calling it twice restores both sides.
pub(crate) fn exchange_by_name<M: Parameters + ?Sized>(
    module: &mut M,
    handles: &mut HashMap<String, Tensor>,
) {
    let mut exchange = |name: &str, tensor: &mut Tensor, _| {
        if let Some(handle) = handles.get_mut(name) {
            std::mem::swap(tensor, handle);
        }
    };
    module.visit_mut(&mut VisitorMut::new("", &mut exchange));
}

/// A handle to put in place of the module's own: where the module's walk reaches the tensor
/// (its position and full name), and the handle.
pub(crate) struct Placed {
    pub(crate) position: usize,
    pub(crate) name: String,
    pub(crate) handle: Tensor,
}

/// Swaps each handle with the module's tensor at its position in the walk (the walk's
/// order is the one `named_tensors` saw: the module is borrowed all along). Positions
/// spare the walk a lookup by name per tensor of the model, twice per call; the name is
/// still compared, so a `Parameters` impl whose `visit` and `visit_mut` disagree leaves
/// the tensor alone instead of swapping the wrong one.
fn exchange_by_position<M: Parameters + ?Sized>(module: &mut M, placed: &mut [Placed]) {
    let mut pending = placed.iter_mut().peekable();
    let mut position = 0;
    let mut exchange = |name: &str, tensor: &mut Tensor, _| {
        if let Some(next) = pending.next_if(|p| p.position == position) {
            if next.name == name {
                std::mem::swap(tensor, &mut next.handle);
            }
        }
        position += 1;
    };
    module.visit_mut(&mut VisitorMut::new("", &mut exchange));
}

/// A module with other handles in place of some of its own (see [`exchange_by_position`]),
/// which come back when this is dropped, also when a caller's closure panics.
pub(crate) struct PlacedIn<'m, M: Parameters + ?Sized> {
    module: &'m mut M,
    saved: Vec<Placed>,
}

impl<'m, M: Parameters + ?Sized> PlacedIn<'m, M> {
    /// Puts each handle of `placed` (in walk order) in the module until the guard drops.
    pub(crate) fn new(module: &'m mut M, mut placed: Vec<Placed>) -> Self {
        exchange_by_position(module, &mut placed);
        PlacedIn {
            module,
            saved: placed,
        }
    }

    /// The module, with the placed handles in it.
    pub(crate) fn module(&self) -> &M {
        self.module
    }
}

impl<M: Parameters + ?Sized> Drop for PlacedIn<'_, M> {
    fn drop(&mut self) {
        exchange_by_position(self.module, &mut self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn swaps_for_the_guards_lifetime_and_back() {
        let module_tensor = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        let replacement = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let (own, other) = (module_tensor.data_ptr(), replacement.data_ptr());
        {
            let _guard = SwappedIn::new(vec![&module_tensor], vec![replacement]).unwrap();
            assert_eq!(module_tensor.data_ptr(), other);
            assert_eq!(module_tensor.size(), [3]);
        }
        assert_eq!(module_tensor.data_ptr(), own);
        assert!(module_tensor.equal(&Tensor::ones([2, 2], (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn puts_back_on_unwind() {
        let module_tensor = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let own = module_tensor.data_ptr();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let replacement = Tensor::zeros([2], (Kind::Float, Device::Cpu));
            let _guard = SwappedIn::new(vec![&module_tensor], vec![replacement]).unwrap();
            panic!("forward failed");
        }));
        assert!(result.is_err());
        assert_eq!(module_tensor.data_ptr(), own);
    }
}
