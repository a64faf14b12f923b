use tch_patch::patch;

#[patch(from = tch::nn::Linear, from = tch::nn::Conv2D)]
struct Traced {}

#[patch(from = tch::nn::Linear, name = "a", custom_forward, name = "b", custom_forward)]
struct Named {}

fn main() {}
