// A generic patch: one definition, any parent module.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, Patch, PatchView};

#[patch(from = L)]
struct Tagged<L: nn::Module> {}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let expected = linear.forward(&xs);
    let weight = linear.ws.data_ptr();

    let tagged = Tagged { base: linear };
    assert_eq!(<Tagged<nn::Linear> as Patch>::NAME, "Tagged");
    assert!(<Tagged<nn::Linear> as Patch>::ADDED_TENSORS.is_empty());
    assert_eq!(tagged.ws.data_ptr(), weight);
    assert!(tagged.forward(&xs).equal(&expected));
    let names: Vec<_> = tch_patch::named_tensors(&tagged)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["weight", "bias"]);

    // No field of its own: the parent can also be viewed in place.
    let linear = tagged.into_base();
    let viewed: &Tagged<nn::Linear> = Tagged::view(&linear);
    assert!(viewed.forward(&xs).equal(&expected));
    assert!(format!("{viewed:?}").starts_with("Tagged { base: Linear"));
}
