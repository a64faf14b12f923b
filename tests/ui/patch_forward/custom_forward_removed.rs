// `custom_forward` is no longer needed: a `#[patch_forward]` block overrides the forward by
// itself. One error, at the option; the struct and its block still compile.
use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear, custom_forward)]
struct Relu {}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.relu()
    }
}

fn main() {}
