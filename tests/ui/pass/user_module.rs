// A patch of a user-defined module (tch's `Module` requires `Debug + Send`), with a plain
// function-pointer field.
use tch::{nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, patch_forward, Patch};

#[derive(Debug)]
struct Doubler;

impl Module for Doubler {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs * 2
    }
}

#[patch(from = Doubler)]
struct Traced {}

#[patch(from = Doubler)]
struct Mapped {
    map: fn(&Tensor) -> Tensor,
}

#[patch_forward]
impl Mapped {
    fn forward(&self, xs: &Tensor) -> Tensor {
        (self.map)(&self.base.forward(xs))
    }
}

fn main() {
    let xs = Tensor::ones([3], (Kind::Float, Device::Cpu));
    let traced = Traced { base: Doubler };
    assert!(traced.forward(&xs).equal(&(&xs * 2)));
    let mapped = Mapped {
        base: traced.into_base(),
        map: |t| t + 1,
    };
    assert!(mapped.forward(&xs).equal(&(&xs * 3)));
    assert_eq!(<Mapped as Patch>::NAME, "Mapped");
}
