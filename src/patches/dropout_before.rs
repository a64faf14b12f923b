//! "Dropout before linear", the PyGlove tutorial's example patch: dropout on a module's
//! input in training mode, then the module.
use super::build::{BuildError, BuildPatch};
use super::linear_like::LinearLike;
use crate::error::Result;
use crate::registry::PatchArgs;
use crate::{patch, patch_forward};
use tch::{nn, nn::ModuleT, Tensor};

/// Dropout on a module's input, in training mode only.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "dropout_before", default, patch = DropoutBefore<_>, over(nn::Linear))]
pub struct DropoutBeforeConfig {
    /// probability of zeroing an input element
    #[arg(default = 0.1, range = 0.0..=1.0)]
    pub p: f64,
}

/// Any module with dropout (probability `p`, `0 <= p <= 1` as in torch) applied to its
/// input first, when the train flag is on.
///
/// An `nn::ModuleT` only, as tch's own `nn::Dropout`: `forward_t(xs, train)` drops input
/// elements iff `train` (and `p > 0`), then calls the base's `forward_t(xs, train)`, so a
/// train-dependent base (`nn::BatchNorm`, another patch) sees the flag too. With
/// `train = false` the output is exactly the base's. There is no `forward(xs)`, which could
/// only guess the flag: `patched.forward(&xs)` is a compile error, not a silent eval
/// forward (nor the base's forward through `Deref`). The base is not frozen:
/// this patch changes what is computed, not what trains. It adds no tensor.
///
/// ```
/// use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::patches::{DropoutBefore, DropoutBeforeConfig};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 16, 4, Default::default());
/// let patched = DropoutBefore::new(linear, &DropoutBeforeConfig { p: 0.5 })?;
/// let xs = Tensor::ones([8, 16], (Kind::Float, Device::Cpu));
/// let base = patched.base().forward(&xs);
/// assert!(patched.forward_t(&xs, false).equal(&base)); // eval: the base's, bit for bit
/// assert!(!xs.apply_t(&patched, true).equal(&base)); // training: dropout
///
/// // p = 1 drops every element: the base sees zeros.
/// let all = DropoutBefore::new(patched.into_base(), &DropoutBeforeConfig { p: 1.0 })?;
/// let zeros = all.base().forward(&xs.zeros_like());
/// assert!(all.forward_t(&xs, true).equal(&zeros));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = M, name = "dropout_before", module_t)]
pub struct DropoutBefore<M: ModuleT> {
    p: f64,
}

impl<M: ModuleT> DropoutBefore<M> {
    /// Patches `base`. An error (with `base` dropped) if `p` is outside `0.0..=1.0`.
    pub fn new(base: M, config: &DropoutBeforeConfig) -> Result<Self> {
        config.validate()?;
        Ok(DropoutBefore { base, p: config.p })
    }

    /// The dropout probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The input after dropout when `train` (and `p > 0`), or as is.
    fn input(&self, xs: &Tensor, train: bool) -> Tensor {
        if train && self.p > 0.0 {
            xs.dropout(self.p, true)
        } else {
            xs.shallow_clone()
        }
    }
}

#[patch_forward]
impl<M: ModuleT> DropoutBefore<M> {
    /// The base's `forward_t(_, train)` on the input after dropout (`train`) or as is.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_t(&self.input(xs, train), train)
    }
}

impl<M: ModuleT> BuildPatch<M> for DropoutBefore<M> {
    type Config = DropoutBeforeConfig;

    /// `path` is not used: the patch adds no tensor.
    fn build(
        base: M,
        _path: &nn::Path,
        config: &DropoutBeforeConfig,
    ) -> Result<Self, BuildError<M>> {
        match config.validate() {
            Ok(()) => Ok(DropoutBefore { base, p: config.p }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

impl<M: LinearLike> LinearLike for DropoutBefore<M> {
    fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    fn fan_in_fan_out(&self) -> bool {
        self.base.fan_in_fan_out()
    }

    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_detached(&self.input(xs, train), train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PatchError;
    use tch::{nn::Module, Device, Kind};

    #[test]
    fn p_is_in_zero_to_one_inclusive() {
        for p in [0.0, 0.5, 1.0] {
            assert!(DropoutBeforeConfig { p }.validate().is_ok(), "{p}");
        }
        for p in [-0.1, 1.5, f64::NAN] {
            let error = DropoutBeforeConfig { p }.validate().unwrap_err();
            assert!(
                matches!(&error, PatchError::PatchString(crate::registry::PatchStringError::ArgumentOutOfRange { name, .. }) if name == "p"),
                "{p}: {error}"
            );
        }
    }

    #[test]
    fn the_train_flag_decides_dropout_and_reaches_the_base() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 4, 2, Default::default());
        let patched = DropoutBefore::new(linear, &DropoutBeforeConfig { p: 1.0 }).unwrap();
        let xs = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        assert!(patched
            .forward_t(&xs, false)
            .equal(&patched.base.forward(&xs)));
        let zeros = patched.base.forward(&xs.zeros_like());
        assert!(patched.forward_t(&xs, true).equal(&zeros));
        assert!(patched.forward_detached(&xs, true).equal(&zeros));
        assert!(patched
            .forward_detached(&xs, false)
            .equal(&patched.base.forward(&xs)));
    }
}
