//! Cross-checks with the real `peft` 0.21.2 package (tests/python/peft_real.py): adapters
//! PEFT made load in Rust with PEFT's outputs, adapters Rust made load in PEFT with Rust's.
//! The model is a chain of six `Linear(8, 8)` with tanh between, at paths where pattern
//! keys overlap (`attn.q` is a suffix of `blocks.1.attn.q`).
mod common;

use common::peft::{max_diff, python_checks_rust};
use common::{run_python, TempDir};
use std::collections::BTreeMap;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{
    apply_lora_adapter, apply_lora_adapter_with, AdapterDtype, AdapterEntry, AdapterProblem,
};
use tch_patch::patches::{Lora, LoraConfig};
use tch_patch::PatchError;
use tch_patch::{peft::read_peft_lora, peft::save_peft_lora, peft::PeftOptions};

const PATHS: [&str; 6] = [
    "attn.q",
    "attn.v",
    "blocks.0.attn.q",
    "blocks.0.attn.v",
    "blocks.1.attn.q",
    "blocks.1.attn.v",
];

/// The base weights and input Python wrote, and the six linear layers loaded from them.
struct Base {
    dir: TempDir,
    vs: nn::VarStore,
    modules: BTreeMap<String, nn::Linear>,
    input: Tensor,
}

fn var_path<'a>(vs: &'a nn::VarStore, path: &str) -> nn::Path<'a> {
    path.split('.').fold(vs.root(), |p, segment| p / segment)
}

fn base(name: &str) -> Base {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path()).unwrap();
    run_python("peft_real.py", &["base".as_ref(), dir.path().as_os_str()]);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let modules = PATHS
        .iter()
        .map(|path| {
            let linear = nn::linear(var_path(&vs, path), 8, 8, Default::default());
            (path.to_string(), linear)
        })
        .collect();
    vs.load(dir.join("base.safetensors")).unwrap();
    let input = Tensor::read_safetensors(dir.join("input.safetensors")).unwrap()[0]
        .1
        .shallow_clone();
    Base {
        dir,
        vs,
        modules,
        input,
    }
}

/// The chain's output: each layer in path order, tanh after each.
fn chain(layers: &BTreeMap<String, impl ModuleT>, input: &Tensor) -> Tensor {
    tch::no_grad(|| {
        PATHS.iter().fold(input.shallow_clone(), |x, path| {
            layers[*path].forward_t(&x, false).tanh()
        })
    })
}

/// PEFT writes the adapter of `case` into the base's folder (`peft_real.py write`).
fn python_writes(base: &Base, case: &str) {
    let out = run_python(
        "peft_real.py",
        &["write".as_ref(), base.dir.path().as_os_str(), case.as_ref()],
    );
    assert!(
        out.contains(&format!("peft_real: OK, {case} written")),
        "{out}"
    );
}

/// PEFT's output and per-module scalings for the adapter it wrote as `case`.
fn peft_wrote(base: &Base, case: &str) -> (Tensor, BTreeMap<String, f64>) {
    python_writes(base, case);
    let written = Tensor::read_safetensors(base.dir.join(case).join("peft.safetensors")).unwrap();
    let mut scalings = BTreeMap::new();
    let mut output = None;
    for (name, tensor) in written {
        match name.strip_prefix("scaling.") {
            Some(path) => {
                scalings.insert(path.to_owned(), tensor.double_value(&[0]));
            }
            None => output = Some(tensor),
        }
    }
    (output.expect("PEFT's output"), scalings)
}

/// Reads the PEFT folder `case` and applies it onto the base: Rust's output, with each
/// module's LoRA scaling checked against PEFT's.
fn rust_loads(base: &mut Base, case: &str, peft_scalings: &BTreeMap<String, f64>) -> Tensor {
    let adapter = read_peft_lora(base.dir.join(case)).unwrap();
    let loras = apply_lora_adapter(&adapter.entries, &base.vs.root(), &mut base.modules).unwrap();
    for (path, lora) in &loras {
        assert_eq!(
            lora.scaling(),
            peft_scalings[path],
            "{case}: scaling of {path}"
        );
    }
    chain(&loras, &base.input)
}

/// PEFT writes adapter `case`; Rust loads it: `blocks.1.attn.q`'s scaling is
/// `overlapped_scaling` on both sides, and the outputs agree.
fn rust_matches_peft(case: &str, overlapped_scaling: f64) {
    let mut base = base(&format!("peft-real-{case}"));
    let (expected, scalings) = peft_wrote(&base, case);
    assert_eq!(
        scalings["blocks.1.attn.q"], overlapped_scaling,
        "{case}: PEFT"
    );
    let out = rust_loads(&mut base, case, &scalings);
    let diff = max_diff(&out, &expected);
    assert!(diff <= 1e-5, "{case}: Rust is {diff} away from PEFT");
}

#[test]
fn overlapping_rank_and_alpha_patterns_mean_what_they_mean_in_peft() {
    // save_pretrained sorts the keys, so `attn.q` (alpha 16) comes first and also gives
    // `blocks.1.attn.q` its alpha: 16 / 2, not the 2 / 2 of the longer key.
    rust_matches_peft("patterns", 8.0);
}

