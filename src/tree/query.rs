//! Whole-model operations on any [`ModuleTree`]: list nodes and slots, select, look up a
//! slot by path, apply rules, unpatch everything, print.
use super::glob::Glob;
use super::hyper::{HyperList, HyperValue};
use super::node::{Node, NodeLayer};
use super::rebind::RebindReport;
use super::rule::{apply_rule, ApplyReport, Rule};
use super::select::{nearest, Selector};
use super::slot::{short_type_name, AnySlot, Slot};
use super::visit::{ModuleTree, SlotVisitorMut, TreeNode, TreeVisitor};
use super::TreeError;
use crate::error::Result;
use crate::params::Parameters;
use std::any::Any;
use std::fmt;
use tch::nn;

/// A node of a module tree with its path and depth (the root is at depth 0, path `""`).
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    /// Dotted path, e.g. `blocks.0.attn.q`.
    pub path: &'a str,
    /// How many fields and indices lead to it.
    pub depth: usize,
    /// The node.
    pub node: TreeNode<'a>,
}

impl NodeRef<'_> {
    /// The Rust type name of the layer: a leaf's, a slot's innermost layer's, a branch's;
    /// `None` for a tensor.
    pub fn type_name(&self) -> Option<&'static str> {
        match self.node {
            TreeNode::Branch { type_name } | TreeNode::Leaf { type_name, .. } => Some(type_name),
            TreeNode::Slot(slot) => Some(slot.root_type_name()),
            TreeNode::Tensor { .. } => None,
        }
    }

    /// Whether the layer is a `T` (for a slot: whether it holds a stack over a `T`).
    pub fn is<T: ?Sized>(&self) -> bool {
        self.type_name() == Some(std::any::type_name::<T>())
    }

    /// The layer's hyperparameters (a slot's: its innermost layer's; none for a branch or
    /// a tensor).
    pub fn hyperparameters(&self) -> HyperList {
        match self.node {
            TreeNode::Leaf {
                hyperparameters, ..
            } => hyperparameters.hyperparameters(),
            TreeNode::Slot(slot) => slot.hyperparameters(),
            TreeNode::Branch { .. } | TreeNode::Tensor { .. } => Vec::new(),
        }
    }

    /// The hyperparameter `name`, if the layer reports it.
    pub fn hyperparameter(&self, name: &str) -> Option<HyperValue> {
        self.hyperparameters()
            .into_iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// A slot of a model, with its path.
#[derive(Clone, Copy)]
pub struct SlotRef<'a> {
    /// Dotted path.
    pub path: &'a str,
    /// The slot.
    pub slot: &'a dyn AnySlot,
}

/// A slot of a model, mutably, with its path.
pub struct SlotMut<'a> {
    /// Dotted path.
    pub path: String,
    /// The slot.
    pub slot: &'a mut dyn AnySlot,
}

/// Every node of a model, parents first: owned paths, borrowed nodes.
pub struct Nodes<'a> {
    entries: Vec<(String, usize, TreeNode<'a>)>,
}

impl<'a> Nodes<'a> {
    /// Walks `model`.
    pub fn of<M: ModuleTree + ?Sized>(model: &'a M) -> Self {
        let mut entries = Vec::new();
        let mut collect = |path: &str, depth: usize, node: TreeNode<'a>| {
            entries.push((path.to_owned(), depth, node));
        };
        model.visit_tree(&mut TreeVisitor::new(&mut collect));
        Nodes { entries }
    }

    /// The nodes, parents first.
    pub fn iter(&self) -> impl Iterator<Item = NodeRef<'_>> + '_ {
        self.entries.iter().map(|(path, depth, node)| NodeRef {
            path,
            depth: *depth,
            node: *node,
        })
    }

    /// The slots, in the model's order.
    pub fn slots(&self) -> impl Iterator<Item = SlotRef<'_>> + '_ {
        self.entries
            .iter()
            .filter_map(|(path, _, node)| match node {
                TreeNode::Slot(slot) => Some(SlotRef { path, slot: *slot }),
                _ => None,
            })
    }
}

/// What [`ModuleTreeExt::unpatch_all`] removed: each patched slot's path and the patch
/// names taken off it, outermost first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpatchReport {
    /// Slot paths with the patches removed from each.
    pub removed: Vec<(String, Vec<&'static str>)>,
}

impl UnpatchReport {
    /// How many patches were removed in all.
    pub fn patches(&self) -> usize {
        self.removed.iter().map(|(_, names)| names.len()).sum()
    }
}

impl fmt::Display for UnpatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unpatched {} slot(s)", self.removed.len())?;
        for (index, (path, names)) in self.removed.iter().enumerate() {
            let sep = if index == 0 { ": " } else { ", " };
            write!(f, "{sep}{path} ({})", names.join(", "))?;
        }
        Ok(())
    }
}

