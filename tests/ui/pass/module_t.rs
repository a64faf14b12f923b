// `module_t` patches of `nn::BatchNorm`, which implements only `nn::ModuleT`.
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};
use tch_patch::{patch, patch_forward, Patch};

/// Delegates `forward_t` to the parent.
#[patch(from = nn::BatchNorm, module_t)]
struct Traced {}

/// Always normalises with the running statistics, even in train mode.
#[patch(from = nn::BatchNorm, module_t)]
struct EvalOnly {}

#[patch_forward]
impl EvalOnly {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.base.forward_t(xs, false)
    }
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = nn::batch_norm1d(vs.root() / "bn", 3, Default::default());
    let xs = Tensor::randn([8, 3], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let eval = bn.forward_t(&xs, false);

    let traced = Traced { base: bn };
    assert!(traced.forward_t(&xs, false).equal(&eval));
    let bn = traced.into_base();

    let frozen = EvalOnly { base: bn };
    let before = frozen.running_mean.copy();
    assert!(frozen.forward_t(&xs, true).equal(&eval));
    // Train mode did not update the running statistics: the forward was the eval one.
    assert!(frozen.running_mean.equal(&before));
    assert_eq!(<EvalOnly as Patch>::NAME, "EvalOnly");
}
