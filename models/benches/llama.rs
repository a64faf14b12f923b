//! A small Llama end to end (`bench/llama_config.json`: hidden 256, 4 layers, 8 heads, 2 KV
//! heads, vocab 4096), like `bench/pybench/llama.py` with transformers and PEFT on the same
//! libtorch; the report pairs the two sides by case id.
//!
//! * `llama_greedy_b{1,8}/generate`: greedy decoding with the KV cache, 32 new tokens after
//!   prompts of 16 (all kept: no end token), batch 1 and 8.
//! * `llama_lora_step/train_step`: one LoRA training step (r=8, alpha=16 on `q_proj` and
//!   `v_proj`, base frozen): forward at batch 4 x 128 tokens, next-token cross entropy,
//!   backward, AdamW (lr 1e-4).
//! * `llama_load/load_to_logits`: a transformers folder and a PEFT adapter from disk to the
//!   first logits (1 x 16 tokens): a fresh VarStore, `from_folder`, `load_model_lora`, a
//!   forward.
#[path = "../../benches/common/mod.rs"]
mod common;

use common::{case, group, Policy};
use criterion::measurement::Measurement;
use criterion::Criterion;
use std::path::{Path, PathBuf};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::peft::{load_model_lora, save_model_lora, PeftOptions};
use tch_patch::prelude::*;
use tch_patch_models::decoding::CausalLm;
use tch_patch_models::llama::{LlamaConfig, LlamaForCausalLM};

const PROMPT: i64 = 16;
const NEW_TOKENS: i64 = 32;
const LORA: &str = r#"lora(rank=8, alpha=16, targets="*.self_attn.{q_proj,v_proj}")"#;

fn config() -> LlamaConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/llama_config.json");
    LlamaConfig::from_file(path).expect("bench/llama_config.json is a Llama config")
}

/// `target/bench-llama/{model,adapter}`: a random Llama of `config` saved as a transformers
/// folder, and a LoRA adapter on it with a non-zero B saved in PEFT's layout.
fn folders(config: &LlamaConfig) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-llama");
    let (model_dir, adapter_dir) = (root.join("model"), root.join("adapter"));
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = LlamaForCausalLM::new(&vs.root(), config);
    model
        .save_folder(&model_dir)
        .expect("the model folder is written");
    let specs = tch_patch::registry::Registry::global()
        .and_then(|registry| registry.parse(LORA))
        .expect("a valid patch string");
    tch_patch::registry::apply_specs(&mut model, &vs, &specs).expect("LoRA on q and v");
    tch::no_grad(|| {
        for (name, mut tensor) in vs.variables() {
            if name.ends_with("lora_b") {
                tensor.copy_(&(Tensor::randn_like(&tensor) * 0.01));
            }
        }
    });
    save_model_lora(&adapter_dir, &model, &specs, &PeftOptions::default())
        .expect("the adapter is written");
    (model_dir, adapter_dir)
}

/// Random token ids of a vocabulary of `vocab`, none of them 0 (the padding id).
fn tokens(vocab: i64, batch: i64, length: i64) -> Tensor {
    Tensor::randint_low(1, vocab, [batch, length], (Kind::Int64, Device::Cpu))
}

fn llama<M: Measurement>(c: &mut Criterion<M>) {
    let config = config();
    let vocab = config.vocab_size;
    let (model_dir, adapter_dir) = folders(&config);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = LlamaForCausalLM::from_folder(&model_dir, &mut vs).expect("the folder loads");
    for batch in [1, 8] {
        let prompts = tokens(vocab, batch, PROMPT);
        let mask = Tensor::ones([batch, PROMPT], (Kind::Int64, Device::Cpu));
        let mut g = group(c, &format!("llama_greedy_b{batch}"), Policy::Slow);
        case(&mut g, "generate", || {
            model.generate_greedy(&prompts, &mask, NEW_TOKENS, None, 0)
        });
        g.finish();
    }

    let mut train_vs = nn::VarStore::new(Device::Cpu);
    let mut train_model =
        LlamaForCausalLM::from_folder(&model_dir, &mut train_vs).expect("the folder loads");
    train_vs.freeze();
    apply_patch_string(&mut train_model, &train_vs, LORA).expect("LoRA on q and v");
    let mut opt = nn::AdamW::default()
        .build(&train_vs, 1e-4)
        .expect("an optimizer");
    let ids = tokens(vocab, 4, 128);
    let (inputs, targets) = (ids.narrow(1, 0, 127), ids.narrow(1, 1, 127).reshape([-1]));
    let mut g = group(c, "llama_lora_step", Policy::Slow);
    case(&mut g, "train_step", || {
        let logits = train_model.logits(&inputs, true);
        let loss = logits
            .reshape([-1, vocab])
            .cross_entropy_for_logits(&targets);
        opt.backward_step(&loss);
    });
    g.finish();

    let first = tokens(vocab, 1, PROMPT);
    let mut g = group(c, "llama_load", Policy::Slow);
    case(&mut g, "load_to_logits", || {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut model = LlamaForCausalLM::from_folder(&model_dir, &mut vs).expect("loads");
        load_model_lora(&mut model, &vs, &adapter_dir).expect("the adapter loads");
        tch::no_grad(|| model.logits(&first, false))
    });
    g.finish();
}

bench_main!(llama);
