//! What writing patches and patching models needs, in one import:
//!
//! ```
//! use tch_patch::prelude::*;
//! ```
//!
//! The attribute and derive macros, the traits every patch and model implements, slots
//! and layers, the patch-string entry point, and the error type. Everything else is in
//! its concept's module (`tch_patch::tree`, `tch_patch::adapter`, ...).
pub use crate::params::TensorRole;
pub use crate::registry::PatchArgs;
pub use crate::tree::ModuleTreeExt;
pub use crate::{
    apply_patch_string, delegatable, delegate_rest, named_tensors, patch, patch_forward,
    register_tensors, unpatch, Layer, ModuleTree, Parameters, Patch, PatchError, PatchView, Slot,
};
