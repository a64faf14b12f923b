//! PEFT's trainable tokens (`trainable_token_indices`) against the real `peft` 0.21.2
//! (tests/python/peft_tokens.py), both ways: an adapter PEFT made loads in Rust as a
//! `MostlyFrozenEmbedding` with PEFT's outputs, and one Rust trained loads in PEFT with
//! Rust's outputs, merged too. The model is an `Embedding(32, 8)` `emb` (trainable tokens
//! 3 and 7) and a `Linear(8, 8)` `proj` (a LoRA) after it.
mod common;

use common::emb_proj::{self, Base, EmbProj};
use common::peft::{max_diff, python_checks_rust, read_tensors as read, saved_config, saved_keys};
use common::run_python;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::adapter::AdapterProblem;
use tch_patch::patches::{Lora, MostlyFrozenEmbedding};
use tch_patch::peft::{load_model_lora, read_peft_lora, save_model_lora, PeftOptions};
use tch_patch::registry::{apply_specs, Registry};
use tch_patch::tree::DynLayer;
use tch_patch::PatchError;

const KEY: &str = "base_model.model.emb.token_adapter.trainable_tokens_delta";

fn base(name: &str) -> Base {
    emb_proj::base("peft_tokens.py", name)
}

fn tokens_of(model: &EmbProj) -> &MostlyFrozenEmbedding {
    model
        .emb
        .find::<MostlyFrozenEmbedding>()
        .expect("trainable tokens on emb")
}

/// PEFT writes an adapter with trainable tokens and a LoRA; Rust loads it.
fn peft_adapter(name: &str) -> (Base, std::path::PathBuf) {
    let base = base(name);
    let out = run_python(
        "peft_tokens.py",
        &[
            "write".as_ref(),
            base.dir.path().as_os_str(),
            "lora".as_ref(),
        ],
    );
    assert!(out.contains("peft_tokens: OK, lora written"), "{out}");
    let adapter = base.dir.join("lora");
    (base, adapter)
}

#[test]
fn peft_trainable_tokens_load_as_a_mostly_frozen_embedding_with_peft_outputs() {
    let (mut base, adapter) = peft_adapter("peft-tokens-load");
    let peft = read(&adapter.join("peft.safetensors"));
    let saved = read(&adapter.join("adapter_model.safetensors"));
    let read = read_peft_lora(&adapter).unwrap();
    assert_eq!(
        read.config.trainable_token_indices,
        [("emb".to_owned(), vec![3, 7])]
    );
    assert!(
        read.trainable_tokens[0].values.equal(&saved[KEY]),
        "bit for bit"
    );
    let table = base.model.emb.root().ws.shallow_clone();
    let reports = load_model_lora(&mut base.model, &base.vs, &adapter).unwrap();
    let patched: Vec<&str> = reports.iter().flat_map(|report| report.paths()).collect();
    assert_eq!(patched, ["proj", "emb"]);
    let tokens = tokens_of(&base.model);
    assert_eq!(tokens.token_ids(), [3, 7]);
    let rows = tokens
        .effective_weight()
        .index_select(0, &Tensor::from_slice(&[3i64, 7]));
    let rows_diff = max_diff(&rows, &saved[KEY]);
    eprintln!("PEFT's rows vs W[ids] + delta: max abs diff {rows_diff:e}");
    assert!(rows_diff <= 1e-6, "{rows_diff}");
    let untouched = tokens
        .effective_weight()
        .index_select(0, &Tensor::from_slice(&[0i64, 4, 31]));
    let table_rows = table.index_select(0, &Tensor::from_slice(&[0i64, 4, 31]));
    assert!(untouched.equal(&table_rows), "other rows stay the table's");
    let diff = max_diff(&base.model.eval(&base.ids), &peft["out"]);
    eprintln!("PEFT's adapter in Rust: max abs diff {diff:e}");
    assert!(diff <= 1e-5, "Rust is {diff} away from PEFT");
}

