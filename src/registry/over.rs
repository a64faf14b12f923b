//! `patch_over!`: a registered patch applied to the slots of more layer types.

/// Lets a registered patch that is generic over its base (the built-in `lora`,
/// `bias_only`, `dropout_before`, or a crate's own `#[patch_args(patch = P<_>, over(...))]`)
/// apply from patch strings and adapter folders to the slots of more layer types than its
/// `over(...)` names: typically a layer type of another crate, such as a model crate's
/// `Conv1D`, which implements what the patch needs (`LinearLike` for the built-in ones).
///
/// `tch_patch::patch_over!(Config, patch = Patch<_>, over(Type, ...));` at a module's top
/// level, the same words as `#[patch_args(...)]` (the patch type by its name in scope).
/// `tch_patch::patch_over!(Config, patch = Patch);` (no `<_>`, no `over`) adds a patch of
/// one layer type (`#[patch(from = MyLayer, name = "...")]`, built from `Config`) for bare
/// slots of that type, under the config's name: this is how `lora` reaches
/// `nn::Embedding` slots ([`LoraEmbedding`](crate::patches::LoraEmbedding)) as well as
/// linear ones. Every rule is checked when
/// [`Registry::global`](crate::registry::Registry::global) is built: the patch must be
/// registered and no layer type may get two rules (an error naming both, no registry).
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::params::{TensorRole, Visitor, VisitorMut};
/// use tch_patch::patches::{LinearLike, Lora, LoraConfig};
/// use tch_patch::registry::Registry;
/// use tch_patch::{leaf_layer, patch_over, Parameters};
///
/// /// A linear layer whose weight is stored `[in, out]`, as transformers' `Conv1D`.
/// #[derive(Debug)]
/// struct Conv1D { weight: Tensor }
/// impl Module for Conv1D {
///     fn forward(&self, xs: &Tensor) -> Tensor { xs.matmul(&self.weight) }
/// }
/// impl Parameters for Conv1D {
///     fn visit<'a>(&'a self, v: &mut Visitor<'a, '_>) { v.tensor("weight", &self.weight, TensorRole::Param) }
///     fn visit_mut(&mut self, v: &mut VisitorMut<'_>) { v.tensor("weight", &mut self.weight, TensorRole::Param) }
/// }
/// impl LinearLike for Conv1D {
///     fn weight(&self) -> &Tensor { &self.weight }
///     fn fan_in_fan_out(&self) -> bool { true }
///     fn forward_detached(&self, xs: &Tensor, _train: bool) -> Tensor { xs.matmul(&self.weight.detach()) }
/// }
/// leaf_layer!(Conv1D);
/// patch_over!(LoraConfig, patch = Lora<_>, over(Conv1D));
///
/// let slot_types = Registry::global()?.slot_types("lora").unwrap();
/// assert!(slot_types.contains(&"Linear".to_owned()) && slot_types.contains(&"Conv1D".to_owned()));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[macro_export]
macro_rules! patch_over {
    ($config:ty, patch = $patch:ident <_>, over($($slot:ty),+ $(,)?) $(,)?) => {
        const _: () = {
            const RULES: &[$crate::__private::registry::SlotRule] = &[$(
                $crate::__private::registry::SlotRule::stacking::<
                    $config,
                    $patch<$crate::__private::DynLayer<$slot>>,
                    $slot,
                >()
            ),+];
            $crate::__private::inventory::submit! {
                $crate::__private::registry::ExtraSlotRules::new(
                    <$config as $crate::__private::registry::PatchArgs>::NAME,
                    || ::core::any::type_name::<$config>(),
                    RULES,
                )
            }
        };
    };
    ($config:ty, patch = $patch:ty $(,)?) => {
        const _: () = {
            const RULES: &[$crate::__private::registry::SlotRule] =
                &[$crate::__private::registry::SlotRule::bare::<$config, $patch>()];
            $crate::__private::inventory::submit! {
                $crate::__private::registry::ExtraSlotRules::new(
                    <$config as $crate::__private::registry::PatchArgs>::NAME,
                    || ::core::any::type_name::<$config>(),
                    RULES,
                )
            }
        };
    };
}
