// Every mistake of the attribute is reported at once, each at its token.
use tch::nn;
use tch_patch::{ModuleTree, Slot};

#[derive(ModuleTree)]
struct Model {
    #[tree(skip, rename = "b")]
    a: i64,
    #[tree(frobnicate)]
    b: Slot<nn::Linear>,
    #[tree(rename = "b")]
    c: Slot<nn::Linear>,
}

#[derive(ModuleTree)]
enum Choice {
    A(Slot<nn::Linear>),
}



#[derive(ModuleTree)]
struct Buffers {
    #[buffer]
    not_a_tensor: Slot<nn::Linear>,
}
fn main() {}
