//! PEFT LoRA adapters on a whole Llama, both ways, against the real `peft`: an adapter PEFT
//! saved loads onto the Rust model in one call and gives PEFT's logits; an adapter trained
//! in Rust and saved in one call loads in PEFT and gives the Rust logits; with the token
//! embedding (`embed_tokens`, PEFT's `lora.Embedding`) adapted too.
mod common;
use common::{max_abs_diff, read, run_python, train_lora, TempDir};
use tch::{nn, Device, Kind};
use tch_patch::peft::{load_model_lora, read_peft_lora, save_model_lora, PeftOptions};
use tch_patch_models::decoding::CausalLm;
use tch_patch_models::llama::LlamaForCausalLM;

fn folders() -> (TempDir, TempDir) {
    let model = TempDir::new("peft-llama-model");
    let out = run_python(
        "llama_real.py",
        &["write".as_ref(), model.0.as_os_str(), "llama3_gqa".as_ref()],
    );
    assert!(out.contains("written"), "{out}");
    (model, TempDir::new("peft-llama-adapter"))
}

/// PEFT writes an adapter on `targets` (comma-separated module names); Rust loads it in one
/// call, patching `patched` modules, with PEFT's logits.
fn peft_adapter_loads(targets: &str, patched: usize) {
    let (model_dir, adapter_dir) = folders();
    let out = run_python(
        "peft_llama.py",
        &[
            "write".as_ref(),
            model_dir.0.as_os_str(),
            adapter_dir.0.as_os_str(),
            targets.as_ref(),
        ],
    );
    assert!(out.contains("peft_llama: OK, written"), "{out}");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = LlamaForCausalLM::from_folder(&model_dir.0, &mut vs).unwrap();
    // PEFT saves a targeted `embed_tokens`' table beside its LoRA (`save_embedding_layers`).
    let tables: Vec<String> = read_peft_lora(&adapter_dir.0)
        .unwrap()
        .base_weights
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let embedded = targets.contains("embed_tokens");
    assert_eq!(
        tables,
        if embedded {
            vec!["model.embed_tokens"]
        } else {
            vec![]
        }
    );
    let reports = load_model_lora(&mut model, &vs, &adapter_dir.0).unwrap();
    let count: usize = reports.iter().map(|r| r.patched.len()).sum();
    assert_eq!(count, patched, "{targets}");
    let ids = read(&model_dir.0.join("expected.safetensors"))("input_ids");
    let ours = tch::no_grad(|| model.logits(&ids, false));
    let theirs = read(&adapter_dir.0.join("peft_logits.safetensors"))("logits");
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("PEFT adapter on {targets} of the Rust Llama: max abs logit diff {diff:e}");
    assert!(diff <= 1e-5, "{diff}");
}

#[test]
fn an_adapter_peft_saved_loads_onto_the_model_in_one_call() {
    peft_adapter_loads("q_proj,v_proj", 4); // q_proj and v_proj of 2 layers
}

#[test]
fn a_peft_adapter_on_the_token_embedding_loads_onto_the_model() {
    peft_adapter_loads("embed_tokens,q_proj", 3); // embed_tokens, q_proj of 2 layers
}

/// Rust trains `patches` and saves them in one call; PEFT loads them with the Rust logits.
fn rust_adapter_loads_in_peft(patches: &str) {
    let (model_dir, adapter_dir) = folders();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = LlamaForCausalLM::from_folder(&model_dir.0, &mut vs).unwrap();
    vs.freeze();
    let ids = read(&model_dir.0.join("expected.safetensors"))("input_ids");
    let specs = train_lora(&mut model, &vs, patches, &ids);
    save_model_lora(&adapter_dir.0, &model, &specs, &PeftOptions::default()).unwrap();
    let ours = tch::no_grad(|| model.logits(&ids, false)).to_kind(Kind::Float);
    let out = run_python(
        "peft_llama.py",
        &[
            "logits".as_ref(),
            model_dir.0.as_os_str(),
            adapter_dir.0.as_os_str(),
        ],
    );
    assert!(out.contains("peft_llama: OK, logits"), "{out}");
    let theirs = read(&adapter_dir.0.join("peft_logits.safetensors"))("logits");
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("Rust-trained adapter ({patches}) in PEFT: max abs logit diff {diff:e}");
    assert!(diff <= 1e-5, "{diff}");
    // Training moved the adapter: the logits are not the base model's.
    let base = read(&model_dir.0.join("expected.safetensors"))("logits");
    assert!(max_abs_diff(&ours, &base) > 1e-3);
}

#[test]
fn an_adapter_trained_in_rust_loads_in_peft_with_the_same_logits() {
    rust_adapter_loads_in_peft(r#"lora(rank=4, alpha=8, targets="*.self_attn.{q_proj,v_proj}")"#);
}

#[test]
fn an_adapter_on_the_token_embedding_trained_in_rust_loads_in_peft() {
    rust_adapter_loads_in_peft(concat!(
        r#"lora(rank=4, alpha=8, targets="model.embed_tokens"); "#,
        r#"lora(rank=2, alpha=8, targets="*.self_attn.q_proj")"#
    ));
}
