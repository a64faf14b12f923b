// A unit struct is a patch with no field of its own.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, Patch, PatchView};

#[patch(from = nn::Linear)]
struct Marked;

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let expected = linear.forward(&xs);

    let viewed: &Marked = Marked::view(&linear);
    assert!(viewed.forward(&xs).equal(&expected));
    assert_eq!(std::mem::size_of::<Marked>(), std::mem::size_of::<nn::Linear>());

    let marked = Marked { base: linear };
    assert!(marked.forward(&xs).equal(&expected));
    assert!(marked.added_tensors().is_empty());
    assert_eq!(<Marked as Patch>::NAME, "Marked");
    assert!(tch_patch::dynamic::is_patched(&marked));
}
