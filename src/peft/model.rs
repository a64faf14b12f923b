//! A PEFT LoRA folder onto a whole model and back, in one call each.
use super::save::save_peft;
use super::slots::{slot_problems, token_entries};
use super::tokens::{tokens_key, tokens_values};
use super::{read_peft_lora, PeftOptions};
use crate::adapter::load_model::load_entries;
use crate::adapter::{model_adapter_entries, AdapterDtype, AdapterError, AdapterSummary};
use crate::adapter::{AdapterEntry, AdapterProblem};
use crate::patches::MostlyFrozenEmbeddingConfig;
use crate::registry::PatchArgs;
use crate::registry::PatchSpec;
use crate::tree::ApplyReport;
use crate::tree::ModuleTreeExt;
use crate::{ModuleTree, Result};
use std::path::Path;
use tch::nn;

/// Loads a PEFT LoRA folder onto `model` (a fresh copy of the base): the folder is read and
/// checked ([`read_peft_lora`]: every config field implemented or refused, and every module
/// with weights in the file one that PEFT's `target_modules`, `exclude_modules`,
/// `layers_to_transform` and `layers_pattern` select), then a `lora` patch goes on the slot
/// at each module's path and its tensors take the file's values, all or nothing: on any
/// problem the patches come off again and the model is as it was. A linear layer's
/// module (`lora_A.weight`, `lora_B.weight`) gets a [`Lora`](crate::patches::Lora) with
/// `lora_a` / `lora_b`, an embedding's (`lora_embedding_A`, `lora_embedding_B`) a
/// [`LoraEmbedding`](crate::patches::LoraEmbedding) with `lora_embedding_a` /
/// `lora_embedding_b`; with `use_dora`, a linear module gets a
/// [`Dora`](crate::patches::Dora) with `lora_magnitude` too. Tensors saved in another floating dtype than the model's are
/// converted, as PEFT does.
///
/// A model path with no slot, a slot of another kind than its module's LoRA (an
/// embedding's keys on a linear layer, or the other way round) or an embedding's `A`
/// `[r, num_embeddings]` / `B` `[embedding_dim, r]` that does not fit the table is an
/// error naming the key, changing nothing; so is a base weight PEFT saved beside a LoRA
/// (`<path>.base_layer.weight`, its `save_embedding_layers` for a targeted `embed_tokens`)
/// that is not the model's, since PEFT would load it into the model and this library does
/// not change base weights.
pub fn load_model_lora(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    dir: impl AsRef<Path>,
) -> Result<Vec<ApplyReport>> {
    let dir = dir.as_ref();
    let adapter = read_peft_lora(dir)?;
    let operation = format!("load PEFT adapter `{}`", dir.display());
    let mut problems = slot_problems(model, &adapter);
    let tokens = token_entries(model, &adapter, &mut problems);
    if !problems.is_empty() {
        return Err(AdapterError {
            operation,
            problems,
        }
        .into());
    }
    let mut entries = adapter.entries;
    entries.extend(tokens);
    load_entries(model, vs, &entries, operation, AdapterDtype::default())
}

/// Saves the LoRA patches of `model` (applied by the specs `applied`, as
/// [`model_adapter_entries`] finds them) as a PEFT folder, which Python loads with
/// `PeftModel.from_pretrained(base, dir)`. A
/// [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) on an `nn::Embedding`
/// slot is saved as PEFT's trainable tokens: `trainable_token_indices` `{path: ids}` and
/// `base_model.model.<path>.token_adapter.trainable_tokens_delta`, the rows' new values
/// `W[ids] + delta` (PEFT's layer copies them into the table); a slot holding both it and
/// a LoRA is refused, naming the key.
pub fn save_model_lora(
    dir: impl AsRef<Path>,
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
    options: &PeftOptions,
) -> Result<AdapterSummary> {
    let dir = dir.as_ref();
    let (token_entries, entries): (Vec<AdapterEntry>, Vec<AdapterEntry>) =
        model_adapter_entries(model, applied)?
            .into_iter()
            .partition(|entry| entry.spec.name == MostlyFrozenEmbeddingConfig::NAME);
    let slots = model.slots();
    let mut problems = Vec::new();
    let mut tokens = Vec::with_capacity(token_entries.len());
    for entry in &token_entries {
        let weight = slots
            .iter()
            .find(|(path, _)| *path == entry.path)
            .and_then(|(_, slot)| slot.downcast_ref::<nn::Embedding>())
            .map(|embedding| embedding.root().ws.shallow_clone());
        let Some(weight) = weight else {
            problems.push(AdapterProblem::Tensor {
                name: tokens_key(&entry.path),
                message: format!("`{}` is not an `nn::Embedding` slot", entry.path),
            });
            continue;
        };
        if let Some((ids, values)) = tokens_values(entry, &weight, &mut problems) {
            tokens.push((entry.path.clone(), ids, values));
        }
    }
    if !problems.is_empty() {
        return Err(AdapterError {
            operation: format!("save PEFT adapter to `{}`", dir.display()),
            problems,
        }
        .into());
    }
    save_peft(dir, &entries, &tokens, options)
}
