//! The trait every module with tensors implements, and the list of its tensors by name.
use super::{named_tensors_with_prefix, NamedTensor, Visitor, VisitorMut};

/// A module whose tensors can be listed by name.
///
/// Implemented for tch's layers (`Linear`, `Embedding`, `Conv*`, `ConvTranspose*`,
/// `LayerNorm`, `GroupNorm`, `BatchNorm` with its running statistics as buffers; tch keeps
/// its RNNs' weights private, so they are not covered), for `Tensor`, `Option`, `Box`, `Vec`,
/// slices and arrays, generated for every `#[patch]` struct and derived for a model struct:
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{named_tensors, Parameters, params::TensorRole};
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no named tensors: it does not implement `Parameters`",
    label = "not a `Tensor` or a module that implements `Parameters`",
    note = "a field of a `#[derive(Parameters)]` struct is a `Tensor` (a parameter, or a buffer with `#[buffer]`), a module that implements `Parameters` (tch's layers do; derive it on your own), or `#[param(skip)]` when it holds no tensor of the model"
)]
pub trait Parameters {
    /// Calls the visitor once per tensor, in a fixed order.
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>);
    /// Calls the visitor once per tensor with mutable access, in the order of `visit`.
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>);
}

/// Every tensor of `module`, by name, in visiting order.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{named_tensors, params::TensorRole};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let names: Vec<_> = named_tensors(&linear).into_iter().map(|t| t.name).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// ```
pub fn named_tensors<M: Parameters + ?Sized>(module: &M) -> Vec<NamedTensor> {
    named_tensors_with_prefix(module, "")
}
