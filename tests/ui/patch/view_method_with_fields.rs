use tch::{nn, Device, Tensor};
use tch_patch::{patch, PatchView};

#[patch(from = nn::Linear)]
struct Scaled {
    #[param]
    scale: Tensor,
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let _viewed = Scaled::view(&linear);
}
