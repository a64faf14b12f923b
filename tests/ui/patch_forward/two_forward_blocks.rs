// Two `#[patch_forward]` blocks for one patch: a patch overrides its forward once.
use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear)]
struct Relu {}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.relu()
    }
}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.gelu("none")
    }
}

fn main() {}
