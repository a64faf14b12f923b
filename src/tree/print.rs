//! [`print_tree`]: a model as an indented tree, like PyTorch's module repr, with patches,
//! tensor shapes, ties and parameter counts.
use super::hyper::with_hyperparameters;
use super::query::Nodes;
use super::slot::short_type_name;
use super::ties::{tensor_entries, EntryTies, TensorEntry};
use super::visit::{ModuleTree, TreeNode};
use crate::params::TensorRole;
use std::fmt::Write;

/// The model as text: one line per node, indented by depth, then a line of totals.
///
/// * a slot shows its layer type, wrapped in its patches' names: `q: Lora(Linear)`;
/// * each layer shows its hyperparameters as PyTorch's repr does:
///   `Linear(in_features=4, out_features=8, bias=true)`;
/// * a fixed leaf (not a slot, so never patched, nor held by a replaceable
///   [`Node`](crate::tree::Node)) is marked `(fixed)`; a tensor field shows
///   its shape only;
/// * each tensor shows its shape, and in parentheses `frozen` (a parameter that does not
///   require grad), `buffer`, or `tied to <path>` (the same tensor seen earlier);
/// * the last line counts parameters (each tied tensor once; buffers not counted) and
///   trainable ones (those that require grad), and patched slots.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{tree::print_tree, ModuleTree, Slot};
///
/// #[derive(ModuleTree)]
/// struct Mlp { fc1: Slot<nn::Linear>, norm: nn::LayerNorm, fc2: Slot<nn::Linear> }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mlp = Mlp {
///     fc1: Slot::new(nn::linear(vs.root() / "fc1", 4, 8, Default::default())),
///     norm: nn::layer_norm(vs.root() / "norm", vec![8], Default::default()),
///     fc2: Slot::new(nn::linear(vs.root() / "fc2", 8, 2, Default::default())),
/// };
/// assert_eq!(print_tree(&mlp), "\
/// Mlp
///   fc1: Linear(in_features=4, out_features=8, bias=true): weight [8, 4], bias [8]
///   norm: LayerNorm(normalized_shape=[8], eps=1e-5, elementwise_affine=true) (fixed): weight [8], bias [8]
///   fc2: Linear(in_features=8, out_features=2, bias=true): weight [2, 8], bias [2]
/// parameters: 74 total, 74 trainable; slots: 0 of 2 patched
/// ");
/// ```
pub fn print_tree<M: ModuleTree + ?Sized>(model: &M) -> String {
    let nodes = Nodes::of(model);
    let entries = tensor_entries(&nodes);
    let ties = EntryTies::new(&entries);
    let mut out = String::new();
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); nodes.iter().count()];
    for (at, entry) in entries.iter().enumerate() {
        owned[entry.owner].push(at);
    }
    for (index, node) in nodes.iter().enumerate() {
        let indent = "  ".repeat(node.depth);
        let name = if node.depth == 0 {
            String::new()
        } else {
            format!("{}: ", node.path.rsplit('.').next().unwrap_or(node.path))
        };
        let tensors: Vec<String> = owned[index]
            .iter()
            .map(|&at| describe(&entries[at], node.path, ties.tied_before(&entries, at)))
            .collect();
        let Some(title) = module_title(node.node) else {
            let _ = writeln!(out, "{indent}{name}{}", tensors.join(", "));
            continue;
        };
        let _ = write!(out, "{indent}{name}{title}");
        if !tensors.is_empty() {
            let _ = write!(out, ": {}", tensors.join(", "));
        }
        out.push('\n');
    }
    let (mut total, mut trainable) = (0usize, 0usize);
    for (at, entry) in entries.iter().enumerate() {
        if entry.role == TensorRole::Param && ties.tied_before(&entries, at).is_none() {
            total += entry.tensor.numel();
            if entry.tensor.requires_grad() {
                trainable += entry.tensor.numel();
            }
        }
    }
    let slots: Vec<_> = nodes.slots().collect();
    let patched = slots.iter().filter(|s| s.slot.is_patched()).count();
    let _ = writeln!(
        out,
        "parameters: {} total, {} trainable; slots: {patched} of {} patched",
        group_digits(total),
        group_digits(trainable),
        slots.len()
    );
    out
}

/// How a module node is shown: its short type name, wrapped in its patches' names for a
/// slot (`Lora(Linear)`), marked `(fixed)` for a leaf. `None` for a tensor.
pub(super) fn module_title(node: TreeNode<'_>) -> Option<String> {
    Some(match node {
        TreeNode::Branch { type_name } => short_type_name(type_name),
        TreeNode::Leaf {
            type_name,
            hyperparameters,
            in_node,
            ..
        } => {
            let name = short_type_name(type_name);
            let title = with_hyperparameters(&name, &hyperparameters.hyperparameters());
            match in_node {
                true => title,
                false => format!("{title} (fixed)"),
            }
        }
        TreeNode::Slot(slot) => {
            let name = short_type_name(slot.root_type_name());
            let mut title = with_hyperparameters(&name, &slot.hyperparameters());
            for patch in slot.patch_names().iter().rev() {
                title = format!("{patch}({title})");
            }
            title
        }
        TreeNode::Tensor { .. } => return None,
    })
}

fn describe(entry: &TensorEntry, node_path: &str, tied: Option<&TensorEntry>) -> String {
    let relative = if entry.name == node_path {
        "" // a bare tensor node: its path names it already
    } else if node_path.is_empty() {
        entry.name.as_str()
    } else {
        entry
            .name
            .strip_prefix(node_path)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&entry.name)
    };
    let name = if relative.is_empty() {
        String::new()
    } else {
        format!("{relative} ")
    };
    let shape = entry
        .tensor
        .size()
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut notes = Vec::new();
    match entry.role {
        TensorRole::Buffer => notes.push("buffer".to_owned()),
        TensorRole::Param if !entry.tensor.requires_grad() => notes.push("frozen".to_owned()),
        TensorRole::Param => {}
    }
    if let Some(tied) = tied {
        notes.push(format!("tied to {}", tied.name));
    }
    if notes.is_empty() {
        format!("{name}[{shape}]")
    } else {
        format!("{name}[{shape}] ({})", notes.join(", "))
    }
}

/// `1234567` as `1,234,567`.
fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group_digits;

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
