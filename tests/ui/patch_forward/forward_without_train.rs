// A `module_t` patch (its forward depends on the train flag) has no `forward(xs)`: neither
// its own, nor its parent's through `Deref`, which would skip the patch silently.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::patches::{DropoutBefore, DropoutBeforeConfig, Lora, LoraConfig};
use tch_patch::{patch, patch_forward};

/// A user's train-dependent patch of a layer that is an `nn::Module`.
#[patch(from = nn::Linear, module_t)]
struct Noisy {}

#[patch_forward]
impl Noisy {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward(&xs.dropout(0.5, train))
    }
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = || nn::linear(vs.root(), 4, 4, Default::default());
    let xs = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let lora = Lora::new(linear(), &(vs.root() / "q"), &LoraConfig::default()).unwrap();
    let _ = lora.forward(&xs);
    let dropout = DropoutBefore::new(linear(), &DropoutBeforeConfig { p: 0.5 }).unwrap();
    let _ = dropout.forward(&xs);
    let _ = Noisy { base: linear() }.forward(&xs);
}
