//! Named tensor trees: every tensor of a module, with its dotted name and its role.
//!
//! Names follow PyTorch's `state_dict` convention (`blocks.3.attn.q.weight`) and tch's
//! VarStore: a module built from `vs.root() / "blocks" / 3 / "attn" / "q"` has its weight at
//! `blocks.3.attn.q.weight` in both, since tch joins path parts with `.` too. A patch keeps
//! its parent's names unchanged and adds its own tensors after them under their field names.
mod tch_layers;
mod visitor;

pub use visitor::{Visitor, VisitorMut};

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

/// A module whose tensors can be listed by name.
///
/// Implemented for tch's layers, generated for every `#[patch]` struct.
pub trait Parameters {
    /// Calls the visitor once per tensor, in a fixed order.
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>);
    /// Calls the visitor once per tensor with mutable access, in the order of `visit`.
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>);
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

/// Every tensor of `module`, by name, in visiting order.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{named_tensors, TensorRole};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let names: Vec<_> = named_tensors(&linear).into_iter().map(|t| t.name).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// ```
pub fn named_tensors<M: Parameters + ?Sized>(module: &M) -> Vec<NamedTensor> {
    named_tensors_with_prefix(module, "")
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
pub fn join_name(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{name}"),
    }
}
