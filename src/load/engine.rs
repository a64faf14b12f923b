//! The one load behind every entry point: the checkpoints' tensors matched to the module's
//! by name, every problem found from the headers (and hook outputs) before the first
//! write, then each tensor written as the load's mode says, one at a time.
use super::checkpoint::{Checkpoint, Entry};
use super::{HookOutput, LoadError, LoadMode, LoadOptions, LoadReport};
use crate::error::TensorProblem;
use crate::params::Parameters;
use crate::swap::set_data_keeping_grad;
use crate::tensor_fit::{fit_problems, has_internal_overlap, Fit};
use crate::tensor_plan::Planner;
use crate::tied::Agreement;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A load hook, erased.
pub(super) type Hook<'h> = dyn FnMut(&str, Tensor) -> crate::Result<HookOutput> + 'h;

/// Where a file tensor is: which checkpoint, under which key.
#[derive(Clone)]
struct Source {
    checkpoint: usize,
    key: String,
}

/// Loads `checkpoints` (one file, or every shard of an index) into `module`; `label` is
/// the path errors name.
pub(super) fn load<M: Parameters + ?Sized>(
    module: &mut M,
    checkpoints: &[Checkpoint],
    label: &Path,
    options: &LoadOptions,
    mut hook: Option<&mut Hook<'_>>,
) -> Result<LoadReport, LoadError> {
    let mut planner = Planner::new(module, Agreement::EqualValues);
    // Module name -> where the file has it, for the keys under the prefix.
    let mut file: BTreeMap<String, Source> = BTreeMap::new();
    for (checkpoint, c) in checkpoints.iter().enumerate() {
        for key in c.entries().keys() {
            if let Some(name) = options.module_name(key) {
                let source = Source {
                    checkpoint,
                    key: key.clone(),
                };
                if file.insert(name.to_owned(), source).is_some() {
                    planner.reject([TensorProblem::Duplicate { name: key.clone() }]);
                }
            }
        }
    }
    let entry = |source: &Source| &checkpoints[source.checkpoint].entries()[&source.key];

    // Module name given a file tensor -> its source (values read at write time).
    let mut streamed: HashMap<String, Source> = HashMap::new();
    // Tie leader -> the first name that gave it a file tensor.
    let mut leader_names: HashMap<usize, String> = HashMap::new();
    // In the module's order (what a hook sees), then the keys the module lacks.
    let walk: Vec<String> = planner.tensors().iter().map(|t| t.name.clone()).collect();
    let given: Vec<(String, Source)> = walk
        .into_iter()
        .filter_map(|name| file.remove(&name).map(|source| (name, source)))
        .collect();
    let unexpected: Vec<String> = file.into_values().map(|source| source.key).collect();
    for (name, source) in &given {
        let checkpoint = &checkpoints[source.checkpoint];
        if let Some(hook) = hook.as_mut() {
            // `None` (a problem recorded) if an earlier hook output took this name.
            let Some(index) = planner.target(name) else {
                continue;
            };
            let tensor = checkpoint.read(&source.key, entry(source))?;
            let outputs = match hook(name, tensor) {
                Ok(outputs) => outputs,
                Err(error) => {
                    planner.reject([TensorProblem::Hook {
                        name: name.clone(),
                        error: Box::new(error),
                    }]);
                    continue;
                }
            };
            for (output, value) in outputs.0 {
                // The file tensor's own name was looked up (and recorded) already.
                let (i, output) = match output {
                    Some(other) if other != *name => (planner.target(&other), other),
                    _ => (Some(index), name.clone()),
                };
                let Some(i) = i else { continue };
                let target = planner.tensors()[i].tensor.shallow_clone();
                let problems = value_problems(&output, &value, &target, options)?;
                if problems.is_empty() {
                    let value = value
                        .f_to_device(target.device())
                        .map_err(LoadError::torch(format!("moving `{output}`")))?;
                    planner.accept(i, &output, &value);
                } else {
                    planner.reject(problems);
                }
            }
            continue;
        }
        let Some(i) = planner.target(name) else {
            continue;
        };
        let target = planner.tensors()[i].tensor.shallow_clone();
        let problems = entry_problems(name, checkpoint, &source.key, &target, options)?;
        if !problems.is_empty() {
            planner.reject(problems);
            continue;
        }
        let leader = planner.leader(i);
        if let Some(first) = leader_names.get(&leader) {
            // A second name of one tied tensor: its value must equal the first's.
            let earlier = &streamed[first];
            let a = checkpoints[earlier.checkpoint].read(&earlier.key, entry(earlier))?;
            let b = checkpoint.read(&source.key, entry(source))?;
            if !a.f_equal(&b).unwrap_or(false) {
                planner.reject([TensorProblem::TiedConflict {
                    name: name.clone(),
                    tied_to: first.clone(),
                }]);
            }
            continue;
        }
        leader_names.insert(leader, name.clone());
        streamed.insert(name.clone(), source.clone());
        planner.accept(i, name, &Tensor::new());
    }

    let mut report = LoadReport::default();
    let not_given: Vec<String> = planner.not_given().map(|t| t.name.clone()).collect();
    if options.allow_missing {
        report.missing = not_given;
    } else {
        planner.reject(
            not_given
                .into_iter()
                .map(|name| TensorProblem::Missing { name }),
        );
    }
    if options.allow_unexpected {
        report.unexpected = unexpected;
    } else {
        planner.reject(
            unexpected
                .into_iter()
                .map(|name| TensorProblem::Unexpected { name }),
        );
    }
    let plan = planner
        .finish()
        .map_err(|problems| LoadError::InvalidTensors {
            path: label.to_owned(),
            problems,
        })?;
    report.loaded = (plan.tensors().iter().enumerate())
        .filter(|&(i, _)| plan.has_value(i))
        .map(|(_, t)| t.name.clone())
        .collect();

    let mapping = match options.mode {
        LoadMode::Map => Some(
            checkpoints
                .iter()
                .map(Checkpoint::map)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let _no_grad = tch::no_grad_guard();
    let mut written = Vec::new();
    let result = plan.write_all(
        |mut target, name, value| {
            let undo = match streamed.get(name) {
                Some(source) => {
                    let checkpoint = &checkpoints[source.checkpoint];
                    let entry = entry(source);
                    match (options.mode, &mapping) {
                        (LoadMode::Copy, _) => {
                            checkpoint.read_into(&source.key, entry, &mut target)?;
                            None
                        }
                        (mode, mapping) => {
                            let mapped = mapping.as_ref().and_then(|whole| {
                                let view =
                                    Checkpoint::mapped_view(&whole[source.checkpoint], entry);
                                view.filter(|_| {
                                    kept_kind(entry.kind, &target, options) == entry.kind
                                })
                            });
                            let value = match mapped {
                                Some(view) => {
                                    report.mapped.push(name.to_owned());
                                    view
                                }
                                None => {
                                    let read = checkpoint.read(&source.key, entry)?;
                                    let kind = kept_kind(entry.kind, &target, options);
                                    read.f_to_device(target.device())
                                        .and_then(|t| t.f_to_kind(kind))
                                        .map_err(LoadError::torch(format!("converting `{name}`")))?
                                }
                            };
                            debug_assert!(mode != LoadMode::Copy);
                            Some(assign(target, &value, name)?)
                        }
                    }
                }
                None if options.mode == LoadMode::Copy => {
                    target.f_copy_(value).map_err(LoadError::torch(format!(
                        "copying `{name}` into the module"
                    )))?;
                    None
                }
                None => Some(assign(target, value, name)?),
            };
            written.push(name.to_owned());
            Ok(undo)
        },
        |undo: Option<(Tensor, Tensor)>| {
            if let Some((mut target, old)) = undo {
                let _ = target.f_set_data(&old);
            }
        },
    );
    match result {
        Ok(()) => Ok(report),
        Err(LoadError::Interrupted {
            path, key, source, ..
        }) => Err(LoadError::Interrupted {
            path,
            key,
            written: if options.mode == LoadMode::Copy {
                written
            } else {
                Vec::new()
            },
            source,
        }),
        Err(error) => Err(error),
    }
}

/// `target` given `value`'s data (its shape and dtype too), the same tensor object.
fn assign(target: Tensor, value: &Tensor, name: &str) -> Result<(Tensor, Tensor), LoadError> {
    set_data_keeping_grad(target, value).map_err(LoadError::torch(format!(
        "assigning `{name}` to the module"
    )))
}

/// The kind a file tensor of `kind` has in the module: its own, or with
/// [`LoadOptions::convert_dtype`] the module tensor's when both are floating kinds.
fn kept_kind(kind: Kind, target: &Tensor, options: &LoadOptions) -> Kind {
    match target.f_kind() {
        Ok(wanted) if options.convert_dtype && is_float(kind) && is_float(wanted) => wanted,
        _ => kind,
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// What is wrong with writing the file tensor `key` into the module's `target` (`name`),
/// from the header alone (and the values, for [`LoadOptions::reject_non_finite`]).
fn entry_problems(
    name: &str,
    checkpoint: &Checkpoint,
    key: &str,
    target: &Tensor,
    options: &LoadOptions,
) -> Result<Vec<TensorProblem>, LoadError> {
    let entry: &Entry = &checkpoint.entries()[key];
    let mut problems = Vec::new();
    let kind = kept_kind(entry.kind, target, options);
    if options.mode == LoadMode::Copy {
        if target.defined() && target.size() != entry.shape {
            problems.push(TensorProblem::Shape {
                name: name.to_owned(),
                actual: entry.shape.clone(),
                expected: target.size(),
            });
        }
        match target.f_kind() {
            Ok(wanted) if target.defined() && wanted != kind => {
                problems.push(TensorProblem::Kind {
                    name: name.to_owned(),
                    actual: entry.kind,
                    expected: wanted,
                })
            }
            _ => {}
        }
        if has_internal_overlap(target) {
            problems.push(TensorProblem::NotWritable {
                name: name.to_owned(),
            });
        }
    } else {
        problems.extend(assign_problems(name, kind, target, options));
    }
    if problems.is_empty() && options.reject_non_finite {
        let value = checkpoint.read(key, entry)?;
        problems.extend(non_finite(name, &value)?);
    }
    Ok(problems)
}

/// What is wrong with a hook's `value` for the module's `target` (`name`).
fn value_problems(
    name: &str,
    value: &Tensor,
    target: &Tensor,
    options: &LoadOptions,
) -> Result<Vec<TensorProblem>, LoadError> {
    let mut problems = if options.mode == LoadMode::Copy {
        let strict = Fit {
            kind: true,
            device: false,
        };
        let mut problems = fit_problems(name, value, target, strict);
        if has_internal_overlap(target) {
            problems.push(TensorProblem::NotWritable {
                name: name.to_owned(),
            });
        }
        problems
    } else if !value.defined() {
        vec![TensorProblem::Undefined {
            name: name.to_owned(),
        }]
    } else {
        let kind = value
            .f_kind()
            .map_err(LoadError::torch(format!("reading the dtype of `{name}`")))?;
        assign_problems(name, kind, target, options)
    };
    if problems.is_empty() && options.reject_non_finite {
        problems.extend(non_finite(name, value)?);
    }
    Ok(problems)
}

/// What keeps a value of `kind` from becoming the module's `target` (`name`) in an assign
/// or mapped load: a kind that cannot require grad for a tensor that does, a module tensor
/// off the CPU for a mapped load.
fn assign_problems(
    name: &str,
    kind: Kind,
    target: &Tensor,
    options: &LoadOptions,
) -> Vec<TensorProblem> {
    let mut problems = Vec::new();
    let differentiable = is_float(kind) || matches!(kind, Kind::ComplexFloat | Kind::ComplexDouble);
    if target.defined() && target.requires_grad() && !differentiable {
        problems.push(TensorProblem::NotDifferentiable {
            name: name.to_owned(),
            kind,
        });
    }
    if options.mode == LoadMode::Map && target.defined() && target.device() != Device::Cpu {
        problems.push(TensorProblem::Device {
            name: name.to_owned(),
            actual: Device::Cpu,
            expected: target.device(),
        });
    }
    problems
}

/// A [`TensorProblem::NonFinite`] if `value` holds NaN or an infinity.
fn non_finite(name: &str, value: &Tensor) -> Result<Option<TensorProblem>, LoadError> {
    let count =
        non_finite_count(value).map_err(LoadError::torch(format!("checking `{name}` for NaN")))?;
    Ok((count > 0).then(|| TensorProblem::NonFinite {
        name: name.to_owned(),
        count,
    }))
}

/// How many entries of `value` are NaN or infinite (0 for integer and bool tensors).
fn non_finite_count(value: &Tensor) -> std::result::Result<i64, tch::TchError> {
    if !(value.f_is_floating_point()? || value.f_is_complex()?) {
        return Ok(0);
    }
    let finite = value
        .f_isfinite()?
        .f_sum(tch::Kind::Int64)?
        .f_int64_value(&[])?;
    Ok(value.numel() as i64 - finite)
}
