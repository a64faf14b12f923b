// `crate = path` is written unquoted in every attribute; a string says so.
use tch_patch::{patch, Parameters};

#[patch(from = tch::nn::Linear, crate = "tch_patch")]
struct Traced {}

#[derive(Parameters)]
#[parameters(crate = "tch_patch")]
struct Weights {
    #[param]
    w: tch::Tensor,
}

fn main() {}
