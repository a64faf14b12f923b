// A patch generic over linear-like bases, over a convolution's slot too: its
// `BuildPatch` impl does not cover what a `Slot<nn::Conv2D>` holds.
use tch::{nn, nn::ModuleT};
use tch_patch::patches::{BuildError, BuildPatch, LinearLike};
use tch_patch::registry::PatchArgs;
use tch_patch::{patch, Layer};

#[derive(PatchArgs)]
#[patch_args(name = "rescale", patch = Rescale<_>, over(nn::Linear, nn::Conv2D))]
struct RescaleConfig {}

#[patch(from = L, name = "rescale", module_t)]
struct Rescale<L: Layer + ModuleT> {}

impl<L: Layer + LinearLike> BuildPatch<L> for Rescale<L> {
    type Config = RescaleConfig;
    fn build(base: L, _: &nn::Path, _: &RescaleConfig) -> Result<Self, BuildError<L>> {
        Ok(Rescale { base })
    }
}

fn main() {}
