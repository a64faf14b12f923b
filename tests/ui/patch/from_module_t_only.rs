use tch_patch::patch;

#[patch(from = tch::nn::BatchNorm)]
struct Traced {}

fn main() {}
