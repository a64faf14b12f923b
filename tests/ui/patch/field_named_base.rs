use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
struct Scaled {
    base: tch::nn::Linear,
    #[param]
    scale: tch::Tensor,
}

fn main() {}
