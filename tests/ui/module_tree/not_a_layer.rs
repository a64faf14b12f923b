// A slot of a module that is not a `Layer`: the message says how to make it one.
use tch::{nn, Tensor};
use tch_patch::Slot;

#[derive(Debug)]
struct Gelu;

impl nn::Module for Gelu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.gelu("none")
    }
}

fn main() {
    let _slot = Slot::new(Gelu);
}
