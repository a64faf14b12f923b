use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
struct Scaled {
    #[param]
    #[buffer]
    scale: tch::Tensor,
    #[param]
    #[param]
    shift: tch::Tensor,
}

fn main() {}
