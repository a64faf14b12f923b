// A field that is neither a slot, a leaf, a tensor nor a tree, without `#[tree(skip)]`.
use tch::nn;
use tch_patch::{ModuleTree, Slot};

#[derive(ModuleTree)]
struct Model {
    q: Slot<nn::Linear>,
    n_heads: i64,
}

fn main() {}
