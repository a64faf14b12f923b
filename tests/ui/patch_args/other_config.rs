// The patch type is built from another config than the one that names it.
use tch::{nn, nn::ModuleT};
use tch_patch::patches::{BuildError, BuildPatch};
use tch_patch::registry::PatchArgs;
use tch_patch::{patch, Layer};

#[derive(PatchArgs)]
#[patch_args(name = "gain", patch = Gain<_>, over(nn::Linear))]
struct GainConfig {}

#[derive(PatchArgs)]
#[patch_args(name = "other")]
struct OtherConfig {}

#[patch(from = L, name = "gain", module_t)]
struct Gain<L: Layer + ModuleT> {}

impl<L: Layer + ModuleT> BuildPatch<L> for Gain<L> {
    type Config = OtherConfig;
    fn build(base: L, _: &nn::Path, _: &OtherConfig) -> Result<Self, BuildError<L>> {
        Ok(Gain { base })
    }
}

fn main() {}
