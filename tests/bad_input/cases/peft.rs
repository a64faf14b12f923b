//! PEFT adapter folders with LoRA on embeddings that do not fit the fixture's tree (its `emb`
//! is an `Embedding(16, 4)`, `blocks.*.q` are `Linear(4, 4)`), loaded with
//! `load_model_lora`: refused by key before anything is patched.
use super::adapters::{only, problems};
use crate::case;
use crate::fixture::{floats, Fixture};
use crate::Case;
use serde_json::{json, Value};
use tch::Tensor;
use tch_patch::adapter::AdapterProblem;
use tch_patch::peft::{load_model_lora, PEFT_CONFIG_FILE, PEFT_TENSORS_FILE};
use tch_patch::tree::TreeError;
use tch_patch::PatchError;

/// Writes the PEFT folder `peft/`: a config of rank 2 with `target_modules`, and random
/// tensors of the given keys (after `base_model.model.`) and shapes; makes the tree.
fn written(fx: &mut Fixture, target_modules: Value, tensors: &[(&str, &[i64])]) {
    let dir = fx.file("peft");
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": target_modules});
    std::fs::write(dir.join(PEFT_CONFIG_FILE), config.to_string()).unwrap();
    let tensors: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(key, shape)| (format!("base_model.model.{key}"), floats(shape)))
        .collect();
    Tensor::write_safetensors(&tensors, dir.join(PEFT_TENSORS_FILE)).unwrap();
    fx.with_tree();
}

/// Writes the PEFT folder `peft/` with trainable tokens only: `trainable_token_indices`
/// `tokens` and random rows `[shape]` at `<path>.token_adapter.trainable_tokens_delta`.
fn written_tokens(fx: &mut Fixture, tokens: Value, path: &str, shape: &[i64]) {
    written(
        fx,
        json!(["nothing"]),
        &[(
            &format!("{path}.token_adapter.trainable_tokens_delta"),
            shape,
        )],
    );
    let dir = fx.file("peft");
    let config = json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["nothing"],
        "trainable_token_indices": tokens});
    std::fs::write(dir.join(PEFT_CONFIG_FILE), config.to_string()).unwrap();
}

const TOKENS_KEY: &str = "base_model.model.emb.token_adapter.trainable_tokens_delta";

fn load(fx: &mut Fixture) -> Result<(), PatchError> {
    let dir = fx.file("peft");
    let Fixture { vs, tree, .. } = fx;
    load_model_lora(tree.as_mut().expect("made in setup"), vs, dir).map(drop)
}

