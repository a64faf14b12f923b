//! Adapter files for a whole model: what every patch of its slots added, with the patch
//! string spec that re-creates it, saved and re-applied by path.
use super::{read_adapter, save_adapter, AdapterEntry, AdapterSummary};
use crate::checks::same_tensor;
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::{named_tensors, named_tensors_with_prefix};
use crate::registry::{apply_specs, PatchSpec};
use crate::tree::{ApplyReport, Glob, ModuleTree, ModuleTreeExt};
use crate::varstore::forget_tensors;
use std::path::Path;
use tch::nn;

/// One adapter entry per patch in `model`'s slots, each with the spec (from `applied`, the
/// specs that patched the model: the first whose name is the patch's and whose `targets`
/// glob matches the slot) narrowed to the slot's own path.
pub fn model_adapter_entries(
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
) -> Result<Vec<AdapterEntry>> {
    let mut entries = Vec::new();
    for (path, slot) in model.slots() {
        let tensors = named_tensors_with_prefix(slot.parameters(), &path);
        for (name, added) in slot.added_by_patch().into_iter().rev() {
            let spec = spec_for(applied, name, &path)?;
            let local = |full: &str| full[path.len() + 1..].to_owned();
            let saved = tensors
                .iter()
                .filter(|named| added.iter().any(|a| same_tensor(a, &named.tensor)))
                .map(|named| (local(&named.name), named.tensor.shallow_clone()))
                .collect();
            entries.push(AdapterEntry::new(path.clone(), spec, saved));
        }
    }
    Ok(entries)
}

fn spec_for(applied: &[PatchSpec], name: &str, path: &str) -> Result<PatchSpec> {
    for spec in applied.iter().filter(|spec| spec.name == name) {
        if Glob::new(&spec.targets)?.matches(path) {
            let mut narrowed = spec.clone();
            narrowed.targets = path.to_owned();
            return Ok(narrowed);
        }
    }
    Err(PatchError::UnknownPatch {
        name: name.to_owned(),
        column: None,
        known: applied
            .iter()
            .map(|spec| format!("{} on {}", spec.name, spec.targets))
            .collect(),
        nearest: None,
    })
}

/// Saves what `model`'s patches added (see [`model_adapter_entries`]) as an adapter folder.
pub fn save_model_adapter(
    dir: impl AsRef<Path>,
    model: &dyn ModuleTree,
    applied: &[PatchSpec],
) -> Result<AdapterSummary> {
    save_adapter(dir, &model_adapter_entries(model, applied)?)
}

/// Re-creates an adapter folder's patches on `model` (a fresh copy of the base: its slots
/// at the saved paths unpatched or patched as they were when saved) and loads their
/// tensors. The manifest and tensors are validated first ([`read_adapter`]); the patches
/// are applied all or nothing; every loaded tensor's shape and dtype is checked before any
/// value is written, and on a mismatch the patches are taken off again.
pub fn load_model_adapter(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    dir: impl AsRef<Path>,
) -> Result<Vec<ApplyReport>> {
    let adapter = read_adapter(dir.as_ref())?;
    let specs: Vec<PatchSpec> = adapter
        .entries
        .iter()
        .map(|entry| entry.spec.clone())
        .collect();
    let reports = apply_specs(model, vs, &specs)?;
    let current = named_tensors(&ModelParameters(model));
    let mut problems = Vec::new();
    let mut writes = Vec::new();
    for entry in &adapter.entries {
        for (local, value) in &entry.tensors {
            let name = format!("{}.{local}", entry.path);
            match current.iter().find(|named| named.name == name) {
                None => problems.push(TensorProblem::Missing { name }),
                Some(named) if named.tensor.size() != value.size() => {
                    problems.push(TensorProblem::Shape {
                        name,
                        expected: named.tensor.size(),
                        actual: value.size(),
                    })
                }
                Some(named) => writes.push((named.tensor.shallow_clone(), value.shallow_clone())),
            }
        }
    }
    if !problems.is_empty() {
        undo(model, vs, &reports);
        return Err(PatchError::InvalidTensors {
            operation: format!("load adapter `{}`", dir.as_ref().display()),
            problems,
        });
    }
    tch::no_grad(|| -> Result<()> {
        for (mut target, value) in writes {
            target.f_copy_(&value).map_err(PatchError::torch(
                "copying an adapter tensor into the model",
            ))?;
        }
        Ok(())
    })?;
    Ok(reports)
}

/// Takes off the patches `reports` put on, newest first, and their tensors out of `vs`.
fn undo(model: &mut dyn ModuleTree, vs: &nn::VarStore, reports: &[ApplyReport]) {
    let patched: Vec<&str> = reports
        .iter()
        .rev()
        .flat_map(|r| r.paths().into_iter().rev())
        .collect();
    let mut slots = model.slots_mut();
    for path in patched {
        if let Some(slot) = slots.iter_mut().find(|slot| slot.path == path) {
            if let Some((_, tensors)) = slot.slot.peel_one() {
                forget_tensors(&vs.variables_, &tensors);
            }
        }
    }
}

/// A model tree seen as its parameters (every slot's tensors, by path).
struct ModelParameters<'m>(&'m dyn ModuleTree);

impl crate::params::Parameters for ModelParameters<'_> {
    fn visit<'a>(&'a self, visitor: &mut crate::params::Visitor<'a, '_>) {
        for (path, slot) in self.0.slots() {
            visitor.child(&path, slot.parameters());
        }
    }
    fn visit_mut(&mut self, _visitor: &mut crate::params::VisitorMut<'_>) {}
}
