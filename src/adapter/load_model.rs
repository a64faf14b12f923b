//! Loading an adapter folder onto a whole model: its patches re-created at their saved
//! paths, then their tensors filled from the folder, all or nothing.
use super::model::local_tensors;
use super::{read_adapter, AdapterDtype, AdapterEntry};
use crate::error::{PatchError, Result, TensorProblem};
use crate::registry::{apply_specs, PatchSpec};
use crate::tree::{ApplyReport, ModuleTreeExt};
use crate::varstore::forget_tensors;
use crate::ModuleTree;
use std::path::Path;
use tch::{nn, Tensor};

/// Re-creates an adapter folder's patches on `model` (a fresh copy of the base: its slots
/// at the saved paths unpatched or patched as they were when saved) and loads their
/// tensors. The manifest and tensors are validated first ([`read_adapter`]); each patch is
/// applied at its own saved path only (its `targets` glob may select more), all or
/// nothing. Then every tensor the adapter holds must be one its patch made, of the same
/// shape and dtype, and every tensor a patch made must be in the adapter: all is checked
/// before any value is written, and on a problem the patches are taken off again
/// ([`PatchError::InvalidTensors`], naming each tensor).
///
/// A floating-point tensor saved in another dtype than the model's (a `bfloat16` adapter
/// on a `float32` model) is converted, as PEFT does: [`AdapterDtype::ConvertToModel`].
/// [`load_model_adapter_with`] takes the rule.
pub fn load_model_adapter(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    dir: impl AsRef<Path>,
) -> Result<Vec<ApplyReport>> {
    load_model_adapter_with(model, vs, dir, AdapterDtype::default())
}

/// [`load_model_adapter`] with the rule for saved tensors of another dtype than the
/// model's: [`AdapterDtype::Exact`] refuses them ([`TensorProblem::Kind`], nothing changed).
pub fn load_model_adapter_with(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    dir: impl AsRef<Path>,
    dtype: AdapterDtype,
) -> Result<Vec<ApplyReport>> {
    let adapter = read_adapter(dir.as_ref())?;
    let operation = format!("load adapter `{}`", dir.as_ref().display());
    load_entries(model, vs, &adapter.entries, operation, dtype)
}

/// Applies checked entries' patches at their own paths and fills their tensors: the part
/// of [`load_model_adapter_with`] after reading, for every adapter format.
pub(crate) fn load_entries(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    entries: &[AdapterEntry],
    operation: String,
    dtype: AdapterDtype,
) -> Result<Vec<ApplyReport>> {
    let specs: Vec<PatchSpec> = entries.iter().map(at_own_path).collect();
    let reports = apply_specs(model, vs, &specs)?;
    let (problems, writes) = plan_writes(model, entries, dtype);
    if !problems.is_empty() {
        undo(model, vs, &reports);
        return Err(PatchError::InvalidTensors {
            operation,
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

/// The entry's spec narrowed to the entry's own path (a dotted path of letters, digits,
/// `_` and `-`: a glob matching only itself).
fn at_own_path(entry: &AdapterEntry) -> PatchSpec {
    let mut spec = entry.spec.clone();
    spec.targets = entry.path.clone();
    spec
}

/// Pairs each adapter tensor with the tensor its patch made (the outermost patch of the
/// entry's name in the slot at the entry's path): every problem (a tensor the patch did
/// not make, one it made that the adapter lacks, another shape, a dtype `dtype` does not
/// allow), and the `(model tensor, value)` pairs to copy (`copy_` converts the dtype).
fn plan_writes(
    model: &dyn ModuleTree,
    entries: &[AdapterEntry],
    dtype: AdapterDtype,
) -> (Vec<TensorProblem>, Vec<(Tensor, Tensor)>) {
    let slots = model.slots();
    let mut problems = Vec::new();
    let mut writes = Vec::new();
    for entry in entries {
        let made = slots
            .iter()
            .find(|(path, _)| *path == entry.path)
            .and_then(|(_, slot)| {
                let (_, added) = slot
                    .added_by_patch()
                    .into_iter()
                    .find(|(name, _)| *name == entry.spec.name)?;
                Some(local_tensors(*slot, &added))
            })
            .unwrap_or_default();
        for (local, value) in &entry.tensors {
            let name = entry.full_name(local);
            match made.iter().find(|(made, _)| made == local) {
                None => problems.push(TensorProblem::Unexpected { name }),
                Some((_, target)) if target.size() != value.size() => {
                    problems.push(TensorProblem::Shape {
                        name,
                        expected: target.size(),
                        actual: value.size(),
                    })
                }
                Some((_, target)) if !dtype.allows(value, target) => {
                    problems.push(TensorProblem::Kind {
                        name,
                        expected: target.kind(),
                        actual: value.kind(),
                    })
                }
                Some((_, target)) => writes.push((target.shallow_clone(), value.shallow_clone())),
            }
        }
        for (local, _) in &made {
            if entry.tensor(local).is_none() {
                problems.push(TensorProblem::Missing {
                    name: entry.full_name(local),
                });
            }
        }
    }
    (problems, writes)
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
