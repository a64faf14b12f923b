//! Bias-only tuning: a frozen linear layer plus a trainable offset of its output.
use super::build::{BuildError, BuildPatch};
use super::linear_like::{self, LinearLike};
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use crate::registry::PatchArgs;
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use tch::{nn, Tensor};

/// Bias-only tuning: trains an offset of a frozen linear layer's bias.
#[derive(Debug, Clone, PartialEq, Default, PatchArgs)]
#[patch_args(name = "bias_only", patch = BiasOnly<_>, over(nn::Linear))]
pub struct BiasOnlyConfig {}

/// A linear-like module whose weight and bias are frozen, plus a trainable
/// `bias_delta: [out_features]` (zeros at first) added to its output: bias-only tuning
/// (BitFit) without touching the base's tensors, and for bases without a bias too.
///
/// The base runs through [`LinearLike::forward_detached`]: no gradient reaches its
/// tensors, the input still gets one. `bias_delta` is registered under the base's
/// VarStore path (`fc.bias_delta`).
///
/// An `nn::ModuleT` only: the base may be train-dependent (a stack holding dropout), so
/// `forward_t(xs, train)` passes `train` on to it; there is no `forward(xs)` to lose it.
///
/// ```
/// use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::patches::{BiasOnly, BiasOnlyConfig};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let patched = BiasOnly::new(linear, &(vs.root() / "fc"), &BiasOnlyConfig {})?;
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
/// assert!(patched.forward_t(&xs, false).equal(&patched.base().forward(&xs)));
/// assert_eq!(patched.bias_delta().size(), [2]);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = L, name = "bias_only", module_t)]
pub struct BiasOnly<L: LinearLike> {
    /// The trainable offset, `[out_features]`.
    #[param]
    bias_delta: Tensor,
}

impl<L: LinearLike> BiasOnly<L> {
    /// Patches `base`; `path` is where `base` lives in its VarStore. Errors, with `base`
    /// dropped and the VarStore unchanged: a weight that is not 2-D or not floating point,
    /// `bias_delta` already taken at `path`.
    pub fn new(base: L, path: &nn::Path, config: &BiasOnlyConfig) -> Result<Self> {
        Self::build(base, path, config).map_err(|failed| failed.error)
    }

    /// The trainable offset: the VarStore's tensor.
    pub fn bias_delta(&self) -> &Tensor {
        &self.bias_delta
    }
}

#[patch_forward]
impl<L: LinearLike> BiasOnly<L> {
    /// The frozen base's output (given `train`) plus `bias_delta`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_detached(xs, train) + &self.bias_delta
    }
}

impl<L: LinearLike> BuildPatch<L> for BiasOnly<L> {
    type Config = BiasOnlyConfig;

    fn build(base: L, path: &nn::Path, config: &BiasOnlyConfig) -> Result<Self, BuildError<L>> {
        match init(&base, path, config) {
            Ok([bias_delta]) => Ok(BiasOnly { base, bias_delta }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

fn init<L: LinearLike>(base: &L, path: &nn::Path, config: &BiasOnlyConfig) -> Result<[Tensor; 1]> {
    config.validate()?;
    let weight = base.weight();
    if weight.dim() != 2 {
        return Err(PatchError::ShapeMismatch {
            name: "weight".into(),
            actual: weight.size(),
            expected: "[out_features, in_features]".into(),
        });
    }
    if !weight.is_floating_point() {
        return Err(PatchError::KindMismatch {
            name: "weight".into(),
            actual: weight.kind(),
            expected: "a floating-point dtype".into(),
        });
    }
    let delta = Tensor::f_zeros([base.out_features()], (weight.kind(), weight.device()))
        .map_err(PatchError::torch("allocating bias_delta"))?;
    register_tensors(path, [("bias_delta", delta, TensorRole::Param)])
}

impl<L: LinearLike> LinearLike for BiasOnly<L> {
    fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    fn fan_in_fan_out(&self) -> bool {
        self.base.fan_in_fan_out()
    }

    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_detached(xs, train) + &*linear_like::detached(&self.bias_delta)
    }
}
