//! [`Slot<T>`]: a field that holds a `T` or any stack of patches over a `T`, replaceable in
//! place, and [`AnySlot`], its type-erased face for whole-model walks.
use super::layer::{Layer, SlotContent};
use super::visit::{ModuleTree, SlotVisitorMut, TreeVisitor};
use super::TreeError;
use crate::error::{PatchError, Result};
use crate::params::{Parameters, Visitor, VisitorMut};
use std::any::{Any, TypeId};
use std::fmt;
use tch::{nn, Tensor};

/// Whatever a [`Slot<T>`] holds, boxed: a bare `T` or a stack of patches over a `T`. A
/// generic patch such as `Lora<L: Layer>` wraps one of these to stack on top of what the
/// slot holds, so `downcast_ref::<Lora<DynLayer<nn::Linear>>>()` finds a patch applied at
/// run time.
pub type DynLayer<T> = Box<dyn SlotContent<T>>;

/// A model field holding a `T` (e.g. `nn::Linear`) or any stack of patches whose innermost
/// base is a `T`, replaceable in place at run time.
///
/// * Forward costs one dynamic call: `nn::ModuleT::forward_t` (or `xs.apply_t(&slot, train)`),
///   whose train flag reaches every layer of the stack. A slot implements `nn::ModuleT` and
///   not `nn::Module`, so that a train-dependent layer inside (dropout, batch norm) always
///   gets the flag; [`forward_eval`](Self::forward_eval) is the forward in eval mode.
/// * Its [`Parameters`] are its content's: the names of `T`, then what patches add.
/// * [`replace_with`](Self::replace_with) is all or nothing; [`unpatch`](Self::unpatch)
///   and [`unpatch_all`](Self::unpatch_all) give back the very tensors of `T`.
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{patch, tree::DynLayer, Layer, Slot};
///
/// #[patch(from = L, module_t)]
/// struct Tagged<L: Layer> {}
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut slot = Slot::new(nn::linear(vs.root() / "q", 4, 4, Default::default()));
/// let weight = slot.root().ws.data_ptr();
/// assert!(!slot.is_patched());
/// slot.replace_with(|content| Ok(Box::new(Tagged { base: content })))?;
/// assert_eq!(slot.patch_name(), Some("Tagged"));
/// assert!(slot.downcast_ref::<Tagged<DynLayer<nn::Linear>>>().is_some());
/// let xs = Tensor::ones([2, 4], tch::kind::FLOAT_CPU);
/// let _ys = slot.forward_eval(&xs); // eval mode; `xs.apply_t(&slot, train)` to train
/// assert_eq!(slot.unpatch()?, "Tagged");
/// assert_eq!(slot.root().ws.data_ptr(), weight);
/// assert!(slot.unpatch().is_err()); // nothing left to peel
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct Slot<T: 'static> {
    /// `None` only after a closure given to `replace_with` panicked.
    content: Option<DynLayer<T>>,
}

/// A patch closure's refusal: the error, and the content it was given, handed back so the
/// slot keeps it (see [`Slot::replace_with`]).
pub struct Refused<T: 'static> {
    /// Why the content was not patched (boxed, to keep `Result`s of patch closures small).
    pub error: Box<PatchError>,
    /// The content, unchanged.
    pub content: DynLayer<T>,
}

impl<T: 'static> Refused<T> {
    /// A refusal handing `content` back.
    pub fn new(error: PatchError, content: DynLayer<T>) -> Self {
        Refused {
            error: Box::new(error),
            content,
        }
    }
}

impl<T: 'static> fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

const EMPTY: &str = "this Slot lost its content: a closure given to `Slot::replace_with` panicked";

impl<T: Parameters + Any + Send> Slot<T> {
    /// A slot holding `layer`: a bare `T`, or a patch (stack) over a `T`.
    pub fn new<L: Layer<Root = T>>(layer: L) -> Self {
        Slot {
            content: Some(layer.into_content()),
        }
    }