#[test]
fn pattern_keys_are_tried_in_the_order_of_the_file() {
    // The same adapter with `blocks.1.attn.q` first in alpha_pattern by hand: 2 / 2.
    rust_matches_peft("file_order", 1.0);
}

#[test]
fn a_bf16_adapter_loads_onto_a_float32_model_converted_as_in_peft() {
    let mut base = base("peft-real-bf16");
    let (expected, scalings) = peft_wrote(&base, "bf16");
    let adapter = read_peft_lora(base.dir.join("bf16")).unwrap();
    assert_eq!(
        adapter.entries[0].tensor("lora_a").unwrap().kind(),
        Kind::BFloat16
    );

    // Refused when asked to be exact, and nothing changes.
    let error = apply_lora_adapter_with(
        &adapter.entries,
        &base.vs.root(),
        &mut base.modules,
        AdapterDtype::Exact,
    )
    .unwrap_err();
    let PatchError::Adapter(AdapterError { problems, .. }) = &error else {
        panic!("{error}")
    };
    assert_eq!(problems.len(), 12, "{error}");
    assert!(problems
        .iter()
        .all(|p| matches!(p, AdapterProblem::Dtype { .. })));
    assert_eq!(base.modules.len(), 6);
    assert_eq!(base.vs.variables().len(), 12, "only the base's tensors");

    // Converted by default: float32 LoRA tensors, PEFT's output.
    let loras = apply_lora_adapter(&adapter.entries, &base.vs.root(), &mut base.modules).unwrap();
    assert!(loras.values().all(|l| l.lora_a().kind() == Kind::Float));
    for (path, lora) in &loras {
        assert_eq!(lora.scaling(), scalings[path]);
    }
    let diff = max_diff(&chain(&loras, &base.input), &expected);
    assert!(diff <= 1e-5, "Rust is {diff} away from PEFT");
}

#[test]
fn options_made_by_peft_that_rust_does_not_implement_are_refused_by_their_field() {
    let base = base("peft-real-refused");
    for (case, field, says) in [
        ("alora", "alora_invocation_tokens", "activated LoRA"),
        ("lora_bias", "lora_bias", "a trained bias on LoRA's B"),
        (
            "target_parameters",
            "target_parameters",
            "LoRA on raw parameters",
        ),
    ] {
        python_writes(&base, case);
        let AdapterError { problems, .. } = read_peft_lora(base.dir.join(case)).unwrap_err();
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let named: Vec<&String> = texts
            .iter()
            .filter(|p| p.contains(&format!("field `{field}`")))
            .collect();
        assert_eq!(named.len(), 1, "{case}: {texts:#?}");
        assert!(named[0].contains(says), "{}", named[0]);
        if case == "lora_bias" {
            // Its tensors too say what they are, not "an adapter name".
            assert!(
                texts
                    .iter()
                    .any(|p| p.contains("lora_B.bias") && p.contains("`lora_bias`")),
                "{texts:#?}"
            );
            assert!(
                texts.iter().all(|p| !p.contains("adapter name")),
                "{texts:#?}"
            );
        }
    }
}

#[test]
fn a_rust_adapter_with_overlapping_paths_loads_in_peft_with_the_same_outputs() {
    let mut base = base("peft-real-rust");
    tch::manual_seed(3);
    let mut loras: BTreeMap<String, Lora<nn::Linear>> = BTreeMap::new();
    for path in PATHS {
        let config = LoraConfig {
            rank: if path == "attn.v" { 2 } else { 4 },
            alpha: match path {
                "attn.q" => 16.0,
                "blocks.1.attn.q" => 2.0,
                _ => 8.0,
            },
            ..Default::default()
        };
        let linear = base.modules.remove(path).unwrap();
        let lora = Lora::new(linear, &var_path(&base.vs, path), &config).unwrap();
        tch::no_grad(|| {
            let b = lora.lora_b();
            b.shallow_clone()
                .copy_(&Tensor::randn(b.size(), (Kind::Float, Device::Cpu)))
        });
        loras.insert(path.to_owned(), lora);
    }
    let adapter = base.dir.join("rust");
    let entries: Vec<AdapterEntry> = loras
        .iter()
        .map(|(path, lora)| AdapterEntry::from_lora(path, lora).unwrap())
        .collect();
    save_peft_lora(&adapter, &entries, &PeftOptions::default()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    // `attn.q` as a key would also give `blocks.1.attn.q` alpha 16 in PEFT: keys that
    // match one path each.
    assert_eq!(
        config["alpha_pattern"],
        serde_json::json!({r"^attn\.q": 16, r"^blocks\.1\.attn\.q": 2})
    );
    assert_eq!(config["rank_pattern"], serde_json::json!({r"^attn\.v": 2}));

    let out = chain(&loras, &base.input);
    for lora in loras.values_mut() {
        lora.merge().unwrap();
    }
    let merged = chain(&loras, &base.input);
    python_checks_rust("peft_real", base.dir.path(), &adapter, &out, &merged);
}
