use tch::{nn, nn::Module, Tensor};
use tch_patch::{patch, patch_forward};

#[patch(from = nn::Linear)]
struct Dropped {}

#[patch_forward]
impl Dropped {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward(xs).dropout(0.5, train)
    }
}

fn main() {}
