//! Checks of adapter entries given in Rust, before anything is written or changed.
use super::args::recheck_spec;
use super::entry::{local_name_problem, path_problem, AdapterEntry};
use super::problem::AdapterProblem;
use super::tensors::unwritable;
use crate::registry::Registry;
use std::collections::HashSet;

/// Every problem of `entries`: an invalid or repeated path, a spec the registry rejects,
/// an invalid, repeated, undefined or unwritable tensor.
pub(crate) fn check_entries(registry: &Registry, entries: &[AdapterEntry]) -> Vec<AdapterProblem> {
    let mut problems = Vec::new();
    let mut paths = HashSet::new();
    let mut names = HashSet::new();
    for entry in entries {
        if let Some(problem) = path_problem(&entry.path) {
            problems.push(problem);
        } else if !paths.insert(entry.path.as_str()) {
            problems.push(AdapterProblem::DuplicatePath {
                path: entry.path.clone(),
            });
        }
        problems.extend(recheck_spec(registry, &entry.path, &entry.spec));
        for (local, tensor) in &entry.tensors {
            let full = entry.full_name(local);
            if let Some(problem) = local_name_problem(&entry.path, local) {
                problems.push(problem);
            } else if !names.insert(full.clone()) {
                problems.push(AdapterProblem::Tensor {
                    name: full.clone(),
                    message: "is given more than once".into(),
                });
            }
            problems.extend(unwritable(&full, tensor));
        }
    }
    problems
}