    /// A slot holding an already type-erased content.
    pub(crate) fn from_content(content: DynLayer<T>) -> Self {
        Slot {
            content: Some(content),
        }
    }

    /// What the slot holds.
    pub fn content(&self) -> &dyn SlotContent<T> {
        self.content.as_deref().expect(EMPTY)
    }

    /// What the slot holds, mutably.
    pub fn content_mut(&mut self) -> &mut dyn SlotContent<T> {
        self.content.as_deref_mut().expect(EMPTY)
    }

    /// The slot's content, boxed, taking the slot apart.
    pub fn into_content(self) -> DynLayer<T> {
        self.content.expect(EMPTY)
    }

    /// Forward through whatever the slot holds in eval mode: `forward_t(xs, false)`, so
    /// dropout is off and batch norm uses its running stats. Training calls
    /// `nn::ModuleT::forward_t(&slot, xs, true)` (or `xs.apply_t(&slot, true)`) instead.
    pub fn forward_eval(&self, xs: &Tensor) -> Tensor {
        nn::ModuleT::forward_t(self, xs, false)
    }

    /// Whether the slot holds at least one patch.
    pub fn is_patched(&self) -> bool {
        self.content().inner().is_some()
    }

    /// The outermost patch's name, `None` when the slot holds a bare `T`.
    pub fn patch_name(&self) -> Option<&'static str> {
        self.patch_names().first().copied()
    }

    /// The names of the patches, outermost first (empty when bare).
    pub fn patch_names(&self) -> Vec<&'static str> {
        self.content().patch_names()
    }

    /// The innermost `T`, whatever patches wrap it (its root layer; `Patch::base` of a
    /// patch is one level down instead).
    pub fn root(&self) -> &T {
        self.content().root()
    }

    /// The innermost `T`, mutably.
    pub fn root_mut(&mut self) -> &mut T {
        self.content_mut().root_mut()
    }

    /// The outermost layer as a `P`, when it is one (`P = T` when bare).
    pub fn downcast_ref<P: Any>(&self) -> Option<&P> {
        self.content().as_any().downcast_ref()
    }

    /// The outermost layer as a mutable `P`, when it is one.
    pub fn downcast_mut<P: Any>(&mut self) -> Option<&mut P> {
        self.content_mut().as_any_mut().downcast_mut()
    }

    /// The outermost layer of the stack that is a `P`, at any depth.
    pub fn find<P: Any>(&self) -> Option<&P> {
        self.layers()
            .into_iter()
            .find_map(|layer| layer.as_any().downcast_ref())
    }

    /// The outermost layer of the stack that is a `P`, mutably.
    pub fn find_mut<P: Any>(&mut self) -> Option<&mut P> {
        let mut layer = Some(self.content_mut());
        while let Some(current) = layer {
            if current.as_any().is::<P>() {
                return current.as_any_mut().downcast_mut();
            }
            layer = current.inner_mut();
        }
        None
    }

    /// Every layer of the stack, outermost first; the last is the bare `T`.
    pub fn layers(&self) -> Vec<&dyn SlotContent<T>> {
        let mut layers = vec![self.content()];
        while let Some(inner) = layers.last().and_then(|layer| layer.inner()) {
            layers.push(inner);
        }
        layers
    }

    /// Replaces the content by what `f` makes of it, all or nothing: when `f` refuses, it
    /// hands the content back in [`Refused`] and the slot keeps it, unchanged; the error is
    /// returned. (Should `f` panic, the slot is left empty and later use of it panics.)
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{patch, Layer, PatchError, tree::Refused, Slot};
    ///
    /// #[patch(from = L, module_t)]
    /// struct Marked<L: Layer> {}
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let mut slot = Slot::new(nn::linear(vs.root(), 2, 2, Default::default()));
    /// let refused = slot.replace_with(|content| {
    ///     Err(Refused::new(PatchError::Empty { what: "the token list" }, content))
    /// });
    /// assert!(refused.is_err());
    /// assert!(!slot.is_patched()); // still the bare Linear
    /// # let _ = Marked { base: slot.into_content() };
    /// ```
    pub fn replace_with<F>(&mut self, f: F) -> Result<()>
    where
        F: FnOnce(DynLayer<T>) -> std::result::Result<DynLayer<T>, Refused<T>>,
    {
        let content = self.content.take().expect(EMPTY);
        match f(content) {
            Ok(patched) => {
                self.content = Some(patched);
                Ok(())
            }
            Err(Refused { error, content }) => {
                self.content = Some(content);
                Err(*error)
            }
        }
    }

    /// Removes the outermost patch and returns its name; the layer below, with its very
    /// tensors, stays. Tensors the patch registered in a VarStore stay registered: see
    /// [`unpatch_from`](Self::unpatch_from). [`TreeError::NotPatched`] when bare.
    pub fn unpatch(&mut self) -> Result<&'static str, TreeError> {
        self.peel()
            .map(|(name, _)| name)
            .ok_or_else(|| TreeError::NotPatched {
                slot: format!("a Slot<{}>", short_type_name(std::any::type_name::<T>())),
            })
    }

    /// Like [`unpatch`](Self::unpatch), and takes the tensors the patch added out of `vs`
    /// (its variables and trainable list), so the same patch can be applied again.
    pub fn unpatch_from(&mut self, vs: &nn::VarStore) -> Result<&'static str, TreeError> {
        let (name, added) = self.peel().ok_or_else(|| TreeError::NotPatched {
            slot: format!("a Slot<{}>", short_type_name(std::any::type_name::<T>())),
        })?;
        crate::varstore::forget_tensors(&vs.variables_, &added);
        Ok(name)
    }

    /// Removes every patch; returns their names, outermost first (empty when bare).
    pub fn unpatch_all(&mut self) -> Vec<&'static str> {
        std::iter::from_fn(|| self.peel().map(|(name, _)| name)).collect()
    }

    /// Like [`unpatch_all`](Self::unpatch_all), also taking the added tensors out of `vs`.
    pub fn unpatch_all_from(&mut self, vs: &nn::VarStore) -> Vec<&'static str> {
        std::iter::from_fn(|| {
            self.peel().map(|(name, added)| {
                crate::varstore::forget_tensors(&vs.variables_, &added);
                name
            })
        })
        .collect()
    }

    /// Peels one layer: its name and the tensors it added; `None` (unchanged) when bare.
    fn peel(&mut self) -> Option<(&'static str, Vec<Tensor>)> {
        let name = self.patch_name()?;
        let added = self.content().added_tensors();
        let content = self.content.take().expect(EMPTY);
        let inner = match content.peel() {
            Ok(inner) => inner,
            Err(bare) => {
                self.content = Some(bare);
                return None;
            }
        };
        self.content = Some(inner);
        Some((name, added))
    }
}

