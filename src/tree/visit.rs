//! The [`ModuleTree`] trait and its visitors: every node of a model with its dotted path.
use super::hyper::Hyperparameters;
use super::node::Node;
use super::slot::AnySlot;
use crate::params::{join_name, Parameters, TensorRole};
use tch::Tensor;

/// A model whose modules have paths: the nodes a `#[derive(ModuleTree)]` struct reaches
/// through its fields, nested structs, `Vec`s, arrays, `Option`s and `Box`es.
///
/// Paths use the dotted convention of [`Parameters`](crate::Parameters): `blocks.3.attn.q`,
/// with `Vec` and array children named by index. A [`Slot`](crate::Slot) is a node that can
/// be patched; a leaf layer (see [`leaf_layer!`](crate::leaf_layer)) or a `Tensor` field is a
/// fixed node, shown in [`print_tree`](crate::tree::print_tree) and [`diff`](crate::tree::diff) but never
/// patched.
///
/// Derive it; the methods that work on a whole model are in [`ModuleTreeExt`](crate::tree::ModuleTreeExt).
/// Every field must be a node: a `Slot<_>`, a leaf layer, a `Tensor`, another
/// `ModuleTree` struct, or a `Vec`, array, `Option` or `Box` of those. Anything else is a
/// compile error at the field, unless it is marked `#[tree(skip)]` (or `#[param(skip)]`,
/// which `#[derive(Parameters)]` reads too). `#[tree(rename = "name")]` (or
/// `#[param(rename = "name")]`) changes a field's path segment; a `Tensor` field marked
/// `#[buffer]` is shown as a buffer. `#[tree(rename = "name")]` (or
/// `#[param(rename = "name")]`) changes a field's path segment, as it changes its tensors'
/// names. The tree never holds a patch's insides: a slot is one node whatever it holds.
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{ModuleTree, tree::ModuleTreeExt, Parameters, Slot};
///
/// #[derive(ModuleTree, Parameters)]
/// struct Attention { q: Slot<nn::Linear>, v: Slot<nn::Linear> }
///
/// #[derive(ModuleTree, Parameters)]
/// struct Model {
///     embed: Slot<nn::Embedding>,
///     blocks: Vec<Attention>,
///     experts: [Slot<nn::Linear>; 2],
///     norm: Option<nn::LayerNorm>,      // a fixed leaf: shown, never patched
///     #[param(rename = "lm_head")]
///     head: Box<Slot<nn::Linear>>,
///     #[buffer]
///     positions: Tensor,
///     #[param(skip)]
///     n_heads: i64,                     // not a module: skipped by both derives
/// }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let p = vs.root();
/// let linear = |p: nn::Path| Slot::new(nn::linear(p, 4, 4, Default::default()));
/// let model = Model {
///     embed: Slot::new(nn::embedding(&p / "embed", 10, 4, Default::default())),
///     blocks: (0..2)
///         .map(|i| Attention { q: linear(&p / "blocks" / i / "q"), v: linear(&p / "blocks" / i / "v") })
///         .collect(),
///     experts: [linear(&p / "experts" / 0), linear(&p / "experts" / 1)],
///     norm: None,
///     head: Box::new(linear(&p / "lm_head")),
///     positions: Tensor::arange(8, (tch::Kind::Int64, Device::Cpu)),
///     n_heads: 2,
/// };
/// let paths: Vec<String> = model.slots().into_iter().map(|(path, _)| path).collect();
/// assert_eq!(paths, [
///     "embed", "blocks.0.q", "blocks.0.v", "blocks.1.q", "blocks.1.v",
///     "experts.0", "experts.1", "lm_head",
/// ]);
/// // The same paths prefix the tensors' names.
/// assert!(tch_patch::named_tensors(&model).iter().any(|t| t.name == "lm_head.weight"));
/// # let _ = model.n_heads;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a node of a module tree",
    label = "this field's type cannot be walked by `#[derive(ModuleTree)]`",
    note = "hold a patchable layer in a `Slot<_>`, derive `ModuleTree` on a nested model struct, or mark the field `#[tree(skip)]`",
    note = "a fixed leaf module defined in your crate becomes a node with `tch_patch::leaf_layer!(YourType);`",
    note = "for tch's `nn::seq()` or `nn::seq_t()` use `tch_patch::layers::seq()`, and for a closure (`nn::func`) `tch_patch::layers::Func::new(f)`; any other type from another crate cannot be a node (the orphan rule, E0117): wrap it in a struct of your crate first, or mark the field `#[tree(skip)]`"
)]
pub trait ModuleTree {
    /// Reports this node and its children, in field order.
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>);
    /// Reports every slot under this node mutably, in the order of `visit_tree`.
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>);

    /// What rebuilds this node from its hyperparameters (see
    /// [`Rebuild`](crate::tree::Rebuild)): filled in by `leaf_layer!(rebuild: T)` and by an
    /// unpatched `Slot`; `None` otherwise. Not public API.
    #[doc(hidden)]
    fn __rebuilder(&self) -> Option<&dyn super::rebuild::DynRebuild> {
        None
    }
}