/// Whether the only problem is an unexpected tensor `key` (after `base_model.model.`)
/// whose reason contains `says`.
fn unexpected(error: &PatchError, key: &str, says: &str) -> bool {
    matches!(only(error), Some(AdapterProblem::UnexpectedTensor { name, reason, .. })
        if *name == format!("base_model.model.{key}") && reason.contains(says))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "peft: an embedding's lora_embedding_A of [r, another vocabulary size]",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_embedding_A", &[2, 15]), ("emb.lora_embedding_B", &[4, 2])]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, expected })
                if name == "base_model.model.emb.lora_embedding_A" && found == &[2, 15]
                    && expected.starts_with("[2, 16] (r 2; `emb` has 16 embeddings)"))
        ),
        case!(
            "peft: an embedding's lora_embedding_B of another embedding size",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_embedding_A", &[2, 16]), ("emb.lora_embedding_B", &[5, 2])]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, .. })
                if name == "base_model.model.emb.lora_embedding_B" && found == &[5, 2])
        ),
        case!(
            "peft: lora_embedding_A/B keys on a linear module",
            setup: |fx| written(fx, json!(["q"]), &[("blocks.0.q.lora_embedding_A", &[2, 4]), ("blocks.0.q.lora_embedding_B", &[4, 2])]),
            |fx| load(fx),
            e if unexpected(e, "blocks.0.q.lora_embedding_A", "is of type `Linear`")
        ),
        case!(
            "peft: a linear layer's lora_A/B keys on the embedding",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_A.weight", &[2, 16]), ("emb.lora_B.weight", &[4, 2])]),
            |fx| load(fx),
            e if unexpected(e, "emb.lora_A.weight", "is of type `Embedding`")
        ),
        case!(
            "peft: one module with a linear layer's and an embedding's keys",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_A.weight", &[2, 16]), ("emb.lora_B.weight", &[4, 2]), ("emb.lora_embedding_A", &[2, 16])]),
            |fx| load(fx),
            e if unexpected(e, "emb.lora_embedding_A", "a module holds one kind of LoRA")
        ),
        case!(
            "peft: an embedding's keys under target_modules \"all-linear\"",
            setup: |fx| written(fx, json!("all-linear"), &[("emb.lora_embedding_A", &[2, 16]), ("emb.lora_embedding_B", &[4, 2])]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Field { field, message, .. })
                if field == "target_modules" && message.contains("does not apply to embeddings"))
        ),
        case!(
            "peft: a base table saved beside an embedding's LoRA that is not the model's",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_embedding_A", &[2, 16]), ("emb.lora_embedding_B", &[4, 2]), ("emb.base_layer.weight", &[16, 4])]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Tensor { name, message })
                if name == "base_model.model.emb.base_layer.weight" && message.contains("differs from the model's"))
        ),
        case!(
            "peft: a base weight saved without a LoRA beside it",
            setup: |fx| written(fx, json!(["q"]), &[("blocks.0.q.base_layer.weight", &[4, 4])]),
            |fx| load(fx),
            e if unexpected(e, "blocks.0.q.base_layer.weight", "has no LoRA weights")
        ),
        case!(
            "peft: an embedding's LoRA on a table tied to the head",
            setup: |fx| written(fx, json!(["emb"]), &[("emb.lora_embedding_A", &[2, 16]), ("emb.lora_embedding_B", &[4, 2])]),
            |fx| load(fx),
            PatchError::Tree(TreeError::TiedWeights { path, .. }) if path == "emb"
        ),
        case!(
            "peft: a trainable token id out of the table's range",
            setup: |fx| written_tokens(fx, json!({"emb": [3, 16]}), "emb", &[2, 4]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Tensor { name, message })
                if name == TOKENS_KEY && message.contains("token id 16") && message.contains("16 embeddings"))
        ),
        case!(
            "peft: trainable-token rows of another embedding size",
            setup: |fx| written_tokens(fx, json!({"emb": [3, 5]}), "emb", &[2, 5]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, .. })
                if name == TOKENS_KEY && found == &[2, 5])
        ),
        case!(
            "peft: trainable-token rows of another count than the ids",
            setup: |fx| written_tokens(fx, json!({"emb": [3, 5, 6]}), "emb", &[2, 4]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, .. })
                if name == TOKENS_KEY && found == &[2, 4])
        ),
        case!(
            "peft: trainable tokens on a linear module",
            setup: |fx| written_tokens(fx, json!({"blocks.0.q": [1, 2]}), "blocks.0.q", &[2, 4]),
            |fx| load(fx),
            e if unexpected(e, "blocks.0.q.token_adapter.trainable_tokens_delta", "is of type `Linear`")
        ),
        case!(
            "peft: trainable_token_indices in its list form",
            setup: |fx| written_tokens(fx, json!([3, 5]), "emb", &[2, 4]),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Field { field, .. }) if field == "trainable_token_indices")
        ),
        case!(
            "peft: a TRAINABLE_TOKENS adapter (PEFT's TrainableTokensConfig)",
            setup: |fx| {
                written(fx, json!(["emb"]), &[("emb.trainable_tokens_delta", &[2, 4])]);
                let config = json!({"peft_type": "TRAINABLE_TOKENS", "target_modules": ["emb"], "token_indices": [3, 5]});
                std::fs::write(fx.file("peft").join(PEFT_CONFIG_FILE), config.to_string()).unwrap();
            },
            |fx| load(fx),
            e if matches!(problems(e), [AdapterProblem::Field { field, message, .. }, AdapterProblem::UnexpectedTensor { name, reason, .. }]
                if field == "peft_type" && message.contains("TRAINABLE_TOKENS")
                    && name == "base_model.model.emb.trainable_tokens_delta" && reason.contains("TrainableTokensConfig"))
        ),
        case!(
            "peft: trainable tokens on a table tied to the head",
            setup: |fx| written_tokens(fx, json!({"emb": [3, 5]}), "emb", &[2, 4]),
            |fx| load(fx),
            PatchError::Tree(TreeError::TiedWeights { path, .. }) if path == "emb"
        ),
    ]
}
