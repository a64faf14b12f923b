//! A PEFT LoRA folder onto a whole model and back, in one call each.
use super::{read_peft_lora, save_peft_lora, PeftOptions};
use crate::adapter::load_model::load_entries;
use crate::adapter::{model_adapter_entries, AdapterDtype, AdapterSummary};
use crate::registry::PatchSpec;
use crate::tree::ApplyReport;
use crate::{ModuleTree, Result};
use std::path::Path;
use tch::nn;

/// Loads a PEFT LoRA folder onto `model` (a fresh copy of the base): the folder is read and
/// checked ([`read_peft_lora`]: every config field implemented or refused, and every module
/// with weights in the file one that PEFT's `target_modules`, `exclude_modules`,
/// `layers_to_transform` and `layers_pattern` select), then a `lora` patch goes on the slot
/// at each module's path and its `lora_a` / `lora_b` take the file's values, all or
/// nothing: on any problem the patches come off again and the model is as it was.
/// Tensors saved in another floating dtype than the model's are converted, as PEFT does.
///
/// A model path with no slot, or a slot that does not hold a linear layer, is an error
/// naming it.
pub fn load_model_lora(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    dir: impl AsRef<Path>,
) -> Result<Vec<ApplyReport>> {
    let dir = dir.as_ref();
    let adapter = read_peft_lora(dir)?;
    let operation = format!("load PEFT adapter `{}`", dir.display());
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
