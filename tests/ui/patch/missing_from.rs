use tch_patch::patch;

#[patch(module_t)]
struct Scaled {
    #[param]
    scale: tch::Tensor,
}

fn main() {}
