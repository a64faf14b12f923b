//! Llama against transformers: tiny models with random weights built and saved by the real
//! `transformers` (tests/python/llama_real.py), loaded from their folders here, logits
//! compared on the same input ids.
use std::path::Path;
use tch::{nn, Device, Tensor};
use tch_patch_models::decoding::{CausalLm, KvCache};
use tch_patch_models::llama::{LlamaConfig, LlamaForCausalLM, Rope};
use tch_patch_models::ModelError;

mod common;
use common::{max_abs_diff, run_python, TempDir};

fn transformers_folder(case: &str) -> TempDir {
    let dir = TempDir::new(case);
    let out = run_python(
        "llama_real.py",
        &["write".as_ref(), dir.0.as_os_str(), case.as_ref()],
    );
    assert!(
        out.contains(&format!("llama_real: OK, {case} written")),
        "{out}"
    );
    dir
}

fn expected(dir: &Path) -> (Tensor, Tensor) {
    let tensors = Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap();
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    (get("input_ids"), get("logits"))
}

fn check_logits(case: &str) -> LlamaConfig {
    check_logits_within(case, 1e-4)
}

fn check_logits_within(case: &str, tolerance: f64) -> LlamaConfig {
    let dir = transformers_folder(case);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap();
    let (ids, logits) = expected(&dir.0);
    let ours = tch::no_grad(|| model.logits(&ids, false)).to_kind(tch::Kind::Float);
    assert_eq!(ours.size(), logits.size());
    let diff = max_abs_diff(&ours, &logits);
    eprintln!("{case}: max abs logit diff against transformers {diff:e}");
    assert!(diff <= tolerance, "{case}: max abs diff {diff}");
    model.config().clone()
}

#[test]
fn logits_match_transformers_on_a_sharded_checkpoint() {
    let dir = transformers_folder("sharded");
    let shards = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("model-")
        })
        .count();
    assert!(shards >= 3, "{shards} shards");
    drop(dir);
    check_logits("sharded");
}

/// bf16 weights, loaded as stored and run in bf16 on both sides: the same libtorch kernels,
/// but transformers' attention (SDPA) and the eager attention here round differently in bf16.
#[test]
fn logits_match_transformers_with_bf16_weights() {
    let config = check_logits_within("bf16", 1e-2);
    assert_eq!(config.dtype, tch::Kind::BFloat16);
}

#[test]
fn logits_match_transformers_with_llama3_rope_and_grouped_query_attention() {
    let config = check_logits("llama3_gqa");
    assert_eq!(config.num_key_value_heads, 2);
    assert!(matches!(config.rope, Rope::Llama3 { .. }));
}

#[test]
fn logits_match_transformers_with_a_tied_head_and_attention_biases() {
    let config = check_logits("tied_default");
    assert!(config.tie_word_embeddings && config.attention_bias);
    assert_eq!(config.head_dim, 16);
}

#[test]
fn every_linear_layer_and_the_embedding_is_a_slot_with_transformers_names() {
    let dir = transformers_folder("llama3_gqa");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap();
    use tch_patch::prelude::*;
    let slots: Vec<String> = model.slots().into_iter().map(|(path, _)| path).collect();
    assert_eq!(slots.len(), 1 + 2 * 7 + 1);
    assert_eq!(slots[0], "model.embed_tokens");
    assert_eq!(slots[1], "model.layers.0.self_attn.q_proj");
    assert_eq!(slots.last().unwrap(), "lm_head");
    let names: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    let file = Tensor::read_safetensors(dir.0.join("model.safetensors")).unwrap();
    let mut in_file: Vec<String> = file.into_iter().map(|(n, _)| n).collect();
    let mut ours = names.clone();
    in_file.sort();
    ours.sort();
    assert_eq!(ours, in_file);
}

