//! LoRA on an embedding against the real `peft` 0.21.2 (tests/python/peft_embedding.py), both
//! ways: adapters PEFT made load in Rust with PEFT's outputs, an adapter Rust trained loads in
//! PEFT with Rust's outputs, merged too. The model is an `Embedding(32, 8)` `emb` and a
//! `Linear(8, 8)` `proj` after it, so one `lora` adapts one module of each kind.
mod common;

use common::emb_proj::{self, Base, EmbProj};
use common::peft::{max_diff, python_checks_rust, read_tensors as read, saved_config, saved_keys};
use common::run_python;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{Lora, LoraEmbedding};
use tch_patch::peft::{load_model_lora, save_model_lora, PeftOptions};
use tch_patch::registry::{apply_specs, Registry};
use tch_patch::tree::DynLayer;

fn base(name: &str) -> Base {
    emb_proj::base("peft_embedding.py", name)
}

fn lora_of_emb(model: &EmbProj) -> &LoraEmbedding {
    model.emb.find::<LoraEmbedding>().expect("a LoRA on emb")
}

fn lora_of_proj(model: &mut EmbProj) -> &mut Lora<DynLayer<nn::Linear>> {
    model.proj.find_mut().expect("a LoRA on proj")
}

/// PEFT writes adapter `case`; Rust loads it onto the base in one call: PEFT's scalings and
/// output.
fn rust_matches_peft(case: &str) {
    let mut base = base(&format!("peft-embedding-{case}"));
    let out = run_python(
        "peft_embedding.py",
        &["write".as_ref(), base.dir.path().as_os_str(), case.as_ref()],
    );
    assert!(
        out.contains(&format!("peft_embedding: OK, {case} written")),
        "{out}"
    );
    let adapter = base.dir.join(case);
    let peft = read(&adapter.join("peft.safetensors"));
    let reports = load_model_lora(&mut base.model, &base.vs, &adapter).unwrap();
    let patched: Vec<&str> = reports.iter().flat_map(|report| report.paths()).collect();
    assert_eq!(patched, ["emb", "proj"]);
    let emb = lora_of_emb(&base.model);
    assert_eq!(
        emb.scaling(),
        peft["scaling.emb"].double_value(&[0]),
        "{case}"
    );
    let proj = lora_of_proj(&mut base.model).scaling();
    assert_eq!(proj, peft["scaling.proj"].double_value(&[0]), "{case}");
    let diff = max_diff(&base.model.eval(&base.ids), &peft["out"]);
    eprintln!("{case}: PEFT's adapter in Rust: max abs diff {diff:e}");
    assert!(diff <= 1e-5, "{case}: Rust is {diff} away from PEFT");
}

#[test]
fn a_peft_adapter_on_an_embedding_and_a_linear_layer_loads_with_peft_outputs() {
    rust_matches_peft("plain");
}

#[test]
fn rslora_and_patterns_scale_an_embedding_as_in_peft() {
    rust_matches_peft("patterns");
}

#[test]
fn an_adapter_trained_in_rust_loads_in_peft_with_the_same_outputs_merged_too() {
    let mut base = base("peft-embedding-rust");
    base.vs.freeze();
    tch::manual_seed(5);
    let specs = Registry::global()
        .unwrap()
        .parse(r#"lora(rank=4, alpha=8, targets="{emb,proj}")"#)
        .unwrap();
    apply_specs(&mut base.model, &base.vs, &specs).unwrap();
    let target = Tensor::randn([3, 5, 8], (Kind::Float, Device::Cpu));
    let mut opt = nn::AdamW::default().build(&base.vs, 1e-2).unwrap();
    for _ in 0..5 {
        let loss = base
            .model
            .forward_t(&base.ids, true)
            .mse_loss(&target, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let emb = lora_of_emb(&base.model);
    assert!(
        emb.lora_embedding_a().abs().max().double_value(&[]) > 0.0,
        "A trained"
    );
    let adapter = base.dir.join("rust");
    save_model_lora(&adapter, &base.model, &specs, &PeftOptions::default()).unwrap();
    assert_eq!(
        saved_keys(&adapter),
        [
            "base_model.model.emb.lora_embedding_A",
            "base_model.model.emb.lora_embedding_B",
            "base_model.model.proj.lora_A.weight",
            "base_model.model.proj.lora_B.weight",
        ]
    );
    let config = saved_config(&adapter);
    assert_eq!(config["target_modules"], serde_json::json!(["emb", "proj"]));

    let out = base.model.eval(&base.ids);
    base.model
        .emb
        .find_mut::<LoraEmbedding>()
        .unwrap()
        .merge()
        .unwrap();
    lora_of_proj(&mut base.model).merge().unwrap();
    let merged = base.model.eval(&base.ids);
    eprintln!(
        "Rust merged vs unmerged: max abs diff {:e}",
        max_diff(&out, &merged)
    );
    let said = python_checks_rust("peft_embedding", base.dir.path(), &adapter, &out, &merged);
    eprintln!("{said}");
}