/// One node of a module tree, as a visitor sees it.
#[derive(Clone, Copy)]
pub enum TreeNode<'a> {
    /// A node with children: a model struct, a `Vec` or an array.
    Branch {
        /// Its Rust type name.
        type_name: &'static str,
    },
    /// A fixed module or tensor: part of the model, never patched.
    Leaf {
        /// Its Rust type name.
        type_name: &'static str,
        /// Its tensors.
        module: &'a dyn Parameters,
        /// Its constructor arguments.
        hyperparameters: &'a dyn Hyperparameters,
        /// Whether a [`Node`] holds it, so that node operations can replace it (a fixed
        /// leaf otherwise).
        in_node: bool,
    },
    /// A slot: a layer that may be patched.
    Slot(&'a dyn AnySlot),
    /// A tensor field of a model struct.
    Tensor {
        /// The tensor.
        tensor: &'a Tensor,
        /// Parameter, or buffer (a field marked `#[buffer]`).
        role: TensorRole,
    },
}

type TreeFn<'a, 'f> = dyn FnMut(&str, usize, TreeNode<'a>) + 'f;
type SlotMutFn<'a, 'f> = dyn FnMut(&str, &'a mut dyn AnySlot) + 'f;
type PickFn<'f> = dyn FnMut(&str, &Node) -> bool + 'f;
type NodeMutFn<'a, 'f> = dyn FnMut(&str, &'a mut Node) + 'f;

/// What a mutable walk looks for.
enum MutWalk<'a, 'f> {
    /// Slots, wherever they are (inside nodes too).
    Slots(&'f mut SlotMutFn<'a, 'f>),
    /// Nodes: each one `pick` accepts goes to `found` and is not entered; any other is
    /// entered, so nodes inside it are offered too.
    Nodes {
        pick: &'f mut PickFn<'f>,
        found: &'f mut NodeMutFn<'a, 'f>,
    },
}

/// Receives the nodes of a module tree by shared reference, with their paths and depths.
pub struct TreeVisitor<'a, 'f> {
    path: String,
    depth: usize,
    /// Whether the next node reported is what a [`Node`] holds.
    in_node: bool,
    callback: &'f mut TreeFn<'a, 'f>,
}

impl<'a, 'f> TreeVisitor<'a, 'f> {
    /// A visitor calling `callback(path, depth, node)` for every node, parents first.
    pub fn new(callback: &'f mut TreeFn<'a, 'f>) -> Self {
        TreeVisitor {
            path: String::new(),
            depth: 0,
            in_node: false,
            callback,
        }
    }

    /// Reports what the [`Node`] at the current path holds.
    pub(crate) fn node(&mut self, node: &'a Node) {
        self.in_node = true;
        node.content().visit_tree(self);
        self.in_node = false;
    }

    /// Reports the current node as a branch (its children follow through [`child`](Self::child)).
    pub fn branch(&mut self, type_name: &'static str) {
        self.in_node = false;
        (self.callback)(&self.path, self.depth, TreeNode::Branch { type_name });
    }

    /// Reports the current node as a fixed leaf.
    pub fn leaf(
        &mut self,
        type_name: &'static str,
        module: &'a dyn Parameters,
        hyperparameters: &'a dyn Hyperparameters,
    ) {
        let leaf = TreeNode::Leaf {
            type_name,
            module,
            hyperparameters,
            in_node: std::mem::take(&mut self.in_node),
        };
        (self.callback)(&self.path, self.depth, leaf);
    }

    /// Reports the current node as a slot.
    pub fn slot(&mut self, slot: &'a dyn AnySlot) {
        self.in_node = false;
        (self.callback)(&self.path, self.depth, TreeNode::Slot(slot));
    }

    /// Reports the current node as a tensor.
    pub fn tensor(&mut self, tensor: &'a Tensor, role: TensorRole) {
        self.in_node = false;
        (self.callback)(&self.path, self.depth, TreeNode::Tensor { tensor, role });
    }

    /// Reports a tensor child under `name` (`#[buffer]` fields use this with
    /// [`TensorRole::Buffer`]).
    pub fn child_tensor(&mut self, name: &str, tensor: &'a Tensor, role: TensorRole) {
        let saved = std::mem::take(&mut self.path);
        self.path = join_name(&saved, name);
        self.depth += 1;
        self.tensor(tensor, role);
        self.depth -= 1;
        self.path = saved;
    }

    /// Visits a child node under `name`.
    pub fn child<M: ModuleTree + ?Sized>(&mut self, name: &str, child: &'a M) {
        let saved = std::mem::take(&mut self.path);
        self.path = join_name(&saved, name);
        self.depth += 1;
        child.visit_tree(self);
        self.depth -= 1;
        self.path = saved;
    }
}

/// Receives the slots (or the replaceable [`Node`]s) of a module tree mutably, with their
/// paths.
pub struct SlotVisitorMut<'a, 'f> {
    path: String,
    walk: MutWalk<'a, 'f>,
}

impl<'a, 'f> SlotVisitorMut<'a, 'f> {
    /// A visitor calling `callback(path, slot)` for every slot.
    pub fn new(callback: &'f mut SlotMutFn<'a, 'f>) -> Self {
        SlotVisitorMut {
            path: String::new(),
            walk: MutWalk::Slots(callback),
        }
    }

    /// A visitor giving `found(path, node)` every node `pick(path, node)` accepts, and
    /// entering the others.
    pub(crate) fn for_nodes(pick: &'f mut PickFn<'f>, found: &'f mut NodeMutFn<'a, 'f>) -> Self {
        SlotVisitorMut {
            path: String::new(),
            walk: MutWalk::Nodes { pick, found },
        }
    }

    /// Reports the current node as a slot.
    pub fn slot(&mut self, slot: &'a mut dyn AnySlot) {
        if let MutWalk::Slots(callback) = &mut self.walk {
            callback(&self.path, slot);
        }
    }

    /// Reports the current node as a replaceable [`Node`]: a walk for slots enters it, a
    /// walk for nodes offers it.
    pub(crate) fn node(&mut self, node: &'a mut Node) {
        if let MutWalk::Nodes { pick, found } = &mut self.walk {
            if pick(&self.path, node) {
                found(&self.path, node);
                return;
            }
        }
        node.content_mut().visit_slots_mut(self);
    }

    /// Visits a child node under `name`.
    pub fn child<M: ModuleTree + ?Sized>(&mut self, name: &str, child: &'a mut M) {
        let saved = std::mem::take(&mut self.path);
        self.path = join_name(&saved, name);
        child.visit_slots_mut(self);
        self.path = saved;
    }
}

/// A `Tensor` field of a model is a tensor node named by the field: a parameter, or a
/// buffer when the field is marked `#[buffer]`.
impl ModuleTree for Tensor {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visitor.tensor(self, TensorRole::Param);
    }
    fn visit_slots_mut<'a>(&'a mut self, _visitor: &mut SlotVisitorMut<'a, '_>) {}
}

/// `None` has no nodes; `Some(m)` is `m` at the same path.
impl<T: ModuleTree> ModuleTree for Option<T> {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        if let Some(inner) = self {
            inner.visit_tree(visitor);
        }
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        if let Some(inner) = self {
            inner.visit_slots_mut(visitor);
        }
    }
}

impl<T: ModuleTree + ?Sized> ModuleTree for Box<T> {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        (**self).visit_tree(visitor);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        (**self).visit_slots_mut(visitor);
    }
    fn __rebuilder(&self) -> Option<&dyn super::rebuild::DynRebuild> {
        (**self).__rebuilder()
    }
}

/// A sequence's node (titled with its own type, `Vec<..>` or `[..; N]`) and its items as
/// children `0`, `1`, ...
fn visit_items<'a, T: ModuleTree>(
    type_name: &'static str,
    items: &'a [T],
    visitor: &mut TreeVisitor<'a, '_>,
) {
    visitor.branch(type_name);
    for (index, item) in items.iter().enumerate() {
        visitor.child(&index.to_string(), item);
    }
}

/// Children named `0`, `1`, ... as in [`Parameters`](crate::Parameters).
impl<T: ModuleTree> ModuleTree for [T] {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visit_items(std::any::type_name::<Self>(), self, visitor);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        for (index, item) in self.iter_mut().enumerate() {
            visitor.child(&index.to_string(), item);
        }
    }
}

impl<T: ModuleTree> ModuleTree for Vec<T> {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visit_items(std::any::type_name::<Self>(), self, visitor);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        self.as_mut_slice().visit_slots_mut(visitor);
    }
}

impl<T: ModuleTree, const N: usize> ModuleTree for [T; N] {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visit_items(std::any::type_name::<Self>(), self, visitor);
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        self.as_mut_slice().visit_slots_mut(visitor);
    }
}