#[test]
fn unknown_and_unsupported_config_fields_are_refused_by_name() {
    let dir = transformers_folder("tied_default");
    let config_path = dir.0.join("config.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        std::fs::write(&config_path, text.replacen(from, to, 1)).unwrap();
        LlamaConfig::from_file(&config_path).unwrap_err()
    };
    let unknown = edit("\"use_cache\"", "\"sliding_window\": 4, \"use_cache\"");
    assert!(
        matches!(&unknown, ModelError::UnknownFields { fields, known, .. }
        if fields == &["sliding_window"] && known.iter().any(|k| k == "rope_parameters")),
        "{unknown}"
    );
    let act = edit("\"silu\"", "\"gelu\"");
    assert!(
        act.to_string()
            .contains("`hidden_act` = \"gelu\" is not supported"),
        "{act}"
    );
    let rope = edit("\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"");
    assert!(
        rope.to_string()
            .contains("`rope_parameters.rope_type` = \"yarn\""),
        "{rope}"
    );
    std::fs::write(&config_path, &text).unwrap();
    std::fs::remove_file(dir.0.join("model.safetensors")).unwrap();
    std::fs::write(dir.0.join("model.safetensors.index.json"), "{}").unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let no_map = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap_err();
    assert!(
        no_map.to_string().contains("no `weight_map` object"),
        "{no_map}"
    );
    std::fs::write(
        dir.0.join("model.safetensors.index.json"),
        r#"{"weight_map": {"lm_head.weight": "../elsewhere.safetensors"}}"#,
    )
    .unwrap();
    let outside = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap_err();
    assert!(
        outside.to_string().contains("is not a file of the folder"),
        "{outside}"
    );
}

#[test]
fn a_patch_string_puts_lora_on_the_attention_of_a_loaded_model() {
    use tch_patch::prelude::*;
    let dir = transformers_folder("llama3_gqa");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap();
    vs.freeze();
    let (ids, logits) = expected(&dir.0);
    let reports = apply_patch_string(
        &mut model,
        &vs,
        r#"lora(rank=2, alpha=4, targets="*.self_attn.{q_proj,v_proj}")"#,
    )
    .unwrap();
    assert_eq!(reports[0].patched.len(), 4);
    // LoRA's B starts at zero: the patched model computes transformers' logits still.
    let ours = tch::no_grad(|| model.logits(&ids, false));
    assert!(max_abs_diff(&ours, &logits) <= 1e-4);
    // One training step reaches the adapters only.
    let loss = model.logits(&ids, true).mean(None);
    loss.backward();
    let variables = vs.variables();
    let mut with_grad: Vec<&String> = variables
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .inspect(|(_, t)| assert!(t.grad().defined()))
        .map(|(name, _)| name)
        .collect();
    with_grad.sort();
    assert_eq!(with_grad.len(), 8, "{with_grad:?}");
    assert!(
        with_grad.iter().all(|name| name.contains(".lora_")),
        "{with_grad:?}"
    );
    let names: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    assert!(names
        .iter()
        .any(|n| n == "model.layers.1.self_attn.v_proj.lora_b"));
}

/// transformers' `generate(do_sample=False)`, 32 new tokens for a batch of 3 left-padded
/// prompts of lengths 5, 9 and 3: the same tokens from `generate_greedy` and its KV cache.
#[test]
fn greedy_decoding_gives_transformers_tokens() {
    for case in ["llama3_gqa", "tied_default"] {
        let dir = transformers_folder(case);
        let out = run_python("llama_real.py", &["generate".as_ref(), dir.0.as_os_str()]);
        assert!(out.contains("llama_real: OK, generated"), "{out}");
        let file = Tensor::read_safetensors(dir.0.join("generated.safetensors")).unwrap();
        let get = |name: &str| {
            file.iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .shallow_clone()
        };
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap();
        let ours = model.generate_greedy(&get("input_ids"), &get("attention_mask"), 32, None, 0);
        let theirs = get("sequences");
        assert_eq!(ours.size(), [3, 9 + 32]);
        let differing = ours
            .ne_tensor(&theirs)
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        assert_eq!(differing, 0, "{case}: ours {ours:?} theirs {theirs:?}");
    }
}

/// Decoding token by token through the cache gives the logits of one full forward.
#[test]
fn the_kv_cache_gives_the_logits_of_the_full_sequence() {
    let dir = transformers_folder("llama3_gqa");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = LlamaForCausalLM::from_folder(&dir.0, &mut vs).unwrap();
    let (ids, logits) = expected(&dir.0);
    let mut cache = KvCache::new(2);
    let t = ids.size()[1];
    tch::no_grad(|| {
        let first = model.forward_cached(
            &ids.narrow(1, 0, 4),
            &ids.narrow(1, 0, 4).ones_like(),
            &mut cache,
            false,
        );
        assert!(max_abs_diff(&first, &logits.narrow(1, 0, 4)) <= 1e-4);
        for i in 4..t {
            let mask = ids.narrow(1, 0, i + 1).ones_like();
            let step = model.forward_cached(&ids.narrow(1, i, 1), &mask, &mut cache, false);
            assert!(
                max_abs_diff(&step, &logits.narrow(1, i, 1)) <= 1e-4,
                "position {i}"
            );
        }
    });
    assert_eq!(cache.len(), t);
}

/// A model built in Rust and saved as a transformers folder loads in transformers, which
/// computes the same logits; a patched model is refused.
#[test]
fn a_folder_saved_in_rust_loads_in_transformers() {
    let dir = TempDir::new("saved-in-rust");
    let vs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(4);
    let path = transformers_folder("llama3_gqa");
    let config = LlamaConfig::from_file(path.0.join("config.json")).unwrap();
    let mut model = LlamaForCausalLM::new(&vs.root(), &config);
    model.save_folder(&dir.0).unwrap();
    let ids = Tensor::from_slice(&[3i64, 1, 4, 1, 5, 9, 2, 6]).view([2, 4]);
    Tensor::write_safetensors(&[("input_ids", &ids)], dir.0.join("ids.safetensors")).unwrap();
    let out = run_python("llama_real.py", &["logits".as_ref(), dir.0.as_os_str()]);
    assert!(out.contains("llama_real: OK, logits"), "{out}");
    let theirs = common::read(&dir.0.join("logits.safetensors"))("logits");
    let ours = tch::no_grad(|| model.logits(&ids, false));
    assert!(max_abs_diff(&ours, &theirs) <= 1e-4);
    use tch_patch::prelude::*;
    apply_patch_string(&mut model, &vs, r#"lora(rank=2, targets="*.q_proj")"#).unwrap();
    let refused = model.save_folder(dir.0.join("patched")).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("save the adapter with peft::save_model_lora"),
        "{refused}"
    );
}

/// Broken folders: each a typed error naming the file or field, and no model returned.
#[test]
fn broken_checkpoints_are_refused_by_name() {
    let dir = transformers_folder("sharded");
    let index = dir.0.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let shard = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("model-") && name.ends_with(".safetensors"))
        .unwrap();
    let load = || {
        let mut vs = nn::VarStore::new(Device::Cpu);
        LlamaForCausalLM::from_folder(&dir.0, &mut vs)
            .unwrap_err()
            .to_string()
    };
    // An index naming a file that is not there.
    std::fs::write(&index, text.replace(&shard, "model-99-of-99.safetensors")).unwrap();
    let missing = load();
    assert!(missing.contains("model-99-of-99.safetensors"), "{missing}");
    std::fs::write(&index, &text).unwrap();
    // A shard with a wrong shape.
    let path = dir.0.join(&shard);
    let tensors = Tensor::read_safetensors(&path).unwrap();
    let (name, first) = &tensors[0];
    let mut edited: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    edited[0].1 = Tensor::zeros([first.size()[0] + 1], (first.kind(), Device::Cpu));
    Tensor::write_safetensors(&edited, &path).unwrap();
    let shape = load();
    assert!(
        shape.contains(name.as_str()) && shape.contains("shape"),
        "{shape}"
    );
    // A missing shard.
    std::fs::remove_file(&path).unwrap();
    let gone = load();
    assert!(gone.contains(&shard), "{gone}");
    // An architecture this crate does not implement.
    let config = dir.0.join("config.json");
    let json = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        json.replace("\"model_type\": \"llama\"", "\"model_type\": \"mistral\""),
    )
    .unwrap();
    let arch = LlamaConfig::from_file(&config).unwrap_err().to_string();
    assert!(
        arch.contains("`model_type` = \"mistral\" is not supported"),
        "{arch}"
    );
}
