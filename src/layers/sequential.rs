//! [`Sequential`]: tch's `nn::seq_t()` with children a rule can see and replace.
use super::func::{Func, FuncT};
use crate::params::{Parameters, Visitor, VisitorMut};
use crate::tree::{Node, NodeLayer, SlotVisitorMut, TreeError, TreeVisitor};
use crate::ModuleTree;
use tch::{nn, Tensor};

/// Layers applied one after the other, each in a [`Node`] at path `0`, `1`, ...: a drop-in
/// for tch's `nn::seq()` and `nn::seq_t()` (`add`, `add_fn`, `add_fn_t`), and PyTorch's
/// `nn.Sequential`, whose children a rule can find, replace, wrap, insert and remove.
///
/// Its forward is `nn::ModuleT`, so the train flag reaches dropout and batch norm inside;
/// [`forward`](Self::forward) is the forward in eval mode. Tensor names are the children's
/// under their index (`0.weight`), as in PyTorch's state dict; build each layer at that
/// VarStore path (`vs.root() / 0`) so the two agree.
///
/// ```
/// use tch::{nn, nn::ModuleT, Device, Tensor};
/// use tch_patch::layers;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let p = vs.root();
/// let mut mlp = layers::seq()
///     .add(nn::linear(&p / 0, 4, 8, Default::default()))
///     .add_fn(|xs| xs.relu())
///     .add(layers::dropout(0.1))
///     .add(nn::linear(&p / 3, 8, 1, Default::default()));
/// assert_eq!(mlp.len(), 4);
/// let xs = Tensor::ones([2, 4], tch::kind::FLOAT_CPU);
/// assert_eq!(mlp.forward_t(&xs, true).size(), [2, 1]);
/// let dropout = mlp.remove(2)?; // the Linear after it keeps its VarStore name
/// assert!(dropout.downcast_ref::<layers::Dropout>().is_some());
/// let names: Vec<String> = tch_patch::named_tensors(&mlp).into_iter().map(|t| t.name).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Sequential {
    nodes: Vec<Node>,
}

/// An empty [`Sequential`], as tch's `nn::seq()`.
pub fn seq() -> Sequential {
    Sequential::new()
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// A sequence of these nodes.
    pub fn from_nodes(nodes: Vec<Node>) -> Self {
        Sequential { nodes }
    }

    /// Appends `layer`, in a node of its own.
    #[allow(
        clippy::should_implement_trait,
        reason = "tch's `nn::Sequential::add`, by name"
    )]
    pub fn add<L: NodeLayer>(mut self, layer: L) -> Self {
        self.push(layer);
        self
    }

    /// Appends the closure `f` as a layer ([`Func`]).
    pub fn add_fn(self, f: impl Fn(&Tensor) -> Tensor + Send + 'static) -> Self {
        self.add(Func::new(f))
    }

    /// Appends the closure `f`, which takes the train flag, as a layer ([`FuncT`]).
    pub fn add_fn_t(self, f: impl Fn(&Tensor, bool) -> Tensor + Send + 'static) -> Self {
        self.add(FuncT::new(f))
    }

    /// Appends `layer` in place, in a node of its own.
    pub fn push<L: NodeLayer>(&mut self, layer: L) {
        self.push_node(Node::new(layer));
    }

    /// Appends a node.
    pub fn push_node(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Inserts `layer` at `index`, shifting the later children (and their paths) by one.
    /// [`TreeError::IndexOutOfRange`] past the end; nothing is changed then.
    pub fn insert<L: NodeLayer>(&mut self, index: usize, layer: L) -> Result<(), TreeError> {
        if index > self.nodes.len() {
            return Err(self.out_of_range(index));
        }
        self.nodes.insert(index, Node::new(layer));
        Ok(())
    }

    /// Removes and returns the child at `index`, shifting the later ones back by one.
    /// [`TreeError::IndexOutOfRange`] when there is none; nothing is changed then.
    pub fn remove(&mut self, index: usize) -> Result<Node, TreeError> {
        if index >= self.nodes.len() {
            return Err(self.out_of_range(index));
        }
        Ok(self.nodes.remove(index))
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no children (the forward is then the identity).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The children, in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The children, mutably.
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// The children, taking the sequence apart.
    pub fn into_nodes(self) -> Vec<Node> {
        self.nodes
    }

    /// The forward in eval mode: `forward_t(xs, false)`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        nn::ModuleT::forward_t(self, xs, false)
    }

    fn out_of_range(&self, index: usize) -> TreeError {
        TreeError::IndexOutOfRange {
            index,
            len: self.nodes.len(),
        }
    }
}

impl nn::ModuleT for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let Some((first, rest)) = self.nodes.split_first() else {
            return xs.shallow_clone();
        };
        rest.iter().fold(first.forward_t(xs, train), |ys, node| {
            node.forward_t(&ys, train)
        })
    }
}

impl Parameters for Sequential {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.nodes.visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.nodes.visit_mut(visitor);
    }
}

impl ModuleTree for Sequential {
    fn visit_tree<'a>(&'a self, visitor: &mut TreeVisitor<'a, '_>) {
        visitor.branch(std::any::type_name::<Self>());
        for (index, node) in self.nodes.iter().enumerate() {
            visitor.child(&index.to_string(), node);
        }
    }
    fn visit_slots_mut<'a>(&'a mut self, visitor: &mut SlotVisitorMut<'a, '_>) {
        for (index, node) in self.nodes.iter_mut().enumerate() {
            visitor.child(&index.to_string(), node);
        }
    }
}
