//! Reading a PEFT LoRA adapter folder into adapter entries, checking it all first.
use super::config::{read_config, PeftLoraConfig, PeftTargetModules};
use super::{peft_key, PEFT_CONFIG_FILE, PEFT_KEY_PREFIX, PEFT_TENSORS_FILE};
use crate::adapter::entry::{path_problem, AdapterEntry};
use crate::adapter::io;
use crate::adapter::problem::AdapterProblem;
use crate::adapter::tensors::{self, kind_of_name, FileTensor};
use crate::adapter::AdapterError;
use crate::error::Result;
use crate::patches::LoraConfig;
use crate::registry::PatchArgs;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Kind;

/// A PEFT LoRA adapter read from its folder: the config and one `lora` entry per module,
/// ready for [`apply_lora_adapter`](crate::adapter::apply_lora_adapter).
#[derive(Debug)]
pub struct PeftAdapter {
    /// `adapter_config.json`, as read.
    pub config: PeftLoraConfig,
    /// One entry per module, sorted by path: spec `lora(rank, alpha, dropout,
    /// use_rslora)` (rank and alpha per module, from the patterns), tensors `lora_a` and
    /// `lora_b` with the file's values bit for bit.
    pub entries: Vec<AdapterEntry>,
}

/// Reads a PEFT LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`)
/// as PEFT's `save_pretrained` writes it, and checks it all before returning:
///
/// * the config: every field of PEFT 0.21's `LoraConfig`, each implemented or refused by
///   name when set (the table in [the module's docs](super)); an unknown field is a
///   problem listing the known ones. `rank_pattern` and `alpha_pattern` keep the file's
///   key order, as PEFT's first-matching-key rule needs.
/// * the tensors: every key `base_model.model.<path>.lora_A.weight` or `...lora_B.weight`
///   (anything else is a problem that says what it looks like: an adapter name left in,
///   an embedding LoRA...), both present for each path, `A` `[rank, in]`, `B`
///   `[out, rank]` with the rank of the config for that path, floating point; each module's config valid for
///   [`LoraConfig`]; each path one that PEFT adapts with this config
///   ([`PeftLoraConfig::targets`]).
///
/// Any problem is [`AdapterError`](crate::adapter::AdapterError) listing them all.
pub fn read_peft_lora(dir: impl AsRef<Path>) -> Result<PeftAdapter, AdapterError> {
    let dir = dir.as_ref();
    let mut problems = Vec::new();
    let read = |name: &str| {
        io::read_file(&dir.join(name), io::kind_of(name)).map_err(|message| AdapterProblem::Read {
            file: name.into(),
            message,
        })
    };
    let (config_bytes, tensor_bytes) = (read(PEFT_CONFIG_FILE), read(PEFT_TENSORS_FILE));
    let config_bytes = config_bytes.map_err(|p| problems.push(p)).ok();
    let tensor_bytes = tensor_bytes.map_err(|p| problems.push(p)).ok();
    let config = config_bytes.and_then(|bytes| read_config(&bytes, &mut problems));
    let file = tensor_bytes.as_deref().and_then(|bytes| {
        tensors::parse(bytes)
            .map_err(|message| {
                problems.push(AdapterProblem::Read {
                    file: PEFT_TENSORS_FILE.into(),
                    message,
                })
            })
            .ok()
    });
    let described = file.as_ref().map(tensors::describe);
    let modules = described
        .as_ref()
        .map(|described| modules_of(described, &mut problems));
    let mut specs = Vec::new();
    if let (Some(config), Some(modules)) = (&config, &modules) {
        specs = check_modules(config, modules, &mut problems);
    }
    let (Some(config), Some(file), true) = (config, file, problems.is_empty()) else {
        return Err(AdapterError {
            operation: format!("read PEFT adapter `{}`", dir.display()),
            problems,
        });
    };
    let mut entries = Vec::with_capacity(specs.len());
    for (path, spec) in specs {
        let tensors = vec![
            (
                "lora_a".to_owned(),
                tensors::load(&file, &peft_key(&path, "lora_A"))?,
            ),
            (
                "lora_b".to_owned(),
                tensors::load(&file, &peft_key(&path, "lora_B"))?,
            ),
        ];
        entries.push(AdapterEntry::new(path, spec, tensors));
    }
    Ok(PeftAdapter { config, entries })
}

/// The A and B matrices of one module, as the file describes them.
#[derive(Default)]
struct Module<'f> {
    a: Option<&'f FileTensor>,
    b: Option<&'f FileTensor>,
}

/// The file's keys grouped by module path; a problem for every key that is not a LoRA
/// A or B weight in PEFT's layout.
fn modules_of<'f>(
    described: &'f HashMap<String, FileTensor>,
    problems: &mut Vec<AdapterProblem>,
) -> BTreeMap<String, Module<'f>> {
    let mut modules: BTreeMap<String, Module<'f>> = BTreeMap::new();
    let mut keys: Vec<&String> = described.keys().collect();
    keys.sort();
    for key in keys {
        let parsed = key.strip_prefix(PEFT_KEY_PREFIX).and_then(|rest| {
            let (path, which) = rest
                .strip_suffix(".lora_A.weight")
                .map(|path| (path, 'A'))
                .or_else(|| rest.strip_suffix(".lora_B.weight").map(|path| (path, 'B')))?;
            Some((path, which))
        });
        match parsed {
            Some((path, which)) => {
                let module = modules.entry(path.to_owned()).or_default();
                let slot = if which == 'A' {
                    &mut module.a
                } else {
                    &mut module.b
                };
                *slot = Some(&described[key]);
            }
            None => problems.push(AdapterProblem::UnexpectedTensor {
                name: key.clone(),
                file: PEFT_TENSORS_FILE.into(),
                reason: unexpected_reason(key),
            }),
        }
    }
    modules
}

