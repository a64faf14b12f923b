//! Building blocks that show in a module tree: a [`Sequential`] whose children are
//! replaceable [`Node`](crate::tree::Node)s at paths `0`, `1`, ..., and named activation and
//! dropout layers where tch has closures (`Tensor::relu`, `Tensor::dropout`).
//!
//! PyTorch's `nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))`, written so that a
//! rule can find the ReLU and replace it:
//!
//! ```
//! use tch::{nn, Device, Tensor};
//! use tch_patch::{layers, tree::print_tree};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let p = vs.root();
//! let mlp = layers::seq()
//!     .add(nn::linear(&p / 0, 4, 8, Default::default()))
//!     .add(layers::Relu)
//!     .add(nn::linear(&p / 2, 8, 1, Default::default()));
//! assert_eq!(mlp.forward(&Tensor::ones([3, 4], tch::kind::FLOAT_CPU)).size(), [3, 1]);
//! assert_eq!(print_tree(&mlp), "\
//! Sequential
//!   0: Linear(in_features=4, out_features=8, bias=true): weight [8, 4], bias [8]
//!   1: Relu
//!   2: Linear(in_features=8, out_features=1, bias=true): weight [1, 8], bias [1]
//! parameters: 49 total, 49 trainable; slots: 0 of 0 patched
//! ");
//! ```
mod activation;
mod func;
mod sequential;

pub use activation::{
    dropout, prelu, Dropout, Gelu, GeluApproximation, Identity, PRelu, Relu, Sigmoid, Silu, Tanh,
};
pub use func::{Func, FuncT};
pub use sequential::{seq, Sequential};
