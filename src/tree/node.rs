//! [`Node`]: a place in a model that holds any layer, so that a rule can replace it by a
//! layer of another type (a ReLU by a PReLU), wrap it (a Linear in a sequence after a
//! Dropout) and undo that, where a [`Slot<T>`](crate::Slot) keeps its type `T`.
use super::visit::{ModuleTree, SlotVisitorMut, TreeVisitor};
use super::TreeError;
use crate::layers::Sequential;
use crate::params::{Parameters, Visitor, VisitorMut};
use std::any::Any;
use std::fmt;
use tch::{nn, Tensor};

/// What a [`Node`] can hold: any module that is also a tree node and has tensor names. tch's
/// layers, this crate's [`layers`](crate::layers), a [`Slot`](crate::Slot) (so typed rules
/// still patch what the node holds), a [`Sequential`] and `#[derive(ModuleTree,
/// Parameters)]` models that implement `nn::ModuleT` are all `NodeLayer`s, by one blanket
/// impl.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be held by a `Node`",
    label = "a `Node` holds a module (`nn::Module` or `nn::ModuleT`) that is also a `ModuleTree` with `Parameters`, `Send` and `'static`",
    note = "for tch's `nn::seq()` use `tch_patch::layers::seq()`, and for a closure `Sequential::add_fn`: their children are nodes a rule can see",
    note = "a leaf module of your crate becomes one with `tch_patch::leaf_layer!(YourType);`"
)]
pub trait NodeLayer: nn::ModuleT + ModuleTree + Parameters + Any + Send {
    /// The Rust type name of the layer.
    fn type_name(&self) -> &'static str;
    /// The layer as `Any`, to downcast.
    fn as_any(&self) -> &dyn Any;
    /// The layer as `Any`, mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The boxed layer as `Any`, to take it out by type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: nn::ModuleT + ModuleTree + Parameters + Any + Send> NodeLayer for T {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// How to take one change of a node back: given what the node holds now, the layer it held
/// before.
type UndoStep = Box<dyn FnOnce(Box<dyn NodeLayer>) -> Box<dyn NodeLayer> + Send>;

/// A place in a model holding any [`NodeLayer`], replaceable by a layer of another type and
/// restorable: [`replace`](Self::replace) keeps the layer it takes out, so
/// [`undo`](Self::undo) gives back that very layer with its very tensors.
///
/// A node is transparent in the tree: its path, its tensors' names and what
/// [`print_tree`](crate::tree::print_tree) shows are those of what it holds (a node holding
/// a `Slot<nn::Linear>` is that slot, patchable by rules).
///
/// ```
/// use tch::{nn, nn::ModuleT, Device, Tensor};
/// use tch_patch::{layers, tree::Node};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut act = Node::new(layers::Relu);
/// let xs = Tensor::from_slice(&[-1.0f32, 2.0]);
/// assert_eq!(Vec::<f32>::try_from(act.forward_t(&xs, false))?, [0.0, 2.0]);
///
/// act.replace(layers::prelu(vs.root() / "act", 1));
/// assert_eq!(Vec::<f32>::try_from(act.forward_t(&xs, false))?, [-0.25, 2.0]);
/// assert!(act.downcast_ref::<layers::PRelu>().is_some());
///
/// act.undo()?;
/// assert!(act.downcast_ref::<layers::Relu>().is_some());
/// assert!(act.undo().is_err()); // nothing left to undo
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Node {
    content: Box<dyn NodeLayer>,
    /// How to undo each change, oldest first.
    history: Vec<UndoStep>,
}

impl Node {
    /// A node holding `layer`.
    pub fn new<L: NodeLayer>(layer: L) -> Self {
        Node::from_boxed(Box::new(layer))
    }

    /// A node holding an already boxed layer.
    pub fn from_boxed(layer: Box<dyn NodeLayer>) -> Self {
        Node {
            content: layer,
            history: Vec::new(),
        }
    }

    /// What the node holds.
    pub fn content(&self) -> &dyn NodeLayer {
        &*self.content
    }

    /// What the node holds, mutably.
    pub fn content_mut(&mut self) -> &mut dyn NodeLayer {
        &mut *self.content
    }

    /// The Rust type name of what the node holds.
    pub fn type_name(&self) -> &'static str {
        self.content.type_name()
    }

    /// What the node holds, as an `L`, if it is one.
    pub fn downcast_ref<L: Any>(&self) -> Option<&L> {
        self.content.as_any().downcast_ref()
    }

