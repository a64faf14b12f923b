//! DoRA against the real `peft` 0.21.2 (tests/python/peft_dora.py), both ways: DoRA
//! adapters PEFT made (`LoraConfig(use_dora=True)`) load in Rust with PEFT's outputs and
//! gradients, and a DoRA Rust trained loads in PEFT with Rust's outputs, merged too. The
//! model is two `Linear(8, 8)`, `fc1` and `fc2`, with tanh between.
mod common;

use common::peft::{max_diff, python_checks_rust, read_tensors as read, saved_config, saved_keys};
use common::{run_python, TempDir};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{Dora, LinearLike};
use tch_patch::peft::{load_model_lora, save_model_lora, PeftOptions};
use tch_patch::registry::{apply_specs, Registry};
use tch_patch::tree::DynLayer;
use tch_patch::{ModuleTree, Parameters, Slot};

#[derive(ModuleTree, Parameters)]
struct Tiny {
    fc1: Slot<nn::Linear>,
    fc2: Slot<nn::Linear>,
}

impl Tiny {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply_t(&self.fc1, train)
            .tanh()
            .apply_t(&self.fc2, train)
    }

    fn eval(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward_t(xs, false))
    }

    fn dora(&mut self, path: &str) -> &mut Dora<DynLayer<nn::Linear>> {
        let slot = if path == "fc1" {
            &mut self.fc1
        } else {
            &mut self.fc2
        };
        slot.find_mut().expect("a DoRA")
    }
}

/// The base weights and inputs Python wrote, and the model loaded from them.
struct Base {
    dir: TempDir,
    vs: nn::VarStore,
    model: Tiny,
    inputs: Tensor,
}

fn base(name: &str) -> Base {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path()).unwrap();
    run_python("peft_dora.py", &["base".as_ref(), dir.path().as_os_str()]);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = Tiny {
        fc1: Slot::new(nn::linear(&root / "fc1", 8, 8, Default::default())),
        fc2: Slot::new(nn::linear(&root / "fc2", 8, 8, Default::default())),
    };
    vs.load(dir.join("base.safetensors")).unwrap();
    let inputs = read(&dir.join("inputs.safetensors"))["inputs"].shallow_clone();
    Base {
        dir,
        vs,
        model,
        inputs,
    }
}

/// PEFT writes DoRA adapter `case`; Rust loads it onto the base in one call: PEFT's
/// scalings, output and (without dropout) gradients of `fc1`'s A, B and magnitude.
fn rust_matches_peft(case: &str) {
    let mut base = base(&format!("peft-dora-{case}"));
    let out = run_python(
        "peft_dora.py",
        &["write".as_ref(), base.dir.path().as_os_str(), case.as_ref()],
    );
    assert!(
        out.contains(&format!("peft_dora: OK, {case} written")),
        "{out}"
    );
    let adapter = base.dir.join(case);
    let peft = read(&adapter.join("peft.safetensors"));
    let reports = load_model_lora(&mut base.model, &base.vs, &adapter).unwrap();
    let patched: Vec<&str> = reports.iter().flat_map(|report| report.paths()).collect();
    assert_eq!(patched, ["fc1", "fc2"]);
    for path in ["fc1", "fc2"] {
        let scaling = base.model.dora(path).scaling();
        let expected = peft[&format!("scaling.{path}")].double_value(&[0]);
        assert_eq!(scaling, expected, "{case}: {path}");
    }
    let diff = max_diff(&base.model.eval(&base.inputs), &peft["out"]);
    eprintln!("{case}: PEFT's DoRA adapter in Rust: max abs diff {diff:e}");
    assert!(diff <= 1e-5, "{case}: Rust is {diff} away from PEFT");
    if !peft.contains_key("grad.lora_a") {
        return;
    }
    base.vs.freeze();
    let fc1 = base.model.dora("fc1");
    for tensor in [fc1.lora_a(), fc1.lora_b(), fc1.magnitude()] {
        let _ = tensor.shallow_clone().set_requires_grad(true);
    }
    base.model
        .forward_t(&base.inputs, true)
        .pow_tensor_scalar(2)
        .sum(Kind::Float)
        .backward();
    let fc1 = base.model.dora("fc1");
    for (name, tensor) in [
        ("lora_a", fc1.lora_a()),
        ("lora_b", fc1.lora_b()),
        ("lora_magnitude", fc1.magnitude()),
    ] {
        let expected = &peft[&format!("grad.{name}")];
        let diff = max_diff(&tensor.grad(), expected);
        let scale = expected.abs().max().double_value(&[]);
        eprintln!("{case}: gradient of fc1.{name}: max abs diff {diff:e} (largest {scale:.3})");
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{case}: {name}'s gradient is {diff} away"
        );
    }
}

