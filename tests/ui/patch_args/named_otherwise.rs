// The patch type's `NAME` (here the default, "Gain") is not the config's name: slots would
// report a patch that patch strings and saved adapters do not know.
use tch::{nn, nn::ModuleT};
use tch_patch::patches::{BuildError, BuildPatch};
use tch_patch::registry::PatchArgs;
use tch_patch::{patch, Layer};

#[derive(PatchArgs)]
#[patch_args(name = "gain", patch = Gain<_>, over(nn::Linear))]
struct GainConfig {}

#[patch(from = L, module_t)]
struct Gain<L: Layer + ModuleT> {}

impl<L: Layer + ModuleT> BuildPatch<L> for Gain<L> {
    type Config = GainConfig;
    fn build(base: L, _: &nn::Path, _: &GainConfig) -> Result<Self, BuildError<L>> {
        Ok(Gain { base })
    }
}

fn main() {}