/// Operations on a whole model, for every [`ModuleTree`].
pub trait ModuleTreeExt: ModuleTree {
    /// Every slot, with its path, in the model's order.
    fn slots<'a>(&'a self) -> Vec<(String, &'a dyn AnySlot)> {
        let mut out = Vec::new();
        let mut collect = |path: &str, _depth: usize, node: TreeNode<'a>| {
            if let TreeNode::Slot(slot) = node {
                out.push((path.to_owned(), slot));
            }
        };
        self.visit_tree(&mut TreeVisitor::new(&mut collect));
        out
    }

    /// Every slot, mutably, with its path, in the model's order.
    fn slots_mut<'a>(&'a mut self) -> Vec<SlotMut<'a>> {
        let mut out = Vec::new();
        let mut collect = |path: &str, slot: &'a mut dyn AnySlot| {
            out.push(SlotMut {
                path: path.to_owned(),
                slot,
            });
        };
        self.visit_slots_mut(&mut SlotVisitorMut::new(&mut collect));
        out
    }

    /// The paths of the slots `selector` picks, in the model's order.
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{ModuleTree, tree::ModuleTreeExt, tree::Selector, Slot};
    ///
    /// #[derive(ModuleTree)]
    /// struct Attention { q: Slot<nn::Linear>, k: Slot<nn::Linear> }
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = |name: &str| Slot::new(nn::linear(vs.root() / name, 4, 4, Default::default()));
    /// let attn = Attention { q: linear("q"), k: linear("k") };
    /// assert_eq!(attn.select(&Selector::glob("{q,v}")?), ["q"]);
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    fn select(&self, selector: &Selector) -> Vec<String> {
        self.slots()
            .into_iter()
            .filter(|(path, slot)| selector.matches(path, *slot))
            .map(|(path, _)| path)
            .collect()
    }

    /// The `Slot<T>` at `path`: [`TreeError::NoSuchSlot`] (with the nearest paths) or
    /// [`TreeError::WrongSlotType`] when there is none.
    fn slot<T: 'static>(&self, path: &str) -> Result<&Slot<T>, TreeError> {
        let slots = self.slots();
        let found = find_slot::<T>(&slots, path)?;
        Ok(slots[found]
            .1
            .downcast_ref::<T>()
            .expect("find_slot checked the type"))
    }

    /// The `Slot<T>` at `path`, mutably (errors as [`slot`](Self::slot)).
    fn slot_mut<T: 'static>(&mut self, path: &str) -> Result<&mut Slot<T>, TreeError> {
        let found = find_slot::<T>(&self.slots(), path)?;
        let slot = self.slots_mut().swap_remove(found).slot;
        Ok(slot
            .downcast_mut::<T>()
            .expect("find_slot checked the type"))
    }

    /// Applies `rule` to every slot it picks, all or nothing; see [`Rule`].
    fn apply<T: Parameters + Any + Send>(&mut self, rule: &Rule<T>) -> Result<ApplyReport> {
        apply_rule(self, rule)
    }

    /// The paths of the nodes `pick` accepts, in the model's order: PyGlove's `pg.query`
    /// with `where`, by type, path and hyperparameters.
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{layers, tree::HyperValue, tree::ModuleTreeExt};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let p = vs.root();
    /// let mlp = layers::seq()
    ///     .add(nn::linear(&p / 0, 4, 8, Default::default()))
    ///     .add(layers::Relu)
    ///     .add(nn::linear(&p / 2, 8, 1, Default::default()));
    /// let linears = mlp.query(|node| node.is::<nn::Linear>());
    /// assert_eq!(linears, ["0", "2"]);
    /// let wide = mlp.query(|node| node.hyperparameter("in_features") == Some(HyperValue::Int(4)));
    /// assert_eq!(wide, ["0"]);
    /// ```
    fn query(&self, mut pick: impl FnMut(&NodeRef<'_>) -> bool) -> Vec<String> {
        Nodes::of(self)
            .iter()
            .filter(|node| pick(node))
            .map(|node| node.path.to_owned())
            .collect()
    }

    /// Every hyperparameter of every node, with its path (`0.in_features`), in the model's
    /// order: PyGlove's `pg.traverse` over a model's symbolic fields.
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{layers, tree::ModuleTreeExt};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let mlp = layers::seq().add(nn::linear(vs.root() / 0, 4, 8, Default::default())).add(layers::dropout(0.1));
    /// let fields: Vec<String> = mlp.traverse().iter().map(|(path, value)| format!("{path}={value}")).collect();
    /// assert_eq!(fields, ["0.in_features=4", "0.out_features=8", "0.bias=true", "1.p=0.1"]);
    /// ```
    fn traverse(&self) -> Vec<(String, HyperValue)> {
        Nodes::of(self)
            .iter()
            .flat_map(|node| {
                node.hyperparameters()
                    .into_iter()
                    .map(move |(name, value)| (crate::params::join_name(node.path, name), value))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every replaceable [`Node`](crate::tree::Node) `pick(path, node)` accepts, mutably,
    /// with its path, in the model's order. A node `pick` refuses is entered, so the nodes
    /// inside it (the children of a sequence it holds) are offered too.
    fn nodes_mut(&mut self, pick: impl FnMut(&str, &Node) -> bool) -> Vec<(String, &mut Node)> {
        super::nodes::nodes_mut(self, pick)
    }

    /// The node at `path`: [`TreeError::NoSuchNode`] (listing the node paths) when there is
    /// none.
    fn node_mut(&mut self, path: &str) -> Result<&mut Node, TreeError> {
        super::nodes::node_mut(self, path)
    }

    /// Replaces every node holding an `L` (or a [`Slot<L>`](crate::Slot)) at a path `glob` matches by the layer
    /// `make(path, &old)` returns (PyGlove's rule-based rewrite: every ReLU by a PReLU),
    /// and returns their paths. All or nothing: every `make` runs before any node changes,
    /// so an error from one (or [`TreeError::NoNodeMatch`] when nothing matches) changes
    /// nothing. Each node keeps what it held for [`undo_nodes`](Self::undo_nodes).
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{layers, tree::path_in, tree::Glob, tree::ModuleTreeExt, tree::NodeLayer};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let p = vs.root();
    /// let mut mlp = layers::seq()
    ///     .add(nn::linear(&p / 0, 4, 8, Default::default()))
    ///     .add(layers::Relu)
    ///     .add(nn::linear(&p / 2, 8, 1, Default::default()));
    /// let changed = mlp.replace_nodes::<layers::Relu, _>(&Glob::new("*")?, |path, _relu| {
    ///     Ok(Box::new(layers::prelu(path_in(&p, path), 1)) as Box<dyn NodeLayer>)
    /// })?;
    /// assert_eq!(changed, ["1"]);
    /// assert!(mlp.nodes()[1].downcast_ref::<layers::PRelu>().is_some());
    /// assert_eq!(mlp.undo_nodes(), 1);
    /// assert!(mlp.nodes()[1].downcast_ref::<layers::Relu>().is_some());
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    fn replace_nodes<L, F>(&mut self, glob: &Glob, make: F) -> Result<Vec<String>>
    where
        L: Parameters + Any + Send,
        F: FnMut(&str, &L) -> Result<Box<dyn NodeLayer>>,
    {
        super::nodes::replace_nodes(self, glob, make)
    }

    /// Wraps every node holding an `L` at a path `glob` matches in a sequence:
    /// `make(path, &old)` gives the nodes to put before it and after it (PyGlove's "a
    /// Dropout before every Linear", as new nodes), all or nothing as
    /// [`replace_nodes`](Self::replace_nodes). A wrapped layer's path gains its index in
    /// the sequence (see [`Node::wrap`](crate::tree::Node::wrap)).
    fn wrap_nodes<L, F>(&mut self, glob: &Glob, make: F) -> Result<Vec<String>>
    where
        L: Parameters + Any + Send,
        F: FnMut(&str, &L) -> Result<(Vec<Node>, Vec<Node>)>,
    {
        super::nodes::wrap_nodes(self, glob, make)
    }

    /// Takes back every change of every node, newest first: each node holds again the very
    /// layer it held at first. Returns how many changes were undone.
    fn undo_nodes(&mut self) -> usize {
        super::nodes::undo_nodes(self, None)
    }

    /// Like [`undo_nodes`](Self::undo_nodes), also taking the tensors of the layers taken
    /// out (a PReLU's weight that `prelu_activation` registered) out of `vs`, so the same
    /// changes can be made again.
    fn undo_nodes_from(&mut self, vs: &nn::VarStore) -> usize {
        super::nodes::undo_nodes(self, Some(vs))
    }

    /// Changes hyperparameters by path (`("0.in_features", 10.into())`, several at once),
    /// rebuilding exactly the layers they belong to, freshly initialized, at their own
    /// VarStore paths in `vs`; every other tensor is kept (the very tensors). The layer must
    /// be held by a [`Node`] and implement [`Rebuild`](super::Rebuild) (tch's `Linear`,
    /// `Embedding`, `LayerNorm`, convolutions and transposed convolutions, this crate's
    /// layers, a layer of yours declared with `leaf_layer!(rebuild: YourType)`), bare or
    /// in an unpatched slot; a slot holding patches is [`TreeError::PatchedSlot`].
    ///
    /// All or nothing: every path, name and value is checked (each layer's own
    /// [`Rebuild::check`](super::Rebuild::check) too: `groups` must divide a convolution's
    /// channels), and the sizes along every sequence are checked with the new values
    /// (features against features, a convolution's channels against channels), before
    /// anything changes; a layer left giving another size than the next one takes is
    /// [`TreeError::RebindMismatch`], naming both. A layer whose `rebuild` fails after its
    /// check passed is [`TreeError::RebuildFailed`], and the layers rebuilt before it are
    /// put back. [`undo_rebind`](Self::undo_rebind) with the report puts the old layers
    /// (the very tensors) and their VarStore entries back.
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{layers, tree::ModuleTreeExt};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let p = vs.root();
    /// let mut mlp = layers::seq()
    ///     .add(nn::linear(&p / 0, 4, 8, Default::default()))
    ///     .add(layers::Relu)
    ///     .add(nn::linear(&p / 2, 8, 1, Default::default()));
    /// let half = mlp.rebind(&vs, &[("0.out_features", 16.into())]).unwrap_err();
    /// assert_eq!(half.to_string(), "rebind leaves `0.out_features` = 16 feeding `2.in_features` = 8: change both");
    /// let report = mlp.rebind(&vs, &[("0.out_features", 16.into()), ("2.in_features", 16.into())])?;
    /// assert_eq!(vs.variables()["0.weight"].size(), [16, 4]);
    /// mlp.undo_rebind(&vs, report)?;
    /// assert_eq!(vs.variables()["0.weight"].size(), [8, 4]);
    /// # Ok::<(), tch_patch::tree::TreeError>(())
    /// ```
    fn rebind(
        &mut self,
        vs: &nn::VarStore,
        changes: &[(&str, HyperValue)],
    ) -> Result<RebindReport, TreeError> {
        super::rebind::rebind(self, vs, changes)
    }

    /// Takes a [`rebind`](Self::rebind) back: each rebuilt node holds its old layer again
    /// (the very tensors), and `vs` its old variables.
    fn undo_rebind(&mut self, vs: &nn::VarStore, report: RebindReport) -> Result<(), TreeError> {
        super::rebind::undo_rebind(self, vs, report)
    }

    /// Removes every patch from every slot; the slots' layers keep their very tensors.
    /// Tensors patches registered in a VarStore stay there: see
    /// [`unpatch_all_from`](Self::unpatch_all_from).
    fn unpatch_all(&mut self) -> UnpatchReport {
        unpatch_every_slot(self, None)
    }

    /// Like [`unpatch_all`](Self::unpatch_all), also taking the tensors the patches added
    /// out of `vs`, so the same patches can be applied again.
    fn unpatch_all_from(&mut self, vs: &nn::VarStore) -> UnpatchReport {
        unpatch_every_slot(self, Some(vs))
    }
}

impl<M: ModuleTree + ?Sized> ModuleTreeExt for M {}

fn find_slot<T: 'static>(slots: &[(String, &dyn AnySlot)], path: &str) -> Result<usize, TreeError> {
    let Some(index) = slots.iter().position(|(p, _)| p == path) else {
        let selector = Selector::glob(&escape_glob(path)).unwrap_or_else(|_| Selector::all());
        return Err(TreeError::NoSuchSlot {
            path: path.to_owned(),
            nearest: nearest(&selector, slots.iter().map(|(p, _)| p.as_str()), 5),
        });
    };
    let slot = slots[index].1;
    if slot.root_type_id() != std::any::TypeId::of::<T>() {
        return Err(TreeError::WrongSlotType {
            path: path.to_owned(),
            expected: short_type_name(std::any::type_name::<T>()),
            actual: short_type_name(slot.root_type_name()),
        });
    }
    Ok(index)
}

/// A glob matching exactly `text`.
pub(crate) fn escape_glob(text: &str) -> String {
    text.chars().flat_map(|c| ['\\', c]).collect()
}

fn unpatch_every_slot<M: ModuleTree + ?Sized>(
    model: &mut M,
    vs: Option<&nn::VarStore>,
) -> UnpatchReport {
    let mut removed = Vec::new();
    for SlotMut { path, slot } in model.slots_mut() {
        let mut names = Vec::new();
        while let Some((name, added)) = slot.peel_one() {
            if let Some(vs) = vs {
                crate::varstore::forget_tensors(&vs.variables_, &added);
            }
            names.push(name);
        }
        if !names.is_empty() {
            removed.push((path, names));
        }
    }
    UnpatchReport { removed }
}
