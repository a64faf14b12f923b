//! "Dropout before linear", the PyGlove tutorial's example patch: dropout on a module's
//! input in training mode, then the module.
use super::build::{BuildError, BuildPatch, TrainMode};
use super::linear_like::LinearLike;
use crate::error::Result;
use crate::registry::PatchArgs;
use crate::{patch, patch_forward};
use tch::{nn, nn::Module, Tensor};

/// Dropout on a module's input, in training mode only.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "dropout_before", default, patch = DropoutBefore<_>, over(nn::Linear), crate = crate)]
pub struct DropoutBeforeConfig {
    /// probability of zeroing an input element
    #[arg(default = 0.1, range = 0.0..1.0)]
    pub p: f64,
}

/// Any module with dropout (probability `p`) applied to its input first, in training mode
/// only ([`TrainMode::set_training`]; off when built, so forward is then exactly the
/// base's). The base is not frozen: this patch changes what is computed, not what trains.
/// It adds no tensor.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::patches::{DropoutBefore, DropoutBeforeConfig, TrainMode};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 16, 4, Default::default());
/// let mut patched = DropoutBefore::new(linear, &DropoutBeforeConfig { p: 0.5 })?;
/// let xs = Tensor::ones([8, 16], (Kind::Float, Device::Cpu));
/// assert!(patched.forward(&xs).equal(&patched.base().forward(&xs))); // eval mode
/// patched.set_training(true);
/// assert!(!patched.forward(&xs).equal(&patched.base().forward(&xs)));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = M, name = "dropout_before", custom_forward, crate = crate)]
pub struct DropoutBefore<M: Module> {
    p: f64,
    training: bool,
}

impl<M: Module> DropoutBefore<M> {
    /// Patches `base`. An error (with `base` dropped) if `p` is outside `0.0..1.0`.
    pub fn new(base: M, config: &DropoutBeforeConfig) -> Result<Self> {
        config.validate()?;
        Ok(DropoutBefore {
            base,
            p: config.p,
            training: false,
        })
    }

    /// The dropout probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    fn input(&self, xs: &Tensor) -> Tensor {
        if self.training && self.p > 0.0 {
            xs.dropout(self.p, true)
        } else {
            xs.shallow_clone()
        }
    }
}

#[patch_forward(crate = crate)]
impl<M: Module> DropoutBefore<M> {
    /// The base's forward on the input after dropout (training mode) or as is (eval).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(&self.input(xs))
    }
}

impl<M: Module> BuildPatch<M> for DropoutBefore<M> {
    type Config = DropoutBeforeConfig;

    /// `path` is not used: the patch adds no tensor.
    fn build(
        base: M,
        _path: &nn::Path,
        config: &DropoutBeforeConfig,
    ) -> Result<Self, BuildError<M>> {
        match config.validate() {
            Ok(()) => Ok(DropoutBefore {
                base,
                p: config.p,
                training: false,
            }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

impl<M: Module> TrainMode for DropoutBefore<M> {
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }
}

impl<M: LinearLike> LinearLike for DropoutBefore<M> {
    fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    fn forward_detached(&self, xs: &Tensor) -> Tensor {
        self.base.forward_detached(&self.input(xs))
    }
}
