// A `#[patch]` struct named by `patch = ...` without a `BuildPatch` impl: the registry
// could not build it from the config.
use tch::{nn, nn::Module};
use tch_patch::registry::PatchArgs;
use tch_patch::{patch, Layer};

#[derive(PatchArgs)]
#[patch_args(name = "gain", patch = Gain<_>, over(nn::Linear))]
struct GainConfig {}

#[patch(from = L, name = "gain")]
struct Gain<L: Layer + Module> {}

fn main() {}
