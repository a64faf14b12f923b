// Fields without `#[param]` / `#[buffer]` are plain data: kept, printed, never listed.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, patch_forward, Patch};

#[patch(from = nn::Linear)]
pub struct Clipped {
    /// Plain fields keep their attributes and visibility.
    pub max: f64,
    label: String,
    calls: std::cell::Cell<usize>,
}

#[patch_forward]
impl Clipped {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.calls.set(self.calls.get() + 1);
        self.base.forward(xs).clamp_max(self.max)
    }
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let expected = linear.forward(&xs).clamp_max(0.1);

    let clipped = Clipped {
        base: linear,
        max: 0.1,
        label: "clip".to_owned(),
        calls: Default::default(),
    };
    assert!(clipped.forward(&xs).equal(&expected));
    assert_eq!(clipped.calls.get(), 1);
    assert_eq!(clipped.label, "clip");
    assert!(<Clipped as Patch>::ADDED_TENSORS.is_empty());
    let names: Vec<_> = tch_patch::named_tensors(&clipped)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["weight", "bias"]);
    let debug = format!("{clipped:?}");
    assert!(debug.contains("max: 0.1") && debug.contains("label: \"clip\""), "{debug}");
}
