use tch_patch::{patch, patch_forward};

#[patch(from = tch::nn::Linear)]
struct Relu {}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs.relu()
    }

    fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
        xs.dropout(0.5, train)
    }
}

fn main() {}
