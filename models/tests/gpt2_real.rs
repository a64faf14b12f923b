//! GPT-2 against transformers: a tiny model with random weights built and saved by the real
//! `transformers` (tests/python/gpt2_real.py), loaded here; logits and greedy tokens compared.
mod common;
use common::{max_abs_diff, read, run_python, TempDir};
use tch::{nn, Device};
use tch_patch::prelude::*;
use tch_patch_models::decoding::CausalLm;
use tch_patch_models::gpt2::Gpt2LmHeadModel;

fn transformers_folder() -> TempDir {
    let dir = TempDir::new("gpt2");
    let out = run_python("gpt2_real.py", &["write".as_ref(), dir.0.as_os_str()]);
    assert!(out.contains("gpt2_real: OK, written"), "{out}");
    dir
}

#[test]
fn logits_and_greedy_tokens_match_transformers() {
    let dir = transformers_folder();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Gpt2LmHeadModel::from_folder(&dir.0, &mut vs).unwrap();
    let expected = read(&dir.0.join("expected.safetensors"));
    let logits = tch::no_grad(|| model.logits(&expected("input_ids"), false));
    let diff = max_abs_diff(&logits, &expected("logits"));
    eprintln!("gpt2: max abs logit diff against transformers {diff:e}");
    assert!(diff <= 1e-4, "{diff}");
    let ours = model.generate_greedy(
        &expected("prompts"),
        &expected("attention_mask"),
        32,
        None,
        0,
    );
    assert!(ours.equal(&expected("sequences")), "ours {ours:?}");
}

#[test]
fn conv1d_layers_are_slots_stored_in_out_as_transformers_does() {
    let dir = transformers_folder();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Gpt2LmHeadModel::from_folder(&dir.0, &mut vs).unwrap();
    let slots: Vec<String> = model.slots().into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        slots[..3],
        [
            "transformer.wte",
            "transformer.wpe",
            "transformer.h.0.attn.c_attn"
        ]
    );
    assert_eq!(slots.len(), 2 + 2 * 4);
    assert_eq!(
        model.transformer.h[0].attn.c_attn.root().weight.size(),
        [32, 96]
    );
    let mut ours: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    let mut theirs: Vec<String> = tch::Tensor::read_safetensors(dir.0.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}
