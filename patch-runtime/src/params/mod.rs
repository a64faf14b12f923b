//! Named tensor trees: every tensor of a module, with its dotted name and its role.
//!
//! Names follow PyTorch's `state_dict` convention (`blocks.3.attn.q.weight`) and tch's
//! VarStore: a module built from `vs.root() / "blocks" / 3 / "attn" / "q"` has its weight at
//! `blocks.3.attn.q.weight` in both, since tch joins path parts with `.` too. A patch keeps
//! its parent's names unchanged and adds its own tensors after them under their field names.
mod containers;
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
/// Implemented for tch's layers (`Linear`, `Embedding`, `Conv*`, `ConvTranspose*`,
/// `LayerNorm`, `GroupNorm`, `BatchNorm` with its running statistics as buffers; tch keeps
/// its RNNs' weights private, so they are not covered), for `Tensor`, `Option`, `Box`, `Vec`,
/// slices and arrays, generated for every `#[patch]` struct and derived for a model struct:
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{named_tensors, Parameters, TensorRole};
///
/// #[derive(Parameters)]
/// struct Block {
///     attn: nn::Linear,
///     norm: Option<nn::LayerNorm>,
/// }
///
/// #[derive(Parameters)]
/// struct Model {
///     embed: nn::Embedding,
///     blocks: Vec<Block>,
///     #[buffer]
///     position_ids: Tensor,
///     #[param(skip)]
///     scratch: Tensor,
///     #[param(rename = "lm_head")]
///     head: nn::Linear,
/// }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let root = vs.root();
/// let block = |i: i64| Block {
///     attn: nn::linear(&root / "blocks" / i / "attn", 4, 4, Default::default()),
///     norm: (i == 0).then(|| nn::layer_norm(&root / "blocks" / i / "norm", vec![4], Default::default())),
/// };
/// let model = Model {
///     embed: nn::embedding(&root / "embed", 10, 4, Default::default()),
///     blocks: vec![block(0), block(1)],
///     position_ids: Tensor::arange(8, (tch::Kind::Int64, Device::Cpu)),
///     scratch: Tensor::zeros([1], tch::kind::FLOAT_CPU),
///     head: nn::linear(&root / "lm_head", 4, 10, Default::default()),
/// };
/// let names: Vec<_> = named_tensors(&model).into_iter().map(|t| t.name).collect();
/// assert_eq!(names, [
///     "embed.weight",
///     "blocks.0.attn.weight", "blocks.0.attn.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
///     "blocks.1.attn.weight", "blocks.1.attn.bias",
///     "position_ids",
///     "lm_head.weight", "lm_head.bias",
/// ]);
/// // The same names as tch's VarStore, since the model was built at matching paths.
/// let mut in_store: Vec<_> = vs.variables().into_keys().collect();
/// in_store.sort();
/// let mut ours: Vec<_> = names.into_iter().filter(|n| *n != "position_ids").collect();
/// ours.sort();
/// assert_eq!(ours, in_store);
/// ```
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
