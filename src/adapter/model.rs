//! Adapter files for a whole model: what every patch of its slots added, with the patch
//! string spec that re-creates it, saved by path (re-applied by
//! [`load_model_adapter`](super::load_model_adapter)).
use super::{save_adapter, AdapterEntry, AdapterSummary};
use crate::error::Result;
use crate::params::named_tensors;
use crate::registry::PatchSpec;
use crate::tensor_fit::same_tensor;
use crate::tree::{AnySlot, Glob, ModuleTreeExt};
use crate::ModuleTree;
use std::path::Path;
use tch::Tensor;

/// One adapter entry per patch in `model`'s slots, each with the spec (from `applied`, the
/// specs that patched the model: the first whose name is the patch's and whose `targets`
/// glob matches the slot) narrowed to the slot's own path.
pub fn model_adapter_entries(
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
) -> Result<Vec<AdapterEntry>> {
    let mut entries = Vec::new();
    for (path, slot) in model.slots() {
        for (name, added) in slot.added_by_patch().into_iter().rev() {
            let spec = spec_for(applied, name, &path)?;
            let saved = local_tensors(slot, &added);
            entries.push(AdapterEntry::new(path.clone(), spec, saved));
        }
    }
    Ok(entries)
}

/// The tensors of `slot` that are `added` (handles a patch added), by the slot's local
/// names (`lora_a`).
pub(super) fn local_tensors(slot: &dyn AnySlot, added: &[Tensor]) -> Vec<(String, Tensor)> {
    named_tensors(slot.parameters())
        .into_iter()
        .filter(|named| added.iter().any(|a| same_tensor(a, &named.tensor)))
        .map(|named| (named.name, named.tensor))
        .collect()
}

fn spec_for(applied: &[PatchSpec], name: &str, path: &str) -> Result<PatchSpec> {
    for spec in applied.iter().filter(|spec| spec.name == name) {
        if Glob::new(&spec.targets)?.matches(path) {
            let mut narrowed = spec.clone();
            narrowed.targets = path.to_owned();
            return Ok(narrowed);
        }
    }
    Err(crate::registry::PatchStringError::UnknownPatch {
        name: name.to_owned(),
        column: None,
        known: applied
            .iter()
            .map(|spec| format!("{} on {}", spec.name, spec.targets))
            .collect(),
        nearest: None,
    }
    .into())
}

/// Saves what `model`'s patches added (see [`model_adapter_entries`]) as an adapter folder.
pub fn save_model_adapter(
    dir: impl AsRef<Path>,
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
) -> Result<AdapterSummary> {
    save_adapter(dir, &model_adapter_entries(model, applied)?)
}
