use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
struct Scaled {
    #[param(init = 1.0)]
    scale: tch::Tensor,
    #[buffer = "ids"]
    ids: tch::Tensor,
}

fn main() {}