    /// What the node holds, mutably, as an `L`, if it is one.
    pub fn downcast_mut<L: Any>(&mut self) -> Option<&mut L> {
        self.content.as_any_mut().downcast_mut()
    }

    /// The layer as an `L`: what the node holds, or the innermost layer of a
    /// [`Slot<L>`](crate::Slot) it holds (patched or not), so rules over `L` nodes see
    /// slot-held layers too.
    pub fn layer<L: Parameters + Any + Send>(&self) -> Option<&L> {
        let any = self.content.as_any();
        any.downcast_ref::<L>()
            .or_else(|| any.downcast_ref::<crate::Slot<L>>().map(|slot| slot.root()))
    }

    /// How many changes [`undo`](Self::undo) can take back.
    pub fn changes(&self) -> usize {
        self.history.len()
    }

    /// Puts `layer` in the node; the layer it held is kept, untouched, for
    /// [`undo`](Self::undo).
    pub fn replace<L: NodeLayer>(&mut self, layer: L) {
        self.replace_boxed(Box::new(layer));
    }

    /// [`replace`](Self::replace) with an already boxed layer.
    pub fn replace_boxed(&mut self, layer: Box<dyn NodeLayer>) {
        let old = std::mem::replace(&mut self.content, layer);
        self.history.push(Box::new(move |_current| old));
    }

    /// Wraps what the node holds in a [`Sequential`]: `before` first, then the layer itself,
    /// then `after` (PyGlove's "insert a Dropout before every Linear" as new nodes). The
    /// layer's path gains its index in the sequence (`fc` becomes `fc.1` after one layer
    /// before it), as in PyTorch when a module is replaced by an `nn.Sequential` holding
    /// it. [`undo`](Self::undo) takes the layer back out, with its very tensors.
    pub fn wrap(&mut self, before: Vec<Node>, after: Vec<Node>) {
        let index = before.len();
        let placeholder: Box<dyn NodeLayer> = Box::new(Sequential::new());
        let layer = std::mem::replace(&mut self.content, placeholder);
        let mut sequence = Sequential::from_nodes(before);
        sequence.push_node(Node::from_boxed(layer));
        for node in after {
            sequence.push_node(node);
        }
        self.content = Box::new(sequence);
        self.history.push(Box::new(move |current| {
            let sequence = current
                .into_any()
                .downcast::<Sequential>()
                .expect("a wrapped node holds the sequence made by `wrap` until it is undone");
            sequence.into_nodes().swap_remove(index).content
        }));
    }

    /// Takes the last change back: the node holds again what it held before it, the very
    /// layer with its very tensors. [`TreeError::NothingToUndo`] when it was never changed.
    pub fn undo(&mut self) -> Result<(), TreeError> {
        let step = self.history.pop().ok_or(TreeError::NothingToUndo {
            holds: super::slot::short_type_name(self.type_name()),
        })?;
        let placeholder: Box<dyn NodeLayer> = Box::new(Sequential::new());
        let current = std::mem::replace(&mut self.content, placeholder);
        self.content = step(current);
        Ok(())
    }

    /// Takes every change back, newest first; returns how many there were.
    pub fn undo_all(&mut self) -> usize {
        let count = self.history.len();
        while self.undo().is_ok() {}
        count
    }
}

impl nn::ModuleT for Node {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.content.forward_t(xs, train)
    }
}

impl Parameters for Node {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.content.visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.content.visit_mut(visitor);
    }
}

impl ModuleTree for Node {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visitor.node(self);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        visitor.node(self);
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("holds", &self.type_name())
            .field("changes", &self.history.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{self, Relu};
    use tch::nn::ModuleT;
    use tch::{Device, Kind};

    #[test]
    fn wrap_moves_the_layer_into_a_sequence_and_undo_takes_that_very_layer_out() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let weight = linear.ws.data_ptr();
        let mut node = Node::new(linear);
        node.wrap(vec![Node::new(layers::dropout(0.5))], vec![Node::new(Relu)]);
        let names: Vec<String> = crate::named_tensors(&node)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["1.weight", "1.bias"]);
        let xs = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        assert!(node.forward_t(&xs, false).min().double_value(&[]) >= 0.0);
        node.undo().unwrap();
        let back = node.downcast_ref::<nn::Linear>().unwrap();
        assert_eq!(back.ws.data_ptr(), weight);
        assert_eq!(node.changes(), 0);
    }
}