impl<T: Parameters + Any + Send> nn::ModuleT for Slot<T> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.content().forward_t(xs, train)
    }
}

impl<T: Parameters + Any + Send> Parameters for Slot<T> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.content().visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.content_mut().visit_mut(visitor);
    }
}

impl<T: 'static> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.content {
            Some(content) => f.debug_tuple("Slot").field(content).finish(),
            None => f.write_str("Slot(<empty>)"),
        }
    }
}

impl<T: Parameters + Any + Send> ModuleTree for Slot<T> {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visitor.slot(self);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        visitor.slot(self);
    }
    /// An unpatched slot of a rebuildable layer is rebuilt as a slot.
    fn __rebuilder(&self) -> Option<&dyn super::rebuild::DynRebuild> {
        self.content()
            .root_rebuilder()
            .map(|_| self as &dyn super::rebuild::DynRebuild)
    }
}

/// A [`Slot<T>`] with its `T` erased: what a walk over a whole model sees.
pub trait AnySlot {
    /// The Rust type name of `T`, the layer the slot holds (e.g. `tch::nn::linear::Linear`).
    fn root_type_name(&self) -> &'static str;
    /// The `TypeId` of `T`.
    fn root_type_id(&self) -> TypeId;
    /// The Rust type name of the concrete content.
    fn content_type_name(&self) -> &'static str;
    /// Whether the slot holds at least one patch.
    fn is_patched(&self) -> bool;
    /// The names of the patches, outermost first.
    fn patch_names(&self) -> Vec<&'static str>;
    /// All tensors of the content (the root's names, then what patches add).
    fn parameters(&self) -> &dyn Parameters;
    /// The tensors of the innermost `T` only.
    fn root_parameters(&self) -> &dyn Parameters;
    /// The hyperparameters of the innermost `T`.
    fn hyperparameters(&self) -> super::HyperList;
    /// Removes the outermost patch: its name and handles to the tensors it added, or
    /// `None` (unchanged) when bare.
    fn peel_one(&mut self) -> Option<(&'static str, Vec<Tensor>)>;
    /// Each patch of the stack, outermost first, with handles to the tensors it added.
    fn added_by_patch(&self) -> Vec<(&'static str, Vec<Tensor>)>;
    /// The `Slot<T>` as `&dyn Any` (see [`downcast_ref`](trait.AnySlot.html#method.downcast_ref)).
    fn as_any(&self) -> &dyn Any;
    /// The `Slot<T>` as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl dyn AnySlot + '_ {
    /// The slot as a `Slot<T>`, when its layer type is `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&Slot<T>> {
        self.as_any().downcast_ref()
    }
    /// The slot as a mutable `Slot<T>`, when its layer type is `T`.
    pub fn downcast_mut<T: 'static>(&mut self) -> Option<&mut Slot<T>> {
        self.as_any_mut().downcast_mut()
    }
}

