// tch's own sequence and closures where a slot or a tree node is expected: the messages
// name what to use instead (`tch_patch::layers::seq()`, `layers::Func`).
use tch::nn;
use tch_patch::{ModuleTree, Slot};

#[derive(ModuleTree)]
struct Model {
    body: nn::Sequential,
}

fn main() {
    let _slot = Slot::new(nn::seq());
    let _closure = Slot::new(nn::func(|xs| xs.relu()));
}
