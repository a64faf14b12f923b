// `leaf_layer!(rebuild: T)` for a layer that does not implement `tree::Rebuild`: the
// message says what to implement, or which form to use instead.
use tch::{nn, Tensor};
use tch_patch::tree::{HyperList, Hyperparameters};
use tch_patch::{leaf_layer, Parameters};

#[derive(Debug, Parameters)]
struct Scale {
    #[param(skip)]
    factor: f64,
}

impl nn::Module for Scale {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs * self.factor
    }
}

impl Hyperparameters for Scale {
    fn hyperparameters(&self) -> HyperList {
        vec![("factor", self.factor.into())]
    }
}

leaf_layer!(rebuild: Scale);

fn main() {}
