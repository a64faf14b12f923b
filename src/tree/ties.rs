//! Tied tensors of a model: one tensor reachable under two paths (an input embedding and an
//! output head sharing one table), found by the crate's one tie detector,
//! [`crate::tied::TieIndex`], over every tensor of every node.
use super::query::Nodes;
use super::slot::AnySlot;
use super::visit::TreeNode;
use crate::params::{named_tensors_with_prefix, TensorRole};
use crate::tied::TieIndex;
use tch::Tensor;

/// One tensor of a model: which node holds it and its full dotted name.
pub(crate) struct TensorEntry {
    /// Index of the node (in [`Nodes`] order) that holds it.
    pub owner: usize,
    /// Full dotted name, e.g. `head.weight`.
    pub name: String,
    /// A shallow handle.
    pub tensor: Tensor,
    /// Parameter or buffer.
    pub role: TensorRole,
}

/// Every tensor of every slot and leaf, in the model's order.
pub(crate) fn tensor_entries(nodes: &Nodes<'_>) -> Vec<TensorEntry> {
    let mut entries = Vec::new();
    for (owner, node) in nodes.iter().enumerate() {
        let module = match node.node {
            TreeNode::Slot(slot) => slot.parameters(),
            TreeNode::Leaf { module, .. } => module,
            TreeNode::Tensor { tensor, role } => {
                entries.push(TensorEntry {
                    owner,
                    name: node.path.to_owned(),
                    tensor: tensor.shallow_clone(),
                    role,
                });
                continue;
            }
            TreeNode::Branch { .. } => continue,
        };
        entries.extend(
            named_tensors_with_prefix(module, node.path)
                .into_iter()
                .map(|named| TensorEntry {
                    owner,
                    name: named.name,
                    tensor: named.tensor,
                    role: named.role,
                }),
        );
    }
    entries
}

/// The tensors of a model's entries, indexed to find ties ([`crate::tied::TieIndex`]).
pub(crate) struct EntryTies {
    index: TieIndex,
    /// The tie leader of each entry.
    leaders: Vec<usize>,
}

impl EntryTies {
    pub(super) fn new(entries: &[TensorEntry]) -> Self {
        let index = TieIndex::new(entries.iter().map(|entry| &entry.tensor));
        let leaders = index.leaders();
        EntryTies { index, leaders }
    }

    /// The first entry before `index` that is the same tensor, if any.
    pub(super) fn tied_before<'e>(
        &self,
        entries: &'e [TensorEntry],
        index: usize,
    ) -> Option<&'e TensorEntry> {
        let leader = self.leaders[index];
        (leader != index).then(|| &entries[leader])
    }

    /// For each tensor of the slot's innermost layer, the entries of other nodes that are
    /// the same tensor: `(the tensor's full name, the other entry)`.
    pub(super) fn partners_of_root<'e>(
        &self,
        entries: &'e [TensorEntry],
        node: usize,
        path: &str,
        slot: &dyn AnySlot,
    ) -> Vec<(String, &'e TensorEntry)> {
        let mut partners = Vec::new();
        for root in named_tensors_with_prefix(slot.root_parameters(), path) {
            for other in self.index.tied_to(&root.tensor).map(|at| &entries[at]) {
                if other.owner != node {
                    partners.push((root.name.clone(), other));
                }
            }
        }
        partners
    }
}
