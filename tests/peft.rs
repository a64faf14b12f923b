//! PEFT's layout for LoRA: written by Rust and read back bit for bit; opened in Python
//! with the `safetensors` package as a PEFT user would (keys, shapes, config, and the
//! LoRA deltas B @ A * scale equal to Rust's); written in Python as PEFT lays it out and
//! read in Rust. Bad PEFT folders are one typed error listing every problem.
mod common;

use common::{python, run_python, TempDir};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tch::nn;
use tch::{Device, Kind, Tensor};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{apply_lora_adapter, AdapterEntry};
use tch_patch::patches::{BiasOnlyConfig, Lora, LoraConfig};
use tch_patch::registry::PatchArgs;
use tch_patch::PatchError;
use tch_patch::{
    peft::read_peft_lora, peft::save_peft_lora, peft::PeftOptions, peft::PeftTargetModules,
    peft::PeftTargets,
};

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);

/// LoRA patches at three paths (one of another rank and alpha), with random `B`.
fn patched(vs: &nn::VarStore) -> Vec<(String, Lora<nn::Linear>)> {
    let config = |rank, alpha| LoraConfig {
        rank,
        alpha,
        dropout: 0.05,
        use_rslora: false,
    };
    [
        ("blocks.0.attn.q", 16, 24, config(4, 8.0)),
        ("blocks.0.attn.v", 16, 24, config(4, 8.0)),
        ("blocks.1.attn.q", 24, 16, config(2, 4.0)),
    ]
    .into_iter()
    .map(|(path, inp, out, config)| {
        let vpath = path.split('.').fold(vs.root(), |p, s| &p / s);
        let linear = nn::linear(&vpath, inp, out, Default::default());
        let lora = Lora::new(linear, &vpath, &config).unwrap();
        tch::no_grad(|| {
            let mut b = lora.lora_b().shallow_clone();
            b.copy_(&(Tensor::randn(b.size(), FLOAT) * 0.1));
        });
        (path.to_owned(), lora)
    })
    .collect()
}

fn entries(loras: &[(String, Lora<nn::Linear>)]) -> Vec<AdapterEntry> {
    loras
        .iter()
        .map(|(path, lora)| AdapterEntry::from_lora(path.clone(), lora).unwrap())
        .collect()
}

fn config_json(dir: &TempDir) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap()
}

#[test]
fn peft_layout_round_trip_is_bit_for_bit_and_python_sees_what_peft_would() {
    let dir = TempDir::new("peft-round-trip");
    let vs = nn::VarStore::new(CPU);
    let loras = patched(&vs);
    let options = PeftOptions {
        base_model_name_or_path: Some("tiny-rust-model".into()),
        task_type: Some("CAUSAL_LM".into()),
        ..Default::default()
    };
    let summary = save_peft_lora(dir.path(), &entries(&loras), &options).unwrap();
    assert_eq!(summary.tensors, 6);

    // The config a PEFT user sees.
    let config = config_json(&dir);
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8);
    assert_eq!(config["lora_dropout"], 0.05);
    assert_eq!(config["use_rslora"], false);
    assert_eq!(config["bias"], "none");
    assert_eq!(config["fan_in_fan_out"], false);
    assert_eq!(config["inference_mode"], true);
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["base_model_name_or_path"], "tiny-rust-model");
    assert_eq!(
        config["target_modules"],
        json!(["blocks.0.attn.q", "blocks.0.attn.v", "blocks.1.attn.q"])
    );
    assert_eq!(config["rank_pattern"], json!({"blocks.1.attn.q": 2}));
    assert_eq!(config["alpha_pattern"], json!({"blocks.1.attn.q": 4}));

    // Read back: the same tensors bit for bit, the same configs.
    let read = read_peft_lora(dir.path()).unwrap();
    assert_eq!(read.entries.len(), 3);
    for ((path, lora), entry) in loras.iter().zip(&read.entries) {
        assert_eq!(&entry.path, path);
        assert_eq!(entry.spec.config::<LoraConfig>().unwrap(), *lora.config());
        for (name, original) in [("lora_a", lora.lora_a()), ("lora_b", lora.lora_b())] {
            let loaded = entry.tensor(name).unwrap();
            assert_eq!(loaded.kind(), original.kind());
            assert!(loaded.equal(original), "{path}.{name} bit for bit");
        }
    }
    assert_eq!(read.config.rank_of("blocks.1.attn.q"), 2);
    assert_eq!(read.config.alpha_of("blocks.0.attn.v"), 8.0);

    // Python: keys, shapes, config and the deltas B @ A * scale, against Rust's.
    let expected = dir.join("expected_deltas.safetensors");
    let deltas: Vec<(String, Tensor)> = loras
        .iter()
        .map(|(path, lora)| (path.clone(), lora.delta_weight().unwrap()))
        .collect();
    Tensor::write_safetensors(&deltas, &expected).unwrap();
    let out = run_python(
        "peft_check.py",
        &[
            "check".as_ref(),
            dir.path().as_os_str(),
            expected.as_os_str(),
        ],
    );
    assert!(out.contains("peft_check: OK, 3 modules"), "{out}");
    assert!(out.contains("blocks.1.attn.q: r=2 alpha=4"), "{out}");
}

