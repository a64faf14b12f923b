use tch_patch::patch;

#[patch(from = tch::nn::Linear, from = tch::nn::Conv2D)]
struct Traced {}

#[patch(from = tch::nn::Linear, name = "a", module_t, name = "b", module_t)]
struct Named {}

fn main() {}
