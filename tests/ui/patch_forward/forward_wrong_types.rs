use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear)]
struct OwnedInput {}

#[patch_forward]
impl OwnedInput {
    fn forward(&self, xs: tch::Tensor) -> tch::Tensor {
        xs
    }
}

#[patch(from = tch::nn::Linear)]
struct MutInput {}

#[patch_forward]
impl MutInput {
    fn forward(&self, xs: &mut tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

#[patch(from = tch::nn::Linear)]
struct WrongReturn {}

#[patch_forward]
impl WrongReturn {
    fn forward(&self, xs: &tch::Tensor) -> f64 {
        xs.double_value(&[])
    }
}

#[patch(from = tch::nn::Linear)]
struct NoReturn {}

#[patch_forward]
impl NoReturn {
    fn forward(&self, xs: &tch::Tensor) {
        let _ = xs;
    }
}

fn main() {}
