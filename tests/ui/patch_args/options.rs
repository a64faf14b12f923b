// `patch` and `over` that do not fit together; every mistake is reported in one pass.
use tch_patch::registry::PatchArgs;

#[derive(PatchArgs)]
#[patch_args(name = "a", patch = Gain<_>)]
struct NoSlotTypes {}

#[derive(PatchArgs)]
#[patch_args(name = "b", patch = Rows, over(nn::Embedding))]
struct OverForAPatchOfOneType {}

#[derive(PatchArgs)]
#[patch_args(name = "c", over(nn::Linear))]
struct OverWithoutPatch {}

#[derive(PatchArgs)]
#[patch_args(name = "d", patch = _)]
struct NoPatchType {}

#[derive(PatchArgs)]
#[patch_args(name = "e", patch = Gain<_>, over(nn::Linear, nn::Linear), colour = 3)]
struct Twice {}

fn main() {}