impl<T: Parameters + Any + Send> AnySlot for Slot<T> {
    fn added_by_patch(&self) -> Vec<(&'static str, Vec<Tensor>)> {
        let mut out = Vec::new();
        let mut layer = Some(self.content());
        while let Some(current) = layer {
            if let Some(&name) = current.patch_names().first() {
                out.push((name, current.added_tensors()));
            }
            layer = current.inner();
        }
        out
    }
    fn root_type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn root_type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }
    fn content_type_name(&self) -> &'static str {
        self.content().type_name()
    }
    fn is_patched(&self) -> bool {
        Slot::is_patched(self)
    }
    fn patch_names(&self) -> Vec<&'static str> {
        Slot::patch_names(self)
    }
    fn parameters(&self) -> &dyn Parameters {
        self.content()
    }
    fn root_parameters(&self) -> &dyn Parameters {
        self.content().root_parameters()
    }
    fn hyperparameters(&self) -> super::HyperList {
        self.content().root_hyperparameters()
    }
    fn peel_one(&mut self) -> Option<(&'static str, Vec<Tensor>)> {
        self.peel()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A Rust type name without module paths: `alloc::vec::Vec<my::Block>` gives `Vec<Block>`.
pub(crate) fn short_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            segment.clear();
        } else {
            out.push_str(&segment);
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(&segment);
    out
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names_drop_module_paths() {
        assert_eq!(short_type_name("tch::nn::linear::Linear"), "Linear");
        assert_eq!(
            short_type_name("alloc::vec::Vec<tree::Block>"),
            "Vec<Block>"
        );
        assert_eq!(
            short_type_name("a::Lora<alloc::boxed::Box<dyn p::SlotContent<t::Linear>>>"),
            "Lora<Box<dyn SlotContent<Linear>>>"
        );
        assert_eq!(short_type_name("[m::Block; 2]"), "[Block; 2]");
    }
}