#[test]
fn a_peft_dora_adapter_loads_with_peft_outputs_and_gradients() {
    rust_matches_peft("plain");
}

#[test]
fn rslora_patterns_and_dropout_scale_a_dora_as_in_peft() {
    rust_matches_peft("patterns");
}

#[test]
fn a_dora_trained_in_rust_loads_in_peft_with_the_same_outputs_merged_too() {
    let mut base = base("peft-dora-rust");
    base.vs.freeze();
    let weights: Vec<Tensor> = ["fc1", "fc2"]
        .map(|path| base.vs.variables()[&format!("{path}.weight")].copy())
        .into();
    tch::manual_seed(5);
    let specs = Registry::global()
        .unwrap()
        .parse(r#"dora(rank=4, alpha=8, targets="{fc1,fc2}")"#)
        .unwrap();
    apply_specs(&mut base.model, &base.vs, &specs).unwrap();
    let target = Tensor::randn([5, 8], (Kind::Float, Device::Cpu));
    let mut opt = nn::AdamW::default().build(&base.vs, 1e-2).unwrap();
    let start = base.model.dora("fc1").magnitude().copy();
    for _ in 0..5 {
        let loss = base
            .model
            .forward_t(&base.inputs, true)
            .mse_loss(&target, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let trained = max_diff(base.model.dora("fc1").magnitude(), &start);
    assert!(trained > 0.0, "the magnitude trained");
    let adapter = base.dir.join("rust");
    save_model_lora(&adapter, &base.model, &specs, &PeftOptions::default()).unwrap();
    assert_eq!(
        saved_keys(&adapter),
        [
            "base_model.model.fc1.lora_A.weight",
            "base_model.model.fc1.lora_B.weight",
            "base_model.model.fc1.lora_magnitude_vector",
            "base_model.model.fc2.lora_A.weight",
            "base_model.model.fc2.lora_B.weight",
            "base_model.model.fc2.lora_magnitude_vector",
        ]
    );
    let config = saved_config(&adapter);
    assert_eq!(config["use_dora"], serde_json::json!(true));

    let out = base.model.eval(&base.inputs);
    let mut deltas = Vec::new();
    for path in ["fc1", "fc2"] {
        let dora = base.model.dora(path);
        deltas.push(dora.delta_weight().unwrap());
        dora.merge().unwrap();
    }
    let merged = base.model.eval(&base.inputs);
    eprintln!(
        "Rust merged vs unmerged: max abs diff {:e}",
        max_diff(&out, &merged)
    );
    let said = python_checks_rust("peft_dora", base.dir.path(), &adapter, &out, &merged);
    eprintln!("{said}");

    // Unmerging gives each weight back within a few roundings: 2⁻²¹ (|w| + |Δw|).
    for ((path, before), delta) in ["fc1", "fc2"].iter().zip(&weights).zip(&deltas) {
        let dora = base.model.dora(path);
        dora.unmerge().unwrap();
        let error = (dora.weight() - before).abs();
        let bound = (before.abs() + delta.abs()) * 2f64.powi(-21);
        eprintln!(
            "{path}: unmerged weight: max abs diff {:e}",
            error.max().double_value(&[])
        );
        assert_eq!(error.le_tensor(&bound).all().int64_value(&[]), 1, "{path}");
    }
}
