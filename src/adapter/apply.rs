//! Re-creating LoRA patches from adapter entries onto linear modules given by path.
use super::entry::{path_problem, AdapterEntry};
use super::problem::AdapterProblem;
use super::AdapterDtype;
use super::AdapterError;
use crate::error::{PatchError, Result};
use crate::names::kind_name;
use crate::patch_trait::Patch;
use crate::patches::{BuildPatch, LinearLike, Lora, LoraConfig};
use crate::registry::PatchArgs;
use std::collections::BTreeMap;
use tch::{nn, Tensor};

/// The VarStore path of dotted module path `path` under `root` (`blocks.0.q` is
/// `root / "blocks" / "0" / "q"`). `path` must be valid (no empty segment).
pub(crate) fn var_path<'a>(root: &nn::Path<'a>, path: &str) -> nn::Path<'a> {
    path.split('.')
        .fold(root.clone(), |p, segment| &p / segment)
}

/// Re-creates the LoRA patch of every entry (of [`read_adapter`](super::read_adapter) or
/// [`read_peft_lora`](crate::peft::read_peft_lora)) on the module at its path, taken out of
/// `modules`, and loads the entry's `lora_a` and `lora_b` into it: the patched modules,
/// by path. `root` is the VarStore path the module paths are under (each patch
/// registers `<path>.lora_a` and `<path>.lora_b` there, as when it was trained).
///
/// Everything is checked before anything changes; any problem is
/// [`AdapterError`](crate::adapter::AdapterError) listing them all, with `modules` and the VarStore as they
/// were: an entry that is not `lora` or whose arguments are not a valid [`LoraConfig`], a
/// path with no module in `modules`, tensors other than exactly `lora_a` `[rank, in]` and
/// `lora_b` `[out, rank]` (floating point), names already taken in the VarStore.
///
/// The patch's `A` and `B` are made in the dtype of the module's weight; values saved in
/// another floating-point dtype are converted, as PEFT does
/// ([`AdapterDtype::ConvertToModel`]; [`apply_lora_adapter_with`] takes the rule).
///
/// ```
/// use std::collections::BTreeMap;
/// use tch::{nn, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::adapter::{apply_lora_adapter, AdapterEntry};
/// use tch_patch::patches::{Lora, LoraConfig};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "fc";
/// let trained = Lora::new(nn::linear(&path, 4, 4, Default::default()), &path, &LoraConfig { rank: 2, ..Default::default() })?;
/// let _ = tch::no_grad(|| trained.lora_b().shallow_clone().fill_(0.5));
/// let entry = AdapterEntry::from_lora("fc", &trained)?;
///
/// // The same base weights in a fresh VarStore, then the adapter onto it.
/// let fresh = nn::VarStore::new(Device::Cpu);
/// let mut base = nn::linear(fresh.root() / "fc", 4, 4, Default::default());
/// tch::no_grad(|| { base.ws.copy_(&trained.ws); base.bs.as_mut().unwrap().copy_(trained.bs.as_ref().unwrap()) });
/// let mut modules = BTreeMap::from([("fc".to_owned(), base)]);
/// let patched = apply_lora_adapter(&[entry], &fresh.root(), &mut modules)?;
/// let xs = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
/// assert!(patched["fc"].forward_t(&xs, false).equal(&trained.forward_t(&xs, false)));
/// assert!(modules.is_empty()); // taken out, now inside the patches
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn apply_lora_adapter<L: LinearLike>(
    entries: &[AdapterEntry],
    root: &nn::Path,
    modules: &mut BTreeMap<String, L>,
) -> Result<BTreeMap<String, Lora<L>>> {
    apply_lora_adapter_with(entries, root, modules, AdapterDtype::default())
}

