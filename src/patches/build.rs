//! Building a patch from its typed config, giving the parent back on failure.
use crate::error::PatchError;
use crate::registry::{PatchArgs, PatchSpec};
use tch::nn;

/// A patch that can be built over a parent of type `B` from its registered config: the
/// constructor a rule calls for every module a patch string's `targets` match.
///
/// On failure the parent comes back untouched in [`BuildError::base`] and the VarStore is
/// as it was, so a caller that took the parent out of a model can put it back.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::patches::{BuildPatch, Lora};
/// use tch_patch::registry::Registry;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let spec = Registry::global()?.parse_one(r#"lora(rank=2, targets="fc")"#)?;
/// let linear = nn::linear(vs.root() / "fc", 4, 4, Default::default());
/// let lora = Lora::build_from_spec(linear, &(vs.root() / "fc"), &spec).map_err(|e| e.error)?;
/// assert_eq!(lora.config().rank, 2);
///
/// // A second LoRA at the same path: the names are taken; the parent comes back.
/// let other = nn::linear(vs.root() / "fc2", 4, 4, Default::default());
/// let failed = Lora::build_from_spec(other, &(vs.root() / "fc"), &spec).unwrap_err();
/// assert_eq!(failed.base.ws.size(), [4, 4]);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be built over `{B}` from a config: it does not implement `BuildPatch<{B}>`",
    label = "no `BuildPatch<{B}>` impl",
    note = "implement `BuildPatch` for the patch to say how it is built over its base: `type Config` is its config, `fn build(base, path, config)` makes it; a patch named as `#[patch_args(patch = MyPatch<_>, ...)]` wraps any slot's content, so its impl is generic: `impl<L: Layer> BuildPatch<L> for MyPatch<L>`"
)]
pub trait BuildPatch<B>: Sized {
    /// The patch's typed config, registered under the patch's name.
    type Config: PatchArgs;

    /// Builds the patch over `base`; `path` is where `base` lives in its VarStore (the
    /// patch registers its own tensors there).
    fn build(base: B, path: &nn::Path, config: &Self::Config) -> Result<Self, BuildError<B>>;

    /// Builds the patch from a checked spec of a patch string (an error if the spec is of
    /// another patch).
    fn build_from_spec(base: B, path: &nn::Path, spec: &PatchSpec) -> Result<Self, BuildError<B>> {
        match spec.config::<Self::Config>() {
            Ok(config) => Self::build(base, path, &config),
            Err(error) => Err(BuildError { error, base }),
        }
    }
}

/// A failed [`BuildPatch::build`]: why, and the parent, untouched.
#[derive(Debug)]
pub struct BuildError<B> {
    /// What went wrong.
    pub error: PatchError,
    /// The parent given to `build`, as it was.
    pub base: B,
}

impl<B> From<BuildError<B>> for PatchError {
    fn from(failed: BuildError<B>) -> Self {
        failed.error
    }
}

impl<B> BuildError<B> {
    pub(crate) fn new(error: PatchError, base: B) -> Self {
        BuildError { error, base }
    }
}
