use tch::{nn, Device};

fn needs_patch<P: tch_patch::Patch>(patch: P) -> P::Base {
    patch.into_base()
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    needs_patch(linear);
}
