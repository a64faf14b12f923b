//! PEFT LoRA on GPT-2, whose `Conv1D` layers store their weights `[in, out]` (PEFT's
//! `fan_in_fan_out`), both ways against the real `peft`: adapters PEFT saved (`c_attn`;
//! all-linear with rsLoRA and rank/alpha patterns) load onto the Rust model with PEFT's
//! logits, and merge into the same weights as PEFT's `merge_and_unload`; an adapter trained
//! in Rust loads in PEFT with the Rust logits and merges there as here. A DoRA PEFT saved on
//! `c_attn` (`use_dora=True`) loads and merges as in PEFT too.
mod common;
use common::{max_abs_diff, read, run_python, train_lora, TempDir};
use std::path::Path;
use tch::{nn, Device, Tensor};
use tch_patch::patches::{Dora, Lora};
use tch_patch::peft::{load_model_lora, save_model_lora, PeftOptions};
use tch_patch::prelude::*;
use tch_patch::tree::DynLayer;
use tch_patch_models::decoding::CausalLm;
use tch_patch_models::gpt2::{Conv1D, Gpt2LmHeadModel};

fn model_folder() -> TempDir {
    let dir = TempDir::new("peft-gpt2-model");
    let out = run_python("gpt2_real.py", &["write".as_ref(), dir.0.as_os_str()]);
    assert!(out.contains("gpt2_real: OK, written"), "{out}");
    dir
}

/// Merges every LoRA (and DoRA) of the model into its weights (PEFT's `merge_and_unload`, without the
/// unload); the number merged.
fn merge_all(model: &mut Gpt2LmHeadModel) -> usize {
    let mut merged = 0;
    for block in &mut model.transformer.h {
        for slot in [
            &mut block.attn.c_attn,
            &mut block.attn.c_proj,
            &mut block.mlp.c_fc,
            &mut block.mlp.c_proj,
        ] {
            if let Some(lora) = slot.find_mut::<Lora<DynLayer<Conv1D>>>() {
                lora.merge().unwrap();
                merged += 1;
            } else if let Some(dora) = slot.find_mut::<Dora<DynLayer<Conv1D>>>() {
                dora.merge().unwrap();
                merged += 1;
            }
        }
    }
    merged
}

/// Compares the model with PEFT's outputs: logits with the adapter, then (after merging)
/// the merged logits and every weight of PEFT's merged model. The three max abs diffs.
fn compare(model: &mut Gpt2LmHeadModel, ids: &Tensor, peft: &Path, merges: usize) -> [f64; 3] {
    let peft_outputs = read(peft);
    let ours = tch::no_grad(|| model.logits(ids, false));
    let logits = max_abs_diff(&ours, &peft_outputs("logits"));
    assert_eq!(merge_all(model), merges);
    let ours_merged = tch::no_grad(|| model.logits(ids, false));
    let merged_logits = max_abs_diff(&ours_merged, &peft_outputs("merged_logits"));
    let mut weights = 0.0f64;
    let theirs = Tensor::read_safetensors(peft).unwrap();
    let mut compared = 0;
    for named in named_tensors(&*model) {
        if let Some((_, tensor)) = theirs
            .iter()
            .find(|(name, _)| name.strip_prefix("merged.") == Some(named.name.as_str()))
        {
            weights = weights.max(max_abs_diff(&named.tensor, tensor));
            compared += 1;
        }
    }
    assert!(compared >= 4 * 2 * 2, "{compared} weights compared");
    [logits, merged_logits, weights]
}

#[test]
fn adapters_peft_saved_on_gpt2_load_and_merge_as_in_peft() {
    let model_dir = model_folder();
    let ids = read(&model_dir.0.join("expected.safetensors"))("input_ids");
    for (case, modules) in [("c_attn", 2), ("all_linear", 8), ("dora_c_attn", 2)] {
        let adapter_dir = TempDir::new("peft-gpt2-adapter");
        let out = run_python(
            "peft_gpt2.py",
            &[
                "write".as_ref(),
                model_dir.0.as_os_str(),
                adapter_dir.0.as_os_str(),
                case.as_ref(),
            ],
        );
        assert!(out.contains("peft_gpt2: OK, written"), "{out}");
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut model = Gpt2LmHeadModel::from_folder(&model_dir.0, &mut vs).unwrap();
        let reports = load_model_lora(&mut model, &vs, &adapter_dir.0).unwrap();
        let patched: usize = reports.iter().map(|r| r.patched.len()).sum();
        assert_eq!(patched, modules, "{case}");
        let peft = adapter_dir.0.join("peft_outputs.safetensors");
        let [logits, merged, weights] = compare(&mut model, &ids, &peft, modules);
        eprintln!(
            "PEFT adapter `{case}` on the Rust GPT-2: max abs diff of logits {logits:e}, \
             merged logits {merged:e}, merged weights {weights:e}"
        );
        assert!(
            logits <= 1e-5 && merged <= 1e-5,
            "{case}: {logits} {merged}"
        );
        assert!(weights <= 1e-6, "{case}: {weights}");
        // The adapter changed the model: not the base logits.
        let base = read(&model_dir.0.join("expected.safetensors"))("logits");
        let moved = max_abs_diff(&tch::no_grad(|| model.logits(&ids, false)), &base);
        assert!(moved > 1e-3, "{case}: {moved}");
    }
}

#[test]
fn an_adapter_trained_in_rust_on_gpt2_loads_and_merges_in_peft() {
    let model_dir = model_folder();
    let adapter_dir = TempDir::new("peft-gpt2-rust");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = Gpt2LmHeadModel::from_folder(&model_dir.0, &mut vs).unwrap();
    vs.freeze();
    let ids = read(&model_dir.0.join("expected.safetensors"))("input_ids");
    let specs = train_lora(
        &mut model,
        &vs,
        r#"lora(rank=4, alpha=8, targets="*.attn.c_attn"); lora(rank=2, alpha=8, targets="*.mlp.c_fc")"#,
        &ids,
    );
    let options = PeftOptions {
        fan_in_fan_out: true,
        ..PeftOptions::default()
    };
    save_model_lora(&adapter_dir.0, &model, &specs, &options).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter_dir.0.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["fan_in_fan_out"], true);
    let out = run_python(
        "peft_gpt2.py",
        &[
            "check".as_ref(),
            model_dir.0.as_os_str(),
            adapter_dir.0.as_os_str(),
        ],
    );
    assert!(out.contains("peft_gpt2: OK, checked"), "{out}");
    let peft = adapter_dir.0.join("peft_outputs.safetensors");
    let [logits, merged, weights] = compare(&mut model, &ids, &peft, 4);
    eprintln!(
        "Rust-trained GPT-2 adapter in PEFT: max abs diff of logits {logits:e}, merged logits \
         {merged:e}, merged weights {weights:e}"
    );
    assert!(logits <= 1e-5 && merged <= 1e-5, "{logits} {merged}");
    assert!(weights <= 1e-6, "{weights}");
    let base = read(&model_dir.0.join("expected.safetensors"))("logits");
    let moved = max_abs_diff(&tch::no_grad(|| model.logits(&ids, false)), &base);
    assert!(moved > 1e-3, "{moved}");
}
