//! Tied tensors: one tensor reachable under two paths (an input embedding and an output
//! head sharing one table). Found with `Tensor::is_set_to` (same storage, offset, sizes and
//! strides), bucketed by first-element address as in [`crate::tied`] (sparse tensors, whose
//! `data_ptr` would panic, in one bucket) so a model is scanned in near-linear time.
use super::query::Nodes;
use super::slot::AnySlot;
use super::visit::TreeNode;
use crate::params::{named_tensors_with_prefix, TensorRole};
use crate::tied::first_element_address;
use std::collections::HashMap;
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

/// The bucket of a tensor: its first element's address (`Some(None)` for a sparse or MKL-DNN
/// tensor, compared with all others of its kind), `None` for an undefined one.
fn pointer(tensor: &Tensor) -> Option<Option<usize>> {
    tensor.defined().then(|| first_element_address(tensor))
}

/// Tensors grouped by address, to find ties quickly.
pub(crate) struct TieIndex {
    by_pointer: HashMap<Option<usize>, Vec<usize>>,
}

impl TieIndex {
    pub(super) fn new(entries: &[TensorEntry]) -> Self {
        let mut by_pointer: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            if let Some(pointer) = pointer(&entry.tensor) {
                by_pointer.entry(pointer).or_default().push(index);
            }
        }
        TieIndex { by_pointer }
    }

    /// Entries that are the same tensor as `tensor`, in the model's order.
    pub(super) fn same_tensor<'e>(
        &self,
        entries: &'e [TensorEntry],
        tensor: &Tensor,
    ) -> impl Iterator<Item = (usize, &'e TensorEntry)> + 'e {
        let candidates = pointer(tensor)
            .and_then(|p| self.by_pointer.get(&p))
            .cloned()
            .unwrap_or_default();
        let tensor = tensor.shallow_clone();
        candidates
            .into_iter()
            .map(move |index| (index, &entries[index]))
            .filter(move |(_, entry)| entry.tensor.is_set_to(&tensor))
    }

    /// The first entry before `index` that is the same tensor, if any.
    pub(super) fn tied_before<'e>(
        &self,
        entries: &'e [TensorEntry],
        index: usize,
    ) -> Option<&'e TensorEntry> {
        self.same_tensor(entries, &entries[index].tensor)
            .find(|(other, _)| *other < index)
            .map(|(_, entry)| entry)
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
            for (_, other) in self.same_tensor(entries, &root.tensor) {
                if other.owner != node {
                    partners.push((root.name.clone(), other));
                }
            }
        }
        partners
    }
}
