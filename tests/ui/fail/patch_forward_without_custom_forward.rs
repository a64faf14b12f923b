use tch::{nn, nn::Module, Tensor};
use tch_patch::{patch, patch_forward};

#[patch(from = nn::Linear)]
struct Relu {}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs).relu()
    }
}

fn main() {}
