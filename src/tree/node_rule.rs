//! [`NodeRule`]: a rule that replaces or wraps the nodes holding one layer type, as an
//! [`AnyRule`], so patch strings and chains apply it with slot rules, all or nothing.
use super::chain::AnyRule;
use super::glob::Glob;
use super::node::{Node, NodeLayer};
use super::rule::{ApplyReport, Undo};
use super::slot::short_type_name;
use super::visit::ModuleTree;
use super::TreeError;
use crate::error::Result;
use crate::params::named_tensors;
use crate::params::Parameters;
use std::any::Any;
use std::sync::{Arc, Mutex};
use tch::{nn, Tensor};

/// The tensors a change brings that the node did not hold.
fn new_tensors(change: &NodeChange) -> Vec<Tensor> {
    let of = |nodes: &[Node]| -> Vec<Tensor> {
        nodes
            .iter()
            .flat_map(|node| named_tensors(node).into_iter().map(|t| t.tensor))
            .collect()
    };
    match change {
        NodeChange::Replace(layer) => named_tensors(&**layer)
            .into_iter()
            .map(|t| t.tensor)
            .collect(),
        NodeChange::Wrap(before, after) => of(before).into_iter().chain(of(after)).collect(),
    }
}

/// What a [`NodeRule`] does to a node it picks.
pub enum NodeChange {
    /// Put this layer in the node ([`Node::replace`]).
    Replace(Box<dyn NodeLayer>),
    /// Wrap the node's layer in a sequence with these nodes before and after it
    /// ([`Node::wrap`]).
    Wrap(Vec<Node>, Vec<Node>),
}

type MakeChange = dyn Fn(&str, &Node) -> Result<NodeChange> + Send + Sync;

/// Changes every node holding an `L` (or a [`Slot<L>`](crate::Slot)) at a path its glob matches (PyGlove's rule-based
/// patcher on symbolic nodes): `make(path, &layer)` says how, and runs for every node
/// before any node changes. A rule that picks nothing is an error
/// ([`TreeError::NoNodeMatch`]). In a chain ([`apply_chain`](super::apply_chain), patch
/// strings) it is undone exactly when a later rule fails.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{layers, tree::apply_chain, tree::Glob, tree::NodeChange, tree::NodeRule};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut mlp = layers::seq().add(nn::linear(vs.root() / 0, 4, 4, Default::default())).add(layers::Relu);
/// let to_gelu = NodeRule::new::<layers::Relu>("gelu_activation", Glob::new("**")?, |_, _| {
///     Ok(NodeChange::Replace(Box::new(layers::Gelu::default())))
/// });
/// let reports = apply_chain(&mut mlp, &[&to_gelu])?;
/// assert_eq!(reports[0].paths(), ["1"]);
/// assert!(mlp.nodes()[1].downcast_ref::<layers::Gelu>().is_some());
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct NodeRule {
    name: String,
    glob: Glob,
    /// Whether a node holds an `L` (or a `Slot<L>`).
    picks: fn(&Node) -> bool,
    layer_name: &'static str,
    make: Box<MakeChange>,
    /// The paths each application changed, newest last, for `undo`.
    applied: Mutex<Vec<Vec<String>>>,
    /// The VarStore `make` registers new tensors in, to take them out on failure and undo.
    variables: Option<Arc<Mutex<nn::Variables>>>,
}

impl NodeRule {
    /// A rule named `name` changing the `L` nodes `glob` picks with `make`.
    pub fn new<L: Parameters + Any + Send>(
        name: impl Into<String>,
        glob: Glob,
        make: impl Fn(&str, &L) -> Result<NodeChange> + Send + Sync + 'static,
    ) -> Self {
        let make = move |path: &str, node: &Node| {
            let layer = node
                .layer::<L>()
                .expect("a node rule is offered only the nodes of its type");
            make(path, layer)
        };
        NodeRule {
            name: name.into(),
            glob,
            picks: |node| node.layer::<L>().is_some(),
            layer_name: std::any::type_name::<L>(),
            make: Box::new(make),
            applied: Mutex::new(Vec::new()),
            variables: None,
        }
    }

    /// The VarStore that `make` registers the new layers' tensors in (a PReLU's weight at
    /// the node's path): when a later `make` fails, or the rule is undone, those tensors
    /// are taken out of it again.
    pub fn var_store(mut self, vs: &nn::VarStore) -> Self {
        self.variables = Some(vs.variables_.clone());
        self
    }

    /// Takes `tensors` out of the rule's VarStore, if it has one.
    fn forget(&self, tensors: &[Tensor]) {
        if let Some(variables) = &self.variables {
            crate::varstore::forget_tensors(variables, tensors);
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Vec<Vec<String>>> {
        self.applied
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl AnyRule for NodeRule {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "{} on `{}` nodes picked by glob `{}`",
            self.name,
            short_type_name(self.layer_name),
            self.glob.as_str()
        )
    }

    fn apply_undoable(&self, model: &mut dyn ModuleTree) -> Result<(ApplyReport, Undo)> {
        let picked = super::nodes::nodes_mut(model, |path, node| {
            (self.picks)(node) && self.glob.matches(path)
        });
        if picked.is_empty() {
            // Only to say what the model has: no walk on the way to a match.
            return Err(TreeError::NoNodeMatch {
                glob: self.glob.as_str().to_owned(),
                layer: short_type_name(self.layer_name),
                nodes: super::nodes::every_node(model),
            }
            .into());
        }
        let mut changes = Vec::with_capacity(picked.len());
        for (path, node) in &picked {
            match (self.make)(path, node) {
                Ok(change) => changes.push(change),
                Err(error) => {
                    let made: Vec<Tensor> = changes.iter().flat_map(new_tensors).collect();
                    self.forget(&made);
                    return Err(error);
                }
            }
        }
        let mut report = ApplyReport {
            rule: self.name.clone(),
            patched: Vec::new(),
        };
        for ((path, node), change) in picked.into_iter().zip(changes) {
            match change {
                NodeChange::Replace(layer) => node.replace_boxed(layer),
                NodeChange::Wrap(before, after) => node.wrap(before, after),
            }
            report.patched.push((path, vec![node.type_name()]));
        }
        let mut applied = self.applied();
        applied.push(report.paths().into_iter().map(str::to_owned).collect());
        Ok((report, vec![(applied.len() - 1, 1)]))
    }

    fn undo(&self, model: &mut dyn ModuleTree, undo: &Undo) {
        let Some(&(index, _)) = undo.first() else {
            return;
        };
        let paths = {
            let mut applied = self.applied();
            if index >= applied.len() {
                return;
            }
            applied.remove(index)
        };
        for (_, node) in super::nodes::nodes_mut(model, |path, _| paths.iter().any(|p| p == path)) {
            let before = named_tensors(&*node);
            if node.undo().is_ok() {
                if let Some(variables) = &self.variables {
                    crate::varstore::forget_dropped(variables, before, &named_tensors(&*node));
                }
            }
        }
    }
}
