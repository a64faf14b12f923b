use tch_patch::patch;

#[patch(custom_forward)]
struct Scaled {
    #[param]
    scale: tch::Tensor,
}

fn main() {}