#[test]
fn target_modules_can_be_written_as_module_names() {
    let dir = TempDir::new("peft-names");
    let vs = nn::VarStore::new(CPU);
    let options = PeftOptions {
        target_modules: PeftTargets::Names,
        ..Default::default()
    };
    save_peft_lora(dir.path(), &entries(&patched(&vs)), &options).unwrap();
    assert_eq!(config_json(&dir)["target_modules"], json!(["q", "v"]));
    let read = read_peft_lora(dir.path()).unwrap();
    assert_eq!(
        read.config.target_modules,
        PeftTargetModules::List(vec!["q".into(), "v".into()])
    );
}

#[test]
fn a_peft_adapter_written_in_python_loads_in_rust() {
    let dir = TempDir::new("peft-from-python");
    let expected = dir.join("python_deltas.safetensors");
    let adapter = dir.join("adapter");
    let out = run_python(
        "peft_check.py",
        &["write".as_ref(), adapter.as_os_str(), expected.as_os_str()],
    );
    assert!(out.contains("wrote 3 modules"), "{out}");

    let read = read_peft_lora(&adapter).unwrap();
    assert_eq!(read.config.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(read.config.rank_of("model.layers.1.self_attn.q_proj"), 2);
    let raw: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(adapter.join("adapter_model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let vs = nn::VarStore::new(CPU);
    let mut modules = BTreeMap::new();
    for entry in &read.entries {
        let a = entry.tensor("lora_a").unwrap();
        assert!(a.equal(&raw[&format!("base_model.model.{}.lora_A.weight", entry.path)]));
        let vpath = entry.path.split('.').fold(vs.root(), |p, s| &p / s);
        modules.insert(
            entry.path.clone(),
            nn::linear(&vpath, 10, 12, Default::default()),
        );
    }
    let patched = apply_lora_adapter(&read.entries, &vs.root(), &mut modules).unwrap();
    let deltas: BTreeMap<String, Tensor> = Tensor::read_safetensors(&expected)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(patched.len(), 3);
    for (path, lora) in &patched {
        assert_eq!(lora.config().alpha, 16.0);
        assert_eq!(lora.config().dropout, 0.05);
        let error = (lora.delta_weight().unwrap() - &deltas[path])
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            error <= 1e-6,
            "{path}: delta differs from Python's by {error}"
        );
        // The adapter acts in the forward as its delta says.
        let xs = Tensor::randn([3, 10], FLOAT);
        let with_delta = xs.linear(&(&lora.ws + &deltas[path]), lora.bs.as_ref());
        assert!(lora
            .forward_t(&xs, false)
            .allclose(&with_delta, 1e-5, 1e-5, false));
    }
}

fn problems_of(dir: &std::path::Path) -> Vec<String> {
    match read_peft_lora(dir) {
        Err(AdapterError { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
        other => panic!("expected InvalidAdapter, got {other:?}"),
    }
}

#[test]
fn a_dora_folder_without_its_magnitudes_or_with_a_stray_one_names_each_key() {
    let dir = TempDir::new("peft-bad-dora");
    let vs = nn::VarStore::new(CPU);
    save_peft_lora(dir.path(), &entries(&patched(&vs)), &PeftOptions::default()).unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    tensors.push((
        "base_model.model.blocks.0.attn.q.lora_magnitude_vector".into(),
        Tensor::ones([3], FLOAT),
    ));
    Tensor::write_safetensors(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    // use_dora false: the magnitude is a stray key.
    assert_eq!(
        problems_of(dir.path()),
        ["tensor `base_model.model.blocks.0.attn.q.lora_magnitude_vector` in `adapter_model.safetensors` is not expected: it is DoRA's magnitude, and `use_dora` is false in the config"]
    );
    let mut config = config_json(&dir);
    config["use_dora"] = json!(true);
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let problems = problems_of(dir.path());
    assert!(
        problems[0].starts_with("tensor `base_model.model.blocks.0.attn.q.lora_magnitude_vector` has shape [3], expected [24] (out_features of `blocks.0.attn.q`"),
        "{problems:#?}"
    );
    assert!(
        problems[1..]
            .iter()
            .all(|p| p.contains("lora_magnitude_vector` is missing")
                && p.contains("`use_dora` is true")),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn a_bad_peft_folder_is_one_error_listing_every_problem() {
    let dir = TempDir::new("peft-bad");
    let vs = nn::VarStore::new(CPU);
    save_peft_lora(dir.path(), &entries(&patched(&vs)), &PeftOptions::default()).unwrap();
    let mut config = config_json(&dir);
    config["lora_bias"] = json!(true);
    config["r"] = json!(8);
    config["target_modules"] = json!(["q"]);
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(key, _)| key != "base_model.model.blocks.1.attn.q.lora_B.weight")
            .collect();
    tensors.push((
        "base_model.model.blocks.2.q.lora_A.default.weight".into(),
        Tensor::zeros([4, 2], FLOAT),
    ));
    Tensor::write_safetensors(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    assert_eq!(
        problems_of(dir.path()),
        [
            "`adapter_config.json`: field `lora_bias` is `true`: a trained bias on LoRA's B is not supported (this library reads only false)",
            "tensor `base_model.model.blocks.2.q.lora_A.default.weight` in `adapter_model.safetensors` is not expected: it holds an adapter name (PEFT's saved files do not); keys are `base_model.model.<path>.lora_A.weight` and `...lora_B.weight` (`...lora_embedding_A` and `...lora_embedding_B` for an embedding)",
            "tensor `base_model.model.blocks.0.attn.q.lora_A.weight` has shape [4, 16], expected [8, in_features] (r of `blocks.0.attn.q` in the config is 8)",
            "tensor `base_model.model.blocks.0.attn.q.lora_B.weight` has shape [24, 4], expected [out_features, 8] (r of `blocks.0.attn.q` in the config is 8)",
            "`adapter_config.json`: field `target_modules` does not select module `blocks.0.attn.v` (with exclude_modules and layers_to_transform as set), which has LoRA weights: PEFT would not load them (target_modules: [q])",
            "tensor `base_model.model.blocks.0.attn.v.lora_A.weight` has shape [4, 16], expected [8, in_features] (r of `blocks.0.attn.v` in the config is 8)",
            "tensor `base_model.model.blocks.0.attn.v.lora_B.weight` has shape [24, 4], expected [out_features, 8] (r of `blocks.0.attn.v` in the config is 8)",
            "tensor `base_model.model.blocks.1.attn.q.lora_B.weight` is missing from `adapter_model.safetensors`: module `blocks.1.attn.q` has a lora_A weight, and a LoRA needs both",
        ]
    );
}

#[test]
fn the_python_check_fails_on_a_wrong_delta() {
    let dir = TempDir::new("peft-python-fails");
    let vs = nn::VarStore::new(CPU);
    let loras = patched(&vs);
    save_peft_lora(dir.path(), &entries(&loras), &PeftOptions::default()).unwrap();
    let expected = dir.join("expected_deltas.safetensors");
    let deltas: Vec<(String, Tensor)> = loras
        .iter()
        .map(|(path, lora)| (path.clone(), lora.delta_weight().unwrap() + 1e-4))
        .collect();
    Tensor::write_safetensors(&deltas, &expected).unwrap();
    let output = python(
        "peft_check.py",
        &[
            "check".as_ref(),
            dir.path().as_os_str(),
            expected.as_os_str(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("peft_check: FAILED: blocks.0.attn.q: delta differs from Rust's by"),
        "{stderr}"
    );
}

#[test]
fn entries_peft_cannot_express_are_refused_before_writing() {
    let dir = TempDir::new("peft-save-bad");
    let vs = nn::VarStore::new(CPU);
    let mut entries = entries(&patched(&vs));
    entries.push(AdapterEntry::new(
        "head",
        BiasOnlyConfig::default().to_spec("head").unwrap(),
        vec![("bias_delta".into(), Tensor::zeros([3], FLOAT))],
    ));
    let mut other = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        use_rslora: false,
    }
    .to_spec("blocks.0.attn.v")
    .unwrap();
    other.targets = "*.v".into();
    entries[1].spec = other;
    let error = save_peft_lora(dir.path(), &entries, &PeftOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "save PEFT adapter to `{}`: 1 problem(s): patch at `head` is \"bias_only\", but only \"lora\" patches can be written in PEFT's layout",
            dir.path().display()
        )
    );
    entries.pop();
    let error = save_peft_lora(dir.path(), &entries, &PeftOptions::default()).unwrap_err();
    let PatchError::Adapter(AdapterError { problems, .. }) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        problems[0].to_string(),
        "`adapter_config.json`: field `lora_dropout` has one value for every module in PEFT's layout, but the patches differ (`blocks.0.attn.q`: 0.05, `blocks.0.attn.v`: 0, `blocks.1.attn.q`: 0.05)"
    );
    assert!(!dir.path().exists(), "nothing written");
}

#[test]
fn lora_and_dora_in_one_peft_folder_are_refused_as_peft_has_one_use_dora() {
    use tch_patch::patches::{Dora, DoraConfig};
    let dir = TempDir::new("peft-mixed-dora");
    let vs = nn::VarStore::new(CPU);
    let mut entries = entries(&patched(&vs));
    let path = vs.root() / "d";
    let dora = Dora::new(
        nn::linear(&path, 16, 24, Default::default()),
        &path,
        &DoraConfig::default(),
    )
    .unwrap();
    entries.push(AdapterEntry::from_dora("d", &dora).unwrap());
    let error = save_peft_lora(dir.path(), &entries, &PeftOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("field `use_dora` has one value for every module in PEFT's layout"),
        "{error}"
    );
    assert!(!dir.join("adapter_config.json").exists());
}
