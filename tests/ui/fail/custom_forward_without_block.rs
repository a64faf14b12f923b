use tch::{nn, nn::Module, Tensor};
use tch_patch::patch;

#[patch(from = nn::Linear, custom_forward)]
struct Relu {}

// A plain impl block: without `#[patch_forward]` this `forward` is not the module's.
impl Relu {
    #[allow(dead_code)]
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs).relu()
    }
}

fn main() {}
