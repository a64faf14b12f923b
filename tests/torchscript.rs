//! TorchScript export of a patched model: two linear layers with LoRA on the first,
//! traced unmerged and merged with `CModule::create_by_tracing`, saved, reloaded in Rust
//! and loaded in Python with `torch.jit.load` (the same libtorch build): every reload
//! gives the model's outputs to 1e-6.
mod common;

use common::{run_python, TempDir};
use std::path::Path;
use tch::nn::{self, Module, ModuleT};
use tch::{CModule, Device, Kind, Tensor};
use tch_patch::patches::{Lora, LoraConfig};
use tch_patch::{export::load_torchscript, export::save_torchscript, export::trace_module};
use tch_patch::{named_tensors, Parameters};

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);

#[derive(Debug, Parameters)]
struct Model {
    fc1: Lora<nn::Linear>,
    fc2: nn::Linear,
}

impl ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.fc2
            .forward(&self.fc1.forward_t(xs, train).gelu("none"))
    }
}

/// The model with a LoRA update that is not zero.
fn model(vs: &nn::VarStore) -> Model {
    let path = vs.root() / "fc1";
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let fc1 = Lora::new(
        nn::linear(&path, 16, 32, Default::default()),
        &path,
        &config,
    )
    .unwrap();
    tch::no_grad(|| {
        let mut b = fc1.lora_b().shallow_clone();
        b.copy_(&(Tensor::randn(b.size(), FLOAT) * 0.2));
    });
    let fc2 = nn::linear(vs.root() / "fc2", 32, 8, Default::default());
    Model { fc1, fc2 }
}

/// Inputs of two batch sizes: the traced module is not tied to the example's batch.
fn inputs() -> Vec<Tensor> {
    vec![Tensor::randn([5, 16], FLOAT), Tensor::randn([2, 16], FLOAT)]
}

/// Traces `model`, saves it as `<name>.pt` and its inputs and Rust outputs as
/// `<name>.io.safetensors`; checks a Rust reload; the outputs.
fn export(model: &Model, dir: &Path, name: &str, inputs: &[Tensor]) -> Vec<Tensor> {
    let requires_grad: Vec<bool> = named_tensors(model)
        .iter()
        .map(|t| t.tensor.requires_grad())
        .collect();
    let traced = trace_module(model, &inputs[0]).unwrap();
    let after: Vec<bool> = named_tensors(model)
        .iter()
        .map(|t| t.tensor.requires_grad())
        .collect();
    assert_eq!(
        after, requires_grad,
        "requires_grad is restored after tracing"
    );
    let bytes = save_torchscript(&traced, dir.join(format!("{name}.pt"))).unwrap();
    assert_eq!(
        bytes,
        std::fs::metadata(dir.join(format!("{name}.pt")))
            .unwrap()
            .len()
    );

    let outputs: Vec<Tensor> = inputs
        .iter()
        .map(|xs| model.forward_t(xs, false).detach())
        .collect();
    let mut io: Vec<(String, Tensor)> = Vec::new();
    for (i, (xs, ys)) in inputs.iter().zip(&outputs).enumerate() {
        io.push((format!("input_{i}"), xs.shallow_clone()));
        io.push((format!("output_{i}"), ys.shallow_clone()));
    }
    Tensor::write_safetensors(&io, dir.join(format!("{name}.io.safetensors"))).unwrap();

    let reloaded: CModule = load_torchscript(dir.join(format!("{name}.pt"))).unwrap();
    for (xs, ys) in inputs.iter().zip(&outputs) {
        let out = reloaded.forward_ts(&[xs]).unwrap();
        assert!(out.allclose(ys, 1e-6, 1e-6, false), "{name}: Rust reload");
    }
    outputs
}

#[test]
fn torchscript_round_trip_in_rust_and_python_gives_the_same_outputs() {
    let dir = TempDir::new("torchscript");
    std::fs::create_dir_all(dir.path()).unwrap();
    let vs = nn::VarStore::new(CPU);
    let mut model = model(&vs);
    let inputs = inputs();
    let unmerged = export(&model, dir.path(), "unmerged", &inputs);
    model.fc1.merge().unwrap();
    let merged = export(&model, dir.path(), "merged", &inputs);
    for (a, b) in unmerged.iter().zip(&merged) {
        assert!(a.allclose(b, 1e-5, 1e-5, false), "merged == unmerged");
    }

    let out = run_python(
        "torchscript_check.py",
        &[
            dir.path().as_os_str(),
            "unmerged".as_ref(),
            "merged".as_ref(),
        ],
    );
    assert!(out.contains("torchscript_check: OK, 2 models"), "{out}");
    // And the Python outputs, read back in Rust, are the Rust outputs.
    for (name, outputs) in [("unmerged", &unmerged), ("merged", &merged)] {
        let python =
            Tensor::read_safetensors(dir.join(&format!("{name}.python.safetensors"))).unwrap();
        assert_eq!(python.len(), outputs.len());
        for (key, tensor) in python {
            let i: usize = key.trim_start_matches("output_").parse().unwrap();
            assert!(
                tensor.allclose(&outputs[i], 1e-6, 1e-6, false),
                "{name}: {key}"
            );
        }
    }
}

#[test]
fn a_traced_module_holds_copies_of_the_model_tensors() {
    let vs = nn::VarStore::new(CPU);
    let model = model(&vs);
    let xs = Tensor::randn([3, 16], FLOAT);
    let traced = trace_module(&model, &xs).unwrap();
    let before = traced.forward_ts(&[&xs]).unwrap();
    // Changing the model in place afterwards (training, merging) leaves the trace as it was.
    let _ = tch::no_grad(|| model.fc2.ws.shallow_clone().fill_(0.0));
    let _ = tch::no_grad(|| model.fc1.lora_b().shallow_clone().fill_(1.0));
    assert!(traced.forward_ts(&[&xs]).unwrap().equal(&before));
    assert!(!model
        .forward_t(&xs, false)
        .allclose(&before, 1e-3, 1e-3, false));
}

#[test]
fn loading_a_missing_torchscript_file_names_it() {
    let error = load_torchscript("/nonexistent/model.pt").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read checkpoint `/nonexistent/model.pt`: "),
        "{error}"
    );
}
