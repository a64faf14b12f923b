//! Runtime of tch-patch. Use it through the `tch-patch` crate, which re-exports all of it
//! together with the macros.
#![warn(missing_docs)]

pub mod adapter;
mod checks;
mod dynamic;
mod error;
mod forward_checks;
mod functional;
mod load;
mod mutable;
mod names;
mod parametrize;
mod params;
mod patch;
pub mod patches;
pub mod registry;
mod safe_read;
mod state;
mod swap;
mod tied;
mod tree;
mod varstore;

pub use adapter::{
    apply_lora_adapter, load_model_adapter, read_adapter, read_peft_lora, save_adapter,
    save_model_adapter, save_peft_lora, Adapter, AdapterEntry, AdapterProblem,
};
pub use dynamic::{is_patched, patch_base_type_name, patch_name, patch_name_of, AnyModule};
pub use error::{PatchError, Result, TensorProblem};
pub use functional::{functional_call, Strictness};
pub use load::{load_safetensors, load_safetensors_with, LoadOptions, LoadReport};
pub use mutable::{Mutable, TensorMut};
pub use parametrize::{
    parametrize, sparsity_of, FakeQuantInt8, FnTransform, Granularity, MagnitudePrune,
    Parametrized, Removal, Transform, WeightNorm,
};
pub use params::{
    join_name, named_tensors, named_tensors_with_prefix, NamedTensor, Parameters, TensorRole,
    Visitor, VisitorMut,
};
pub use patch::{Patch, PatchView};
pub use patch_macros::{patch, patch_forward, ModuleTree, Parameters};
pub use registry::{apply_patch_string, parse_patches, PatchArgs, PatchSpec, Registry};
pub use state::{save_module, save_safetensors_atomic, SaveStep};
pub use swap::{replace_tensor, replace_tensors};
pub use tree::{
    apply_chain, diff, edit_distance, path_in, print_tree, short_type_name, AnyRule, AnySlot,
    ApplyReport, Change, DynLayer, Glob, Layer, ModuleTree, ModuleTreeExt, NodeRef, Nodes, Refused,
    Rule, Selector, Slot, SlotContent, SlotMut, SlotRef, SlotVisitorMut, TiePolicy, TreeDiff,
    TreeNode, TreeVisitor, UnpatchReport,
};
pub use varstore::{register_tensors, unpatch, unregistered_tensors};

/// What generated code refers to. Not public API: names here change without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dynamic::PatchTypeInfo;
    pub use crate::error::Result;
    pub use crate::forward_checks::{
        assert_declares_custom_forward, assert_has_custom_forward, assert_module_parent,
        assert_module_t_parent, assert_plain_patch, assert_train_mode_patch, DeclaresCustomForward,
        HasCustomForward, ModuleParent, ModuleTParent, NeedsTrainFlag, PlainPatch, TrainModePatch,
    };
    pub use crate::params::{Parameters, TensorRole, Visitor, VisitorMut};
    pub use crate::patch::{Patch, PatchView};
    pub use crate::registry;
    pub use crate::tree::{DynLayer, Layer, ModuleTree, SlotContent, SlotVisitorMut, TreeVisitor};
    pub use inventory;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::vec;
    pub use std::vec::Vec;
    pub use tch;
}
