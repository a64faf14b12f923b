//! Compile-time checks behind `#[patch]` and `#[patch_forward]`. Each trait exists to
//! carry a message that tells the user what to write when a bound is not met.
use tch::nn;

/// The parent of a patch whose forward does not depend on train mode.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `nn::Module`, so a patch of it has no forward to delegate to",
    label = "the parent named in `#[patch(from = ...)]`",
    note = "if its forward takes a train flag (it implements `nn::ModuleT`, like `nn::BatchNorm`), write `#[patch(from = ..., module_t)]`",
    note = "if it is not a module at all, `from` must name the module type the patch wraps"
)]
pub trait ModuleParent: nn::Module {}
#[diagnostic::do_not_recommend]
impl<T: nn::Module> ModuleParent for T {}

/// The parent of a `module_t` patch.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `nn::ModuleT`, so a `module_t` patch of it has no forward to delegate to",
    label = "the parent named in `#[patch(from = ...)]`",
    note = "`from` must name the module type the patch wraps"
)]
pub trait ModuleTParent: nn::ModuleT {}
#[diagnostic::do_not_recommend]
impl<T: nn::ModuleT> ModuleTParent for T {}

/// The forward of a patch that does not override it: delegates to the parent. `#[patch]`
/// implements it for the patch, and its `nn::Module::forward` calls
/// `self.__tch_patch_forward(xs)` with this trait in scope; a `#[patch_forward]` block
/// writes an inherent method of the same name, which method resolution picks over this
/// trait's, so the override needs no flag on the struct.
#[doc(hidden)]
pub trait DelegateForward {
    /// The parent's forward.
    fn __tch_patch_forward(&self, xs: &tch::Tensor) -> tch::Tensor;
}

/// [`DelegateForward`] for a `module_t` patch: the parent's `forward_t`.
#[doc(hidden)]
pub trait DelegateForwardT {
    /// The parent's forward_t.
    fn __tch_patch_forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor;
}

/// Written by `#[patch]` without `module_t`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a `module_t` patch: its forward depends on train mode",
    label = "override `fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor` instead",
    note = "or remove `module_t` from `#[patch(...)]` if the parent implements `nn::Module`"
)]
pub trait ModulePatch {}

/// Written by `#[patch(module_t)]`.
#[diagnostic::on_unimplemented(
    message = "`forward_t` overrides a train-dependent forward, but `{Self}` is not a `module_t` patch",
    label = "override `fn forward(&self, xs: &Tensor) -> Tensor` instead",
    note = "or add `module_t` to `#[patch(...)]` when the parent implements only `nn::ModuleT`"
)]
pub trait ModuleTPatch {}

/// Never implemented: the bound of the hidden `forward(xs)` that a `module_t` patch gets, so
/// that `patch.forward(&xs)` is a compile error saying what to call, instead of reaching the
/// parent's `nn::Module::forward` through `Deref` (which would skip the patch and its train
/// flag, silently).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `forward(xs)`: it is a `module_t` patch, whose forward takes the train flag",
    label = "call `forward_t(xs, train)` (or `xs.apply_t(&patch, train)`) instead",
    note = "`forward(xs)` would be the parent's forward, through `Deref`: the patch itself (dropout, a LoRA update...) would be skipped"
)]
pub trait NeedsTrainFlag: nn::ModuleT {}

/// Compile-time assertion used by generated code: reports a parent that is not a module
/// at `from = ...` with [`ModuleParent`]'s message.
pub fn assert_module_parent<T: ModuleParent + ?Sized>() {}
/// Compile-time assertion used by generated code, for `module_t` patches.
pub fn assert_module_t_parent<T: ModuleTParent + ?Sized>() {}
/// Compile-time assertion used by generated code.
pub fn assert_module_patch<T: ModulePatch + ?Sized>() {}
/// Compile-time assertion used by generated code.
pub fn assert_module_t_patch<T: ModuleTPatch + ?Sized>() {}
