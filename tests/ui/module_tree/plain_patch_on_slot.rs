// A patch stacked on what a slot holds must be `module_t`: the content is an `nn::ModuleT`
// only, so that the train flag reaches every layer of the stack.
use tch::nn;
use tch_patch::{patch, Layer, Slot};

#[patch(from = L)]
struct Tagged<L: Layer> {}

fn main() {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut slot = Slot::new(nn::linear(vs.root(), 4, 4, Default::default()));
    let _ = slot.replace_with(|base| Ok(Box::new(Tagged { base })));
}
