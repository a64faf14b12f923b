//! Named tensor trees: every tensor of a module, with its dotted name and its role.
//!
//! Names follow PyTorch's `state_dict` convention (`blocks.3.attn.q.weight`) and tch's
//! VarStore: a module built from `vs.root() / "blocks" / 3 / "attn" / "q"` has its weight at
//! `blocks.3.attn.q.weight` in both, since tch joins path parts with `.` too. A patch keeps
//! its parent's names unchanged and adds its own tensors after them under their field names.
mod containers;
pub(crate) mod parameters;
mod tch_layers;
mod visitor;

pub use crate::error::TensorProblem;
pub use crate::varstore::unregistered_tensors;
pub use visitor::{Visitor, VisitorMut};

pub(crate) use parameters::{named_tensors, Parameters};

use tch::Tensor;

/// What a tensor of a module is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorRole {
    /// A parameter: optimised when it requires grad (`nn::Parameter` in PyTorch).
    Param,
    /// A buffer: state saved and loaded with the module, never trained (running
    /// statistics, index tables). `register_buffer` in PyTorch.
    Buffer,
}

/// A tensor's dotted name, role and a shallow handle to it (no storage copied).
#[derive(Debug)]
pub struct NamedTensor {
    /// Dotted name, e.g. `weight` or `emb.delta`.
    pub name: String,
    /// Parameter or buffer.
    pub role: TensorRole,
    /// A shallow handle: the same storage as the module's tensor.
    pub tensor: Tensor,
}

/// Like [`named_tensors`], with every name under `prefix` (e.g. the VarStore path the module
/// was built at: `named_tensors_with_prefix(&linear, "fc")` gives `fc.weight`).
pub fn named_tensors_with_prefix<M: Parameters + ?Sized>(
    module: &M,
    prefix: &str,
) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    let mut collect = |name: &str, tensor: &Tensor, role: TensorRole| {
        out.push(NamedTensor {
            name: name.to_owned(),
            role,
            tensor: tensor.shallow_clone(),
        })
    };
    let mut visitor = Visitor::new(prefix, &mut collect);
    module.visit(&mut visitor);
    out
}

/// Joins a prefix and a name the way tch and PyTorch do (`a.b` + `c` = `a.b.c`).
pub(crate) fn join_name(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::join_name;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,6}|[0-9]{1,2}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn joined_names_split_back_into_their_segments(
            prefix in prop::collection::vec(segment(), 0..4),
            name in prop::collection::vec(segment(), 0..4),
        ) {
            let joined = join_name(&prefix.join("."), &name.join("."));
            let expected: Vec<String> = prefix.iter().chain(&name).cloned().collect();
            let split: Vec<String> = if joined.is_empty() {
                Vec::new()
            } else {
                joined.split('.').map(String::from).collect()
            };
            prop_assert_eq!(split, expected);
        }
    }
}
