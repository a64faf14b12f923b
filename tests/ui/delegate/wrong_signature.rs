use tch_patch::{delegatable, delegate_rest, patch};

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
impl Describe for Block {
    fn name(&self) -> String {
        "block".into()
    }
    fn width(&self) -> i64 {
        3
    }
}

#[patch(from = Block)]
pub struct Patched {}

#[delegate_rest]
impl Describe for Patched {
    fn name(&self, loud: bool) -> String {
        format!("patched {loud}")
    }
    fn width(&self) -> u8 {
        3
    }
}

fn main() {}
