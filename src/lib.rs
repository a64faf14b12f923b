//! # tch-patch
//!
//! Patch an existing [`tch`] module at run time, the Rust way: a new forward, added
//! trainable parameters and buffers, and an undo, without copying a single tensor.
//!
//! PyTorch users patch a module by assigning `module.__class__ = Subclass`: same object,
//! same tensors, a new `forward`, new attributes, `isinstance` still true. Rust has no class
//! swap; [`#[patch]`](macro@patch) gives the same result with types:
//!
//! * the patch takes its parent **by value** (tensor handles move; no storage is copied)
//!   into a generated `base` field, and `Deref`s to it, so every field and method of the
//!   parent is still there (`patched.ws`);
//! * it keeps every parameter name of the parent ([`Parameters`]) and adds its own
//!   `#[param]` / `#[buffer]` tensors after them;
//! * it implements the parent's module trait (`nn::Module` or `nn::ModuleT`), delegating
//!   to the parent bit for bit unless a [`#[patch_forward]`](macro@patch_forward) block
//!   overrides the forward;
//! * it is undone by [`Patch::into_base`] (or [`unpatch`], which also removes the added
//!   tensors from the VarStore);
//! * a patch without fields can view a `&Parent` in place as `&Patch` ([`PatchView`]).
//!
//! ```
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//! use tch_patch::prelude::*;
//!
//! /// A linear layer whose output is scaled by a trainable per-feature gain.
//! #[patch(from = nn::Linear)]
//! struct Gained {
//!     #[param]
//!     gain: Tensor,
//! }
//!
//! #[patch_forward]
//! impl Gained {
//!     fn forward(&self, xs: &Tensor) -> Tensor {
//!         self.base.forward(xs) * &self.gain
//!     }
//! }
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let path = vs.root() / "fc";
//! let linear = nn::linear(&path, 4, 3, Default::default());
//! let ones = Tensor::ones([3], (Kind::Float, Device::Cpu));
//! let [gain] = register_tensors(&path, [("gain", ones, TensorRole::Param)])?;
//! let gained = Gained { base: linear, gain };
//!
//! let xs = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
//! assert!(gained.forward(&xs).equal(&gained.base().forward(&xs)));
//! let names: Vec<_> = tch_patch::named_tensors(&gained).into_iter().map(|t| t.name).collect();
//! assert_eq!(names, ["weight", "bias", "gain"]); // the parent's names, then the patch's
//! assert!(vs.variables().contains_key("fc.gain")); // trained by an optimizer on `vs`
//! # Ok::<(), tch_patch::PatchError>(())
//! ```
//!
//! ## Running binaries that use tch
//! tch links libtorch dynamically. Either set `LD_LIBRARY_PATH` to libtorch's `lib` folder,
//! or copy this crate's `build.rs` (an rpath from torch-sys's `DEP_TCH_LIBTORCH_LIB`) into
//! your package and add `torch-sys` as a direct dependency. See the README.
#![warn(missing_docs)]

// Generated code names this crate `::tch_patch` (through `__private`); this makes that
// path work inside the crate too, so its own patches need no `crate = ...`.
extern crate self as tch_patch;

pub mod adapter;
pub mod dynamic;
mod error;
pub mod export;
mod forward_checks;
pub mod functional;
mod handles;
pub mod layers;
pub mod load;
pub mod mutable;
mod names;
mod nearest;
pub mod parametrize;
pub mod params;
mod patch_trait;
pub mod patches;
pub mod peft;
pub mod prelude;
pub mod registry;
mod safe_read;
pub mod save;
pub mod search;
pub mod swap;
mod tensor_fit;
mod tensor_plan;
mod tied;
pub mod tree;
mod varstore;

pub use error::{PatchError, Result};
pub use params::parameters::{named_tensors, Parameters};
pub use patch_macros::{delegatable, delegate_rest};
pub use patch_macros::{patch, patch_forward, ModuleTree, Parameters};
pub use patch_trait::{Patch, PatchView};
pub use registry::apply::apply_patch_string;
pub use tree::layer::Layer;
pub use tree::slot::Slot;
pub use tree::visit::ModuleTree;
pub use varstore::{register_tensors, unpatch};

/// What generated code refers to. Not public API: names here change without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dynamic::PatchTypeInfo;
    pub use crate::error::Result;
    pub use crate::forward_checks::{
        assert_module_parent, assert_module_patch, assert_module_t_parent, assert_module_t_patch,
        DelegateForward, DelegateForwardT, ModuleParent, ModulePatch, ModuleTParent, ModuleTPatch,
        NeedsTrainFlag,
    };
    pub use crate::params::{TensorRole, Visitor, VisitorMut};
    pub use crate::patch_trait::{Patch, PatchView};
    pub use crate::registry;
    pub use crate::tree::hyper::{hyper_of, hyper_source, no_hyper, no_hyper_source};
    pub use crate::tree::rebuild::{
        no_rebuilder, no_root_rebuilder, rebuilder_of, root_rebuilder_of, DynRebuild, RebuildRoot,
    };
    pub use crate::tree::HyperList;
    pub use crate::tree::{DynLayer, SlotContent, SlotVisitorMut, TreeVisitor};
    pub use crate::Parameters;
    pub use crate::{Layer, ModuleTree};
    pub use inventory;
    pub use patch_macros::__delegate_impl as delegate_impl;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::vec;
    pub use std::vec::Vec;
    pub use tch;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The guide of `#[delegatable]` (in the macro crate's docs), compiled and run here.
#[cfg(doctest)]
#[doc = include_str!("../patch-macros/src/delegate/guide.md")]
struct DelegateGuideDoctests;