/// Why a key is not one of PEFT's LoRA weights, as precisely as can be told.
fn unexpected_reason(key: &str) -> String {
    let layout = "keys are `base_model.model.<path>.lora_A.weight` and `...lora_B.weight`";
    if !key.starts_with(PEFT_KEY_PREFIX) {
        format!("it does not start with `{PEFT_KEY_PREFIX}`; {layout}")
    } else if key.ends_with(".lora_B.bias") {
        "a bias on LoRA's B (`lora_bias`) is not supported".into()
    } else if key.contains("lora_embedding_") {
        "LoRA on embeddings (lora_embedding_A/B) is not supported".into()
    } else if key.contains("lora_magnitude_vector") {
        "DoRA (lora_magnitude_vector) is not supported".into()
    } else if key.contains(".lora_A.") || key.contains(".lora_B.") {
        format!("it holds an adapter name (PEFT's saved files do not); {layout}")
    } else {
        format!("it is not a LoRA weight; {layout}")
    }
}

/// `target_modules` as the config writes it.
fn describe_targets(targets: &PeftTargetModules) -> String {
    match targets {
        PeftTargetModules::List(names) => format!("[{}]", names.join(", ")),
        PeftTargetModules::Regex(regex) => format!("the regular expression {regex:?}"),
        PeftTargetModules::AllLinear => "\"all-linear\" (every linear layer but `lm_head`)".into(),
        PeftTargetModules::Unset => "null".into(),
    }
}

/// Checks each module against the config; the spec of each if all are valid.
fn check_modules(
    config: &PeftLoraConfig,
    modules: &BTreeMap<String, Module<'_>>,
    problems: &mut Vec<AdapterProblem>,
) -> Vec<(String, crate::registry::PatchSpec)> {
    let mut specs = Vec::new();
    for (path, module) in modules {
        let before = problems.len();
        if let Some(problem) = path_problem(path) {
            problems.push(problem);
        }
        if !config.targets(path) {
            problems.push(AdapterProblem::Field {
                file: PEFT_CONFIG_FILE.into(),
                field: "target_modules".into(),
                message: format!(
                    "does not select module `{path}` (with exclude_modules and layers_to_transform as set), which has LoRA weights: PEFT would not load them (target_modules: {})",
                    describe_targets(&config.target_modules)
                ),
            });
        }
        let rank = config.rank_of(path);
        let a = matrix(path, "lora_A", module.a, problems);
        let b = matrix(path, "lora_B", module.b, problems);
        if let Some(a) = a {
            if a.shape.len() != 2 || a.shape[0] != rank {
                problems.push(AdapterProblem::Shape {
                    name: peft_key(path, "lora_A"),
                    found: a.shape.clone(),
                    expected: format!(
                        "[{rank}, in_features] (r of `{path}` in the config is {rank})"
                    ),
                });
            }
        }
        if let Some(b) = b {
            if b.shape.len() != 2 || b.shape[1] != rank {
                problems.push(AdapterProblem::Shape {
                    name: peft_key(path, "lora_B"),
                    found: b.shape.clone(),
                    expected: format!(
                        "[out_features, {rank}] (r of `{path}` in the config is {rank})"
                    ),
                });
            }
        }
        let lora = LoraConfig {
            rank,
            alpha: config.alpha_of(path),
            dropout: config.lora_dropout,
            use_rslora: config.use_rslora,
        };
        match lora.to_spec(path.clone()) {
            Ok(spec) if problems.len() == before => specs.push((path.clone(), spec)),
            Ok(_) => {}
            Err(error) => problems.push(AdapterProblem::InvalidPatch {
                path: path.clone(),
                error: Box::new(error),
            }),
        }
    }
    specs
}

/// The described matrix if present and floating point; a problem otherwise.
fn matrix<'f>(
    path: &str,
    which: &str,
    tensor: Option<&'f FileTensor>,
    problems: &mut Vec<AdapterProblem>,
) -> Option<&'f FileTensor> {
    let name = peft_key(path, which);
    let Some(tensor) = tensor else {
        let other = if which == "lora_A" {
            "lora_B"
        } else {
            "lora_A"
        };
        problems.push(AdapterProblem::MissingTensor {
            name,
            file: PEFT_TENSORS_FILE.into(),
            reason: format!("module `{path}` has a {other} weight, and a LoRA needs both"),
        });
        return None;
    };
    if !matches!(
        kind_of_name(&tensor.dtype),
        Some(Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)
    ) {
        problems.push(AdapterProblem::Dtype {
            name,
            found: tensor.dtype.clone(),
            expected: "a floating-point dtype (F16, BF16, F32, F64)".into(),
        });
    }
    Some(tensor)
}
