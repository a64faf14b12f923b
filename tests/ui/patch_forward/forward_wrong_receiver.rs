use tch::nn;
use tch_patch::{patch, patch_forward};

#[patch(from = nn::Linear)]
struct ByMut {}

#[patch_forward]
impl ByMut {
    fn forward(&mut self, xs: &tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

#[patch(from = nn::Linear)]
struct ByValue {}

#[patch_forward]
impl ByValue {
    fn forward(self, xs: &tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

#[patch(from = nn::Linear)]
struct NoSelf {}

#[patch_forward]
impl NoSelf {
    fn forward(xs: &tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

fn main() {}
