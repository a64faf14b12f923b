// A `Parametrized<nn::Linear>` is not an `nn::Linear`: the linear layer's own code would use
// the original weight, not the transformed one. There is no `Deref` to it, so this does not
// compile; `p.with_transformed(|linear| ..)` lends the layer with the transformed tensors in
// place, `p.original_module()` gives the untransformed one.
use tch::{nn, nn::Module, Device, Tensor};
use tch_patch::parametrize::parametrize;

fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
    linear.forward(xs)
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 2, 2, Default::default());
    let p = parametrize(linear, "weight", |w: &Tensor| w.zeros_like()).unwrap();
    let xs = Tensor::ones([1, 2], (tch::Kind::Float, Device::Cpu));
    let _ = takes_linear(&p, &xs);
    let _ = &p.ws;
}
