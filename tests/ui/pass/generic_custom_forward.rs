// A generic patch bounded by a user trait, with its own forward.
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{patch, patch_forward, Patch};

/// Modules that know their output width.
trait OutWidth {
    fn out_width(&self) -> i64;
}

impl OutWidth for nn::Linear {
    fn out_width(&self) -> i64 {
        self.ws.size()[0]
    }
}

/// Divides the parent's output by its width.
#[patch(from = L)]
struct Averaged<L: nn::Module + OutWidth> {
    #[param]
    offset: Tensor,
}

#[patch_forward]
impl<L> Averaged<L>
where
    L: nn::Module + OutWidth,
{
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs) / self.base.out_width() as f64 + &self.offset
    }
}

fn main() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 4, Default::default());
    let xs = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
    let expected = linear.forward(&xs) / 4.0 + 0.5;

    let averaged = Averaged {
        base: linear,
        offset: Tensor::full([4], 0.5, (Kind::Float, Device::Cpu)),
    };
    assert!(averaged.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
    assert_eq!(averaged.offset.size(), [4]);
    assert_eq!(averaged.out_width(), 4); // the parent's method, through Deref
    assert_eq!(<Averaged<nn::Linear> as Patch>::NAME, "Averaged");
    let names: Vec<_> = tch_patch::named_tensors(&averaged)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["weight", "bias", "offset"]);
}
