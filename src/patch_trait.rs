//! The `Patch` trait: what every `#[patch]` struct is.
use crate::params::TensorRole;
use tch::Tensor;

/// A module that wraps a parent module by value and changes or extends it.
///
/// Implemented by `#[patch(from = Parent)]`; do not implement it by hand. The parent's
/// tensors are moved in, never copied: `base()` holds the very same tensors, and
/// `into_base()` gives the parent back with exactly its tensors and nothing the patch added.
///
/// # `Deref` to the parent, and which forward runs
/// A patch derefs to its parent (`Deref`, `AsRef`, `Borrow` and their `mut` forms), also
/// when it overrides its forward, since the parent's tensors *are* the patch's tensors: nothing is
/// transformed behind them. Code that asks for the parent type gets the parent's behaviour
/// on them, the way `Parent.forward(self, x)` calls the parent's forward in Python: a
/// function taking `&nn::Linear`, given `&patched`, runs `nn::Linear`'s forward. Code
/// generic over the module trait (`&impl Module`, `&dyn Module`) and method calls on the
/// patch itself (`patched.forward(xs)`) run the patch's forward.
/// ([`Parametrized`](crate::parametrize::Parametrized), whose module holds other tensors than its
/// forward uses, has no `Deref` for this reason.)
///
/// ```
/// use tch::{nn, nn::Module, Device, Tensor};
/// use tch_patch::{patch, Patch};
///
/// #[patch(from = nn::Linear)]
/// struct Traced {}
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let before = linear.ws.data_ptr();
/// let traced = Traced { base: linear };
/// assert_eq!(Traced::NAME, "Traced");
/// assert_eq!(traced.ws.data_ptr(), before); // the parent's field, through Deref
/// let xs = Tensor::ones([1, 3], (tch::Kind::Float, Device::Cpu));
/// assert!(traced.forward(&xs).equal(&traced.base().forward(&xs)));
///
/// fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
///     linear.forward(xs) // the parent's forward, on the patch's (= the parent's) tensors
/// }
/// assert!(takes_linear(&traced, &xs).equal(&traced.forward(&xs)));
/// let linear: nn::Linear = traced.into_base();
/// assert_eq!(linear.ws.data_ptr(), before);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a patch",
    label = "expected a `#[patch]` struct, found `{Self}`",
    note = "a patch is a struct marked `#[patch(from = Parent)]`, built from its parent: \
            `#[patch(from = nn::Linear)] struct Traced {{}}` then `Traced {{ base: linear }}`"
)]
pub trait Patch {
    /// The parent module this patch wraps.
    type Base;
    /// The patch's name: the struct's name, or `#[patch(name = "...")]`.
    const NAME: &'static str;
    /// Names and roles of the tensors the patch adds (its `#[param]` and `#[buffer]` fields).
    const ADDED_TENSORS: &'static [(&'static str, TensorRole)];
    /// The parent.
    fn base(&self) -> &Self::Base;
    /// The parent, mutably.
    fn base_mut(&mut self) -> &mut Self::Base;
    /// Undoes the patch: the parent with exactly its own tensors. Tensors the patch added
    /// are dropped here (see [`crate::unpatch`] to also take them out of a VarStore).
    fn into_base(self) -> Self::Base
    where
        Self: Sized;
    /// The tensors the patch adds, with their field names and roles (parent's not included).
    fn added_tensors(&self) -> Vec<(&'static str, &Tensor, TensorRole)>;
}

/// A patch with no field of its own, which can be viewed in place from its parent:
/// `&Parent` as `&Patch`, without moving or copying anything. This is the nearest Rust
/// has to assigning `module.__class__ = Subclass`.
///
/// # Safety
/// Implemented by `#[patch]` only for `#[repr(transparent)]` structs whose one field is
/// the parent; do not implement it by hand.
///
/// ```
/// use tch::{nn, nn::Module, Device, Tensor};
/// use tch_patch::{patch, patch_forward, PatchView};
///
/// #[patch(from = nn::Linear)]
/// struct Relu {}
///
/// #[patch_forward]
/// impl Relu {
///     fn forward(&self, xs: &Tensor) -> Tensor {
///         self.base.forward(xs).relu()
///     }
/// }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 4, 4, Default::default());
/// let xs = Tensor::randn([2, 4], (tch::Kind::Float, Device::Cpu));
/// let viewed: &Relu = Relu::view(&linear);
/// assert!(viewed.forward(&xs).equal(&linear.forward(&xs).relu()));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be viewed in place from its parent",
    label = "`PatchView` is only implemented for `#[patch]` structs with no field of their own",
    note = "only a patch without fields has its parent's exact layout; a patch with fields is \
            built by value instead: `{Self} {{ base: parent, .. }}`"
)]
pub unsafe trait PatchView: Patch {
    /// Views a parent as this patch, in place.
    fn view(base: &Self::Base) -> &Self;
    /// Views a parent as this patch, in place and mutably.
    fn view_mut(base: &mut Self::Base) -> &mut Self;
}
