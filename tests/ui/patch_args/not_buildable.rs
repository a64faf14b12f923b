// A `#[patch]` struct named by `patch = ...` without a `BuildPatch` impl: the registry
// could not build it from the config.
use tch::{nn, nn::ModuleT};
use tch_patch::registry::PatchArgs;
use tch_patch::{patch, Layer};

#[derive(PatchArgs)]
#[patch_args(name = "gain", patch = Gain<_>, over(nn::Linear))]
struct GainConfig {}

#[patch(from = L, name = "gain", module_t)]
struct Gain<L: Layer + ModuleT> {}

fn main() {}
