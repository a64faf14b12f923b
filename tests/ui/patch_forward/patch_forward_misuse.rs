use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear)]
struct Relu {}

// No forward in the block.
#[patch_forward]
impl Relu {
    fn relu(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.relu()
    }
}

#[patch(from = tch::nn::Linear)]
struct Gelu {}

// Arguments on the attribute.
#[patch_forward(module_t)]
impl Gelu {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.gelu("none")
    }
}

// Not an impl block at all.
#[patch_forward]
fn forward(xs: &tch::Tensor) -> tch::Tensor {
    xs.relu()
}

fn main() {}
