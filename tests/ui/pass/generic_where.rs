// A generic patch whose bounds sit in a where-clause, with a tensor of its own.
use std::fmt::Debug;
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, Patch, params::TensorRole};

#[patch(from = L, name = "Offset")]
pub struct Offset<L>
where
    L: nn::Module + Debug,
{
    #[buffer]
    shift: Tensor,
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let expected = linear.forward(&xs);
    let shift = Tensor::ones([2], (Kind::Float, Device::Cpu));

    let patched = Offset {
        base: linear,
        shift,
    };
    // Without a `#[patch_forward]` block the forward is the parent's, bit for bit.
    assert!(patched.forward(&xs).equal(&expected));
    assert_eq!(
        <Offset<nn::Linear> as Patch>::ADDED_TENSORS,
        &[("shift", TensorRole::Buffer)]
    );
    let added = patched.added_tensors();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].0, "shift");
    assert_eq!(added[0].2, TensorRole::Buffer);
    let names: Vec<_> = tch_patch::named_tensors(&patched)
        .into_iter()
        .map(|t| (t.name, t.role))
        .collect();
    assert_eq!(
        names,
        [
            ("weight".to_owned(), TensorRole::Param),
            ("bias".to_owned(), TensorRole::Param),
            ("shift".to_owned(), TensorRole::Buffer),
        ]
    );
}
