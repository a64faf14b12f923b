//! Train a small MLP, prune it to 50% and fake-quantize it to int8 per channel through
//! stacked parametrizations, fine-tune, then bake the result into the weights in place.
//!
//! cargo run --example prune_and_quantize
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::prelude::*;
use tch_patch::{
    parametrize::sparsity_of, parametrize::FakeQuantInt8, parametrize::MagnitudePrune,
    parametrize::Parametrized, parametrize::Removal, params::Visitor, params::VisitorMut,
};

const INPUTS: i64 = 16;
const CLASSES: i64 = 4;
const LAYERS: [&str; 3] = ["fc1.weight", "fc2.weight", "fc3.weight"];

#[derive(Debug)]
struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

impl Mlp {
    fn new(path: &nn::Path) -> Self {
        Mlp {
            fc1: nn::linear(path / "fc1", INPUTS, 64, Default::default()),
            fc2: nn::linear(path / "fc2", 64, 64, Default::default()),
            fc3: nn::linear(path / "fc3", 64, CLASSES, Default::default()),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let hidden = self.fc1.forward(xs).relu();
        self.fc3.forward(&self.fc2.forward(&hidden).relu())
    }
}

impl Parameters for Mlp {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.child("fc1", &self.fc1);
        visitor.child("fc2", &self.fc2);
        visitor.child("fc3", &self.fc3);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.child("fc1", &mut self.fc1);
        visitor.child("fc2", &mut self.fc2);
        visitor.child("fc3", &mut self.fc3);
    }
}

/// Points labelled by the largest output of a fixed random linear teacher.
fn synthetic(teacher: &Tensor, n: i64) -> (Tensor, Tensor) {
    let xs = Tensor::randn([n, INPUTS], (Kind::Float, Device::Cpu));
    let ys = xs.matmul(teacher).argmax(-1, false);
    (xs, ys)
}

fn train(model: &impl Module, vs: &nn::VarStore, data: &(Tensor, Tensor), steps: usize, lr: f64) {
    let mut opt = nn::Adam::default().build(vs, lr).expect("an optimizer");
    for _ in 0..steps {
        let loss = model.forward(&data.0).cross_entropy_for_logits(&data.1);
        opt.backward_step(&loss);
    }
}

fn report(what: &str, model: &impl Module, test: &(Tensor, Tensor)) -> f64 {
    let (loss, accuracy) = tch::no_grad(|| {
        let logits = model.forward(&test.0);
        let loss = logits.cross_entropy_for_logits(&test.1).double_value(&[]);
        (loss, logits.accuracy_for_logits(&test.1).double_value(&[]))
    });
    println!(
        "{what:<44} loss {loss:.4}  accuracy {:.1}%",
        accuracy * 100.0
    );
    accuracy
}

fn main() -> Result<(), PatchError> {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&(vs.root() / "mlp"));
    let teacher = Tensor::randn([INPUTS, CLASSES], (Kind::Float, Device::Cpu));
    let train_set = synthetic(&teacher, 2048);
    let test_set = synthetic(&teacher, 1024);

    train(&mlp, &vs, &train_set, 300, 1e-2);
    let dense = report("dense, trained", &mlp, &test_set);

    let pointers: Vec<_> = [&mlp.fc1.ws, &mlp.fc2.ws, &mlp.fc3.ws]
        .map(|w| w.data_ptr())
        .to_vec();
    let mut model = Parametrized::new(mlp);
    for layer in LAYERS {
        model.push(layer, MagnitudePrune::new(0.5)?)?;
        model.push(layer, FakeQuantInt8::per_channel(0))?;
    }
    let compressed = report("pruned 50% + int8 per channel", &model, &test_set);

    train(&model, &vs, &train_set, 100, 1e-3);
    let tuned = report("pruned + int8, fine-tuned", &model, &test_set);

    for layer in LAYERS {
        let seen = model.transformed(layer)?;
        println!("{layer}: sparsity {:.1}%", sparsity_of(&seen) * 100.0);
    }

    let mlp = model.remove(Removal::Bake)?;
    let baked = report("baked into the plain MLP", &mlp, &test_set);
    let same_tensors = [&mlp.fc1.ws, &mlp.fc2.ws, &mlp.fc3.ws]
        .iter()
        .zip(&pointers)
        .all(|(w, &ptr)| w.data_ptr() == ptr);
    println!("baked in place (data_ptr unchanged): {same_tensors}");
    println!(
        "accuracy: dense {:.1}% -> compressed {:.1}% -> fine-tuned {:.1}% (baked {:.1}%)",
        dense * 100.0,
        compressed * 100.0,
        tuned * 100.0,
        baked * 100.0
    );
    assert!(same_tensors, "baking must keep every weight's storage");
    assert!(
        (baked - tuned).abs() < 1e-9,
        "the baked MLP computes what the parametrized one did"
    );
    Ok(())
}
