//! A PEFT LoRA folder onto a whole model and back, in one call each.
use super::slots::slot_problems;
use super::{read_peft_lora, save_peft_lora, PeftOptions};
use crate::adapter::load_model::load_entries;
use crate::adapter::{model_adapter_entries, AdapterDtype, AdapterError, AdapterSummary};
use crate::registry::PatchSpec;
use crate::tree::ApplyReport;
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
    let problems = slot_problems(model, &adapter);
    if !problems.is_empty() {
        return Err(AdapterError {
            operation,
            problems,
        }
        .into());
    }
    load_entries(
        model,
        vs,
        &adapter.entries,
        operation,
        AdapterDtype::default(),
    )
}

/// Saves the LoRA patches of `model` (applied by the specs `applied`, as
/// [`model_adapter_entries`] finds them) as a PEFT folder, which Python loads with
/// `PeftModel.from_pretrained(base, dir)`.
pub fn save_model_lora(
    dir: impl AsRef<Path>,
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
    options: &PeftOptions,
) -> Result<AdapterSummary> {
    save_peft_lora(dir, &model_adapter_entries(model, applied)?, options)
}
