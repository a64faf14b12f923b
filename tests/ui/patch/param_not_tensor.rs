use tch_patch::patch;

#[patch(from = tch::nn::Linear)]
struct Scaled {
    #[param]
    scale: f64,
    #[buffer]
    ids: Vec<i64>,
    #[param]
    maybe: Option<tch::Tensor>,
}

fn main() {}