/// [`apply_lora_adapter`] with the rule for saved values of another dtype than the module
/// weight's: [`AdapterDtype::Exact`] refuses them (nothing changed).
pub fn apply_lora_adapter_with<L: LinearLike>(
    entries: &[AdapterEntry],
    root: &nn::Path,
    modules: &mut BTreeMap<String, L>,
    dtype: AdapterDtype,
) -> Result<BTreeMap<String, Lora<L>>> {
    let mut problems = Vec::new();
    let mut configs = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(config) = check_entry(entry, root, modules, dtype, &mut problems) {
            configs.push(config);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        if !seen.insert(entry.path.as_str()) {
            problems.push(AdapterProblem::DuplicatePath {
                path: entry.path.clone(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(AdapterError {
            operation: "apply LoRA adapter".into(),
            problems,
        }
        .into());
    }
    let mut patched = BTreeMap::new();
    for (entry, config) in entries.iter().zip(configs) {
        let Some(base) = modules.remove(&entry.path) else {
            continue; // checked above
        };
        match build(entry, base, root, &config) {
            Ok(lora) => {
                patched.insert(entry.path.clone(), lora);
            }
            Err((error, base)) => {
                // Not reachable after the checks but for libtorch failing: give every
                // module back unpatched (tensors already registered stay in the VarStore).
                modules.insert(entry.path.clone(), base);
                for (path, lora) in std::mem::take(&mut patched) {
                    modules.insert(path, lora.into_base());
                }
                return Err(error);
            }
        }
    }
    Ok(patched)
}

/// The entry's config if the entry can be applied; its problems otherwise.
fn check_entry<L: LinearLike>(
    entry: &AdapterEntry,
    root: &nn::Path,
    modules: &BTreeMap<String, L>,
    dtype: AdapterDtype,
    problems: &mut Vec<AdapterProblem>,
) -> Option<LoraConfig> {
    let before = problems.len();
    if entry.spec.name != LoraConfig::NAME {
        problems.push(AdapterProblem::NotLora {
            path: entry.path.clone(),
            patch: entry.spec.name.clone(),
            operation: "applied by apply_lora_adapter",
        });
        return None;
    }
    let config = entry
        .spec
        .config::<LoraConfig>()
        .and_then(|config| config.validate().map(|()| config))
        .map_err(|error| {
            problems.push(AdapterProblem::InvalidPatch {
                path: entry.path.clone(),
                error: Box::new(error),
            })
        })
        .ok();
    if let Some(problem) = path_problem(&entry.path) {
        problems.push(problem);
        return None;
    }
    let Some(module) = modules.get(&entry.path) else {
        problems.push(AdapterProblem::MissingModule {
            path: entry.path.clone(),
        });
        return None;
    };
    let path = var_path(root, &entry.path);
    for name in ["lora_a", "lora_b"] {
        if path.get(name).is_some() {
            problems.push(AdapterProblem::Tensor {
                name: entry.full_name(name),
                message: "is already a variable of the VarStore".into(),
            });
        }
    }
    let (out, inp) = (module.out_features(), module.in_features());
    let rank = config.as_ref().map(|c| c.rank);
    let rank_text = rank.map_or("rank".to_owned(), |r| r.to_string());
    let expected = [
        ("lora_a", format!("[{rank_text}, {inp}]"), [rank, Some(inp)]),
        ("lora_b", format!("[{out}, {rank_text}]"), [Some(out), rank]),
    ];
    for (name, text, dims) in &expected {
        let full = entry.full_name(name);
        let Some(tensor) = entry.required_tensor(name, problems) else {
            continue;
        };
        problems.extend(tensor_problem(&full, tensor, text, dims));
        let weight = module.weight();
        if tensor.defined() && tensor.is_floating_point() && !dtype.allows(tensor, weight) {
            problems.push(AdapterProblem::Dtype {
                name: full,
                found: kind_name(tensor.kind()).to_owned(),
                expected: format!(
                    "{}, the dtype of the module's weight",
                    kind_name(weight.kind())
                ),
            });
        }
    }
    for (local, _) in &entry.tensors {
        if local != "lora_a" && local != "lora_b" {
            problems.push(AdapterProblem::UnexpectedTensor {
                name: entry.full_name(local),
                file: format!("the entry of `{}`", entry.path),
                reason: if local.starts_with("lora_embedding_") {
                    "it belongs to a LoRA of an embedding, and apply_lora_adapter patches linear layers: load it onto an `nn::Embedding` slot with load_model_lora or load_model_adapter".into()
                } else {
                    "a LoRA patch has only `lora_a` and `lora_b`".into()
                },
            });
        }
    }
    if problems.len() > before {
        return None;
    }
    config
}

fn tensor_problem(
    name: &str,
    tensor: &Tensor,
    expected: &str,
    dims: &[Option<i64>; 2],
) -> Option<AdapterProblem> {
    if !tensor.defined() {
        return Some(AdapterProblem::Tensor {
            name: name.to_owned(),
            message: "is an undefined tensor".into(),
        });
    }
    let size = tensor.size();
    let fits = size.len() == 2
        && dims
            .iter()
            .zip(&size)
            .all(|(want, got)| want.is_none_or(|w| w == *got));
    if !fits {
        return Some(AdapterProblem::Shape {
            name: name.to_owned(),
            found: size,
            expected: expected.to_owned(),
        });
    }
    if !tensor.is_floating_point() {
        return Some(AdapterProblem::Dtype {
            name: name.to_owned(),
            found: kind_name(tensor.kind()).into(),
            expected: "a floating-point dtype".into(),
        });
    }
    None
}

/// Builds the patch over `base` and copies the entry's values into `A` and `B`.
fn build<L: LinearLike>(
    entry: &AdapterEntry,
    base: L,
    root: &nn::Path,
    config: &LoraConfig,
) -> std::result::Result<Lora<L>, (PatchError, L)> {
    let lora = Lora::build(base, &var_path(root, &entry.path), config)
        .map_err(|failed| (failed.error, failed.base))?;
    let copied = tch::no_grad(|| -> Result<()> {
        for (name, target) in [("lora_a", lora.lora_a()), ("lora_b", lora.lora_b())] {
            if let Some(value) = entry.tensor(name) {
                let value = value
                    .f_to_device(target.device())
                    .map_err(PatchError::torch(format!(
                        "moving `{}`",
                        entry.full_name(name)
                    )))?;
                target
                    .shallow_clone()
                    .f_copy_(&value)
                    .map_err(PatchError::torch(format!(
                        "loading `{}`",
                        entry.full_name(name)
                    )))?;
            }
        }
        Ok(())
    });
    match copied {
        Ok(()) => Ok(lora),
        Err(error) => Err((error, lora.into_base())),
    }
}
