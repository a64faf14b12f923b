// A patch can itself be patched; `into_base` peels one layer at a time.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, patch_forward, Patch};

#[patch(from = nn::Linear)]
struct Gained {
    #[param]
    gain: Tensor,
}

#[patch_forward]
impl Gained {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs) * &self.gain
    }
}

#[patch(from = Gained)]
struct Relu {}

#[patch_forward]
impl Relu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs).relu()
    }
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
    let weight = linear.ws.data_ptr();
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let plain = linear.forward(&xs);
    let gain = Tensor::from_slice(&[2.0f32, -1.0]);

    let outer = Relu {
        base: Gained { base: linear, gain },
    };
    let expected = (&plain * Tensor::from_slice(&[2.0f32, -1.0])).relu();
    assert!(outer.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
    // Deref goes through both layers.
    assert_eq!(outer.ws.data_ptr(), weight);
    assert_eq!(outer.gain.size(), [2]);
    let names: Vec<_> = tch_patch::named_tensors(&outer)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["weight", "bias", "gain"]);

    let gained: Gained = outer.into_base();
    assert_eq!(<Gained as Patch>::NAME, "Gained");
    let linear: nn::Linear = gained.into_base();
    assert_eq!(linear.ws.data_ptr(), weight);
    assert!(linear.forward(&xs).equal(&plain));
}
