//! Telling at run time whether a module is a patch, when its type is not known statically.
use crate::Patch;
use std::any::{Any, TypeId};

/// One `#[patch]` type, listed by the macro in a process-wide table.
#[doc(hidden)]
pub struct PatchTypeInfo {
    name: &'static str,
    type_id: fn() -> TypeId,
    base_type_name: fn() -> &'static str,
}

impl PatchTypeInfo {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        type_id: fn() -> TypeId,
        base_type_name: fn() -> &'static str,
    ) -> Self {
        PatchTypeInfo {
            name,
            type_id,
            base_type_name,
        }
    }
}

inventory::collect!(PatchTypeInfo);

fn lookup(type_id: TypeId) -> Option<&'static PatchTypeInfo> {
    inventory::iter::<PatchTypeInfo>().find(|info| (info.type_id)() == type_id)
}

/// Whether `module` is a patch (a `#[patch]` struct without generic parameters).
///
/// For a statically known type use the bound `T: Patch` instead; generic patches such as
/// `Lora<L>` have no single type to list, so they are only seen statically.
///
/// ```
/// use tch::nn;
/// use tch_patch::{dynamic::is_patched, patch, dynamic::patch_name};
///
/// #[patch(from = nn::Linear)]
/// struct Noted {}
///
/// let vs = nn::VarStore::new(tch::Device::Cpu);
/// let plain = nn::linear(vs.root(), 2, 2, Default::default());
/// assert!(!is_patched(&plain));
/// let noted = Noted { base: plain };
/// assert!(is_patched(&noted));
/// assert_eq!(patch_name(&noted), Some("Noted"));
/// let boxed: Box<dyn std::any::Any> = Box::new(noted);
/// assert!(is_patched(boxed.as_ref()));
/// ```
pub fn is_patched(module: &dyn Any) -> bool {
    lookup(module.type_id()).is_some()
}

/// The patch's name when `module` is a (non-generic) patch, `None` otherwise.
pub fn patch_name(module: &dyn Any) -> Option<&'static str> {
    lookup(module.type_id()).map(|info| info.name)
}

/// The Rust type name of the parent when `module` is a (non-generic) patch.
pub fn patch_base_type_name(module: &dyn Any) -> Option<&'static str> {
    lookup(module.type_id()).map(|info| (info.base_type_name)())
}

/// Static counterpart of [`patch_name`]: the name of a patch type.
pub fn patch_name_of<P: Patch>() -> &'static str {
    P::NAME
}

/// A module that can also be seen as `&dyn Any`, so a `Box<dyn AnyModule>` can be asked
/// [`is_patched`] and downcast. Every `'static` module is one.
pub trait AnyModule: tch::nn::Module + Any {
    /// The module as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
}

impl<T: tch::nn::Module + Any> AnyModule for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
