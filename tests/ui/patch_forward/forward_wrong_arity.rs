use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear)]
struct ExtraArgument {}

#[patch_forward]
impl ExtraArgument {
    fn forward(&self, xs: &tch::Tensor, scale: f64) -> tch::Tensor {
        xs * scale
    }
}

#[patch(from = tch::nn::Linear)]
struct NoInput {}

#[patch_forward]
impl NoInput {
    fn forward(&self) -> tch::Tensor {
        self.base.ws.shallow_clone()
    }
}

#[patch(from = tch::nn::BatchNorm, module_t)]
struct IntTrainFlag {}

#[patch_forward]
impl IntTrainFlag {
    fn forward_t(&self, xs: &tch::Tensor, train: i64) -> tch::Tensor {
        xs * train
    }
}

#[patch(from = tch::nn::BatchNorm, module_t)]
struct NoTrainFlag {}

#[patch_forward]
impl NoTrainFlag {
    fn forward_t(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

#[patch(from = tch::nn::Linear)]
struct Generic {}

#[patch_forward]
impl Generic {
    fn forward<T>(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.shallow_clone()
    }
}

fn main() {}