#[test]
fn trainable_tokens_trained_in_rust_load_in_peft_with_the_same_outputs_merged_too() {
    let mut base = base("peft-tokens-rust");
    base.vs.freeze();
    tch::manual_seed(5);
    let specs = Registry::global()
        .unwrap()
        .parse(r#"mostly_frozen_embedding(tokens=[3, 7], targets="emb"); lora(rank=2, alpha=4, targets="proj")"#)
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
    assert!(
        tokens_of(&base.model).delta().abs().max().double_value(&[]) > 0.0,
        "the rows trained"
    );
    let adapter = base.dir.join("rust");
    save_model_lora(&adapter, &base.model, &specs, &PeftOptions::default()).unwrap();
    assert_eq!(
        saved_keys(&adapter),
        [
            KEY,
            "base_model.model.proj.lora_A.weight",
            "base_model.model.proj.lora_B.weight",
        ]
    );
    let config = saved_config(&adapter);
    assert_eq!(config["target_modules"], serde_json::json!(["proj"]));
    assert_eq!(
        config["trainable_token_indices"],
        serde_json::json!({"emb": [3, 7]})
    );
    let out = base.model.eval(&base.ids);
    let lora: &mut Lora<DynLayer<nn::Linear>> = base.model.proj.find_mut().unwrap();
    lora.merge().unwrap();
    // PEFT's merge copies the rows into the table; here the lookup already gives them.
    let merged = base.model.eval(&base.ids);
    let said = python_checks_rust("peft_tokens", base.dir.path(), &adapter, &out, &merged);
    eprintln!("{said}");

    // And back: the folder loads in Rust onto a fresh base with the same output.
    let mut fresh = self::base("peft-tokens-rust-back");
    load_model_lora(&mut fresh.model, &fresh.vs, &adapter).unwrap();
    let back = max_diff(&fresh.model.eval(&fresh.ids), &out);
    eprintln!("Rust's folder back in Rust: max abs diff {back:e}");
    assert!(back <= 1e-6, "{back}");
}

/// The problems of loading `adapter` onto a fresh base, which must be left unpatched.
fn load_problems(adapter: &std::path::Path, name: &str) -> Vec<AdapterProblem> {
    let mut fresh = base(name);
    let before = fresh.vs.variables().len();
    let error = load_model_lora(&mut fresh.model, &fresh.vs, adapter).unwrap_err();
    assert!(fresh.model.emb.find::<MostlyFrozenEmbedding>().is_none());
    assert!(fresh
        .model
        .proj
        .find::<Lora<DynLayer<nn::Linear>>>()
        .is_none());
    assert_eq!(fresh.vs.variables().len(), before, "nothing registered");
    match error {
        PatchError::Adapter(error) => error.problems,
        other => panic!("not an adapter error: {other}"),
    }
}

fn rewrite(adapter: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut config = saved_config(adapter);
    edit(&mut config);
    std::fs::write(
        adapter.join("adapter_config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

#[test]
fn bad_trainable_tokens_are_refused_by_key_and_change_nothing() {
    let (_base, adapter) = peft_adapter("peft-tokens-bad");
    // A token id out of the table's range.
    rewrite(&adapter, |config| {
        config["trainable_token_indices"] = serde_json::json!({"emb": [3, 40]});
    });
    let problems = load_problems(&adapter, "peft-tokens-bad-range");
    let text = format!("{problems:?}");
    assert!(text.contains(KEY) && text.contains("token id 40"), "{text}");
    // Three ids for two saved rows: the rows are of the wrong shape.
    rewrite(&adapter, |config| {
        config["trainable_token_indices"] = serde_json::json!({"emb": [3, 7, 9]});
    });
    let error = read_peft_lora(&adapter).unwrap_err();
    assert!(
        error.problems.iter().any(|p| matches!(
            p,
            AdapterProblem::Shape { name, found, .. } if name == KEY && found == &[2, 8]
        )),
        "{error}"
    );
    // The list form names no module.
    rewrite(&adapter, |config| {
        config["trainable_token_indices"] = serde_json::json!([3, 7]);
    });
    let error = read_peft_lora(&adapter).unwrap_err();
    assert!(
        error.to_string().contains("trainable_token_indices"),
        "{error}"
    );
}

#[test]
fn trainable_tokens_on_a_linear_layer_are_refused_by_key() {
    let (_base, adapter) = peft_adapter("peft-tokens-linear");
    let mut tensors = read(&adapter.join("adapter_model.safetensors"));
    let rows = tensors.remove(KEY).unwrap();
    let key = "base_model.model.proj.token_adapter.trainable_tokens_delta";
    tensors.retain(|name, _| !name.contains("proj"));
    tensors.insert(key.to_owned(), rows);
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Tensor::write_safetensors(&named, adapter.join("adapter_model.safetensors")).unwrap();
    rewrite(&adapter, |config| {
        config["trainable_token_indices"] = serde_json::json!({"proj": [3, 7]});
        config["target_modules"] = serde_json::json!(["nothing"]);
    });
    let problems = load_problems(&adapter, "peft-tokens-linear-load");
    assert!(
        problems.iter().any(|p| matches!(
            p,
            AdapterProblem::UnexpectedTensor { name, reason, .. }
                if name == key && reason.contains("Linear")
        )),
        "{problems:?}"
    );
}
