use tch_patch::patch;

pub trait Describe {
    fn name(&self) -> String;
}

#[derive(Debug)]
pub struct Block(tch::nn::Linear);
impl tch::nn::Module for Block {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        self.0.forward(xs)
    }
}
impl Describe for Block {
    fn name(&self) -> String {
        "block".into()
    }
}

#[patch(from = Block, delegate(Describe))]
pub struct Patched {}

fn main() {}
