use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
struct Scaled(#[param] tch::Tensor);

fn main() {}
