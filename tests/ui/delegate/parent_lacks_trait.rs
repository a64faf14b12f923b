use tch_patch::{delegatable, patch};

#[delegatable]
pub trait Describe {
    fn name(&self) -> String;
    fn width(&self) -> i64;
}

#[derive(Debug)]
pub struct Block(tch::nn::Linear);
impl tch::nn::Module for Block {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        self.0.forward(xs)
    }
}

#[patch(from = Block, delegate(Describe))]
pub struct Patched {}

fn main() {}
