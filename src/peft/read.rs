//! Reading a PEFT LoRA adapter folder into adapter entries, checking it all first.
use super::config::{read_config, PeftLoraConfig, PeftTargetModules};
use super::kind::{magnitude_key, LoraKind, MAGNITUDE_LOCAL, MAGNITUDE_SUFFIX};
use super::tokens::{check_tokens, missing_tokens, tokens_key, TOKENS_SUFFIX};
use super::{PEFT_CONFIG_FILE, PEFT_KEY_PREFIX, PEFT_TENSORS_FILE};
use crate::adapter::entry::{path_problem, AdapterEntry};
use crate::adapter::io;
use crate::adapter::problem::AdapterProblem;
use crate::adapter::tensors::{self, kind_of_name, FileTensor};
use crate::adapter::AdapterError;
use crate::error::Result;
use crate::patches::{DoraConfig, LoraConfig};
use crate::registry::PatchArgs;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

/// A PEFT LoRA adapter read from its folder: the config and one `lora` entry per module,
/// ready for [`apply_lora_adapter`](crate::adapter::apply_lora_adapter).
#[derive(Debug)]
pub struct PeftAdapter {
    /// `adapter_config.json`, as read.
    pub config: PeftLoraConfig,
    /// One entry per module, sorted by path: spec `lora(rank, alpha, dropout,
    /// use_rslora)` (rank and alpha per module, from the patterns), tensors `lora_a` and
    /// `lora_b` (an embedding's: `lora_embedding_a` and `lora_embedding_b`) with the
    /// file's values bit for bit; with `use_dora`, spec `dora(...)` and `lora_magnitude`
    /// too.
    pub entries: Vec<AdapterEntry>,
    /// The base weights PEFT saved beside some modules' LoRA, by module path
    /// (`<path>.base_layer.weight`: `save_pretrained` writes the table of a targeted
    /// `embed_tokens` or `lm_head`, its `save_embedding_layers`). PEFT loads them into the
    /// model; [`load_model_lora`](super::load_model_lora) requires them to equal the
    /// model's, as this library does not change base weights.
    /// [`apply_lora_adapter`](crate::adapter::apply_lora_adapter) takes only the entries:
    /// compare these with your modules' weights before applying it.
    pub base_weights: Vec<(String, Tensor)>,
    /// PEFT's trainable tokens (`trainable_token_indices`), sorted by path.
    /// [`load_model_lora`](super::load_model_lora) makes each a
    /// [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) (whose `delta` is
    /// these rows minus the model's);
    /// [`apply_lora_adapter`](crate::adapter::apply_lora_adapter) takes only the entries.
    pub trainable_tokens: Vec<PeftTrainableTokens>,
}

/// The trainable tokens of one embedding in a PEFT folder (PEFT's `TrainableTokensLayer`):
/// key `base_model.model.<path>.token_adapter.trainable_tokens_delta`.
#[derive(Debug)]
pub struct PeftTrainableTokens {
    /// The embedding's module path.
    pub path: String,
    /// Its trainable token ids, from `trainable_token_indices`.
    pub token_ids: Vec<i64>,
    /// The rows of those ids, `[k, dim]`, bit for bit as saved: PEFT saves the *new
    /// values* of the rows (they replace the table's, with `index_copy`), not an offset.
    pub values: Tensor,
}

/// Reads a PEFT LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`)
/// as PEFT's `save_pretrained` writes it, and checks it all before returning:
///
/// * the config: every field of PEFT 0.21's `LoraConfig`, each implemented or refused by
///   name when set (the table in [the module's docs](super)); an unknown field is a
///   problem listing the known ones. `rank_pattern` and `alpha_pattern` keep the file's
///   key order, as PEFT's first-matching-key rule needs.
/// * the tensors: every key `base_model.model.<path>.lora_A.weight` or `...lora_B.weight`,
///   for an embedding `...lora_embedding_A` or `...lora_embedding_B`, and
///   `...base_layer.weight` beside one of them (anything else is a problem that says what
///   it looks like: an adapter name left in, DoRA...), one kind of LoRA per path with both
///   matrices, `A` `[rank, in]` (`[rank, num_embeddings]`), `B` `[out, rank]`
///   (`[embedding_dim, rank]`) with the rank of the config for that path, floating point;
///   each module's config valid for [`LoraConfig`]; each path one that PEFT adapts with
///   this config ([`PeftLoraConfig::targets`]; `"all-linear"` adapts no embedding).
/// * with `use_dora: true`, every linear module's `...lora_magnitude_vector` `[out]`,
///   floating point (its entry is then a `dora` spec with `lora_magnitude` too); a
///   magnitude without `use_dora`, or `use_dora` on an embedding, is a problem.
///
/// * with `trainable_token_indices` (its dict form `{name: [ids]}`), each
///   `...token_adapter.trainable_tokens_delta` `[k, dim]` (PEFT's new values of the `k`
///   rows, floating point) of a module whose path ends with exactly one name, and one for
///   every name; a module with those and LoRA weights too is a problem. They go to
///   [`PeftAdapter::trainable_tokens`], bit for bit.
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
    let mut token_ids = Vec::new();
    if let (Some(config), Some(modules)) = (&config, &modules) {
        specs = check_modules(config, modules, &mut token_ids, &mut problems);
        let with_tokens = modules.iter().filter(|(_, m)| m.tokens.is_some());
        missing_tokens(
            config,
            with_tokens.map(|(path, _)| path.as_str()),
            &mut problems,
        );
    }
    let (Some(config), Some(file), true) = (config, file, problems.is_empty()) else {
        return Err(AdapterError {
            operation: format!("read PEFT adapter `{}`", dir.display()),
            problems,
        });
    };
    let mut entries = Vec::with_capacity(specs.len());
    for (path, kind, spec) in specs {
        let mut tensors = Vec::with_capacity(3);
        for (which, local) in kind.locals().into_iter().enumerate() {
            tensors.push((
                local.to_owned(),
                tensors::load(&file, &kind.key(&path, which))?,
            ));
        }
        if spec.name == DoraConfig::NAME {
            let magnitude = tensors::load(&file, &magnitude_key(&path))?;
            tensors.push((MAGNITUDE_LOCAL.to_owned(), magnitude));
        }
        entries.push(AdapterEntry::new(path, spec, tensors));
    }
    let mut base_weights = Vec::new();
    for (path, module) in modules.iter().flatten() {
        if module.base.is_some() {
            let key = format!("{PEFT_KEY_PREFIX}{path}.{BASE_WEIGHT}");
            base_weights.push((path.clone(), tensors::load(&file, &key)?));
        }
    }
    let mut trainable_tokens = Vec::with_capacity(token_ids.len());
    for (path, ids) in token_ids {
        let values = tensors::load(&file, &tokens_key(&path))?;
        trainable_tokens.push(PeftTrainableTokens {
            path,
            token_ids: ids,
            values,
        });
    }
    Ok(PeftAdapter {
        config,
        entries,
        base_weights,
        trainable_tokens,
    })
}

/// The suffix of a base weight PEFT saves beside a module's LoRA.
const BASE_WEIGHT: &str = "base_layer.weight";

/// The A and B matrices of one module, as the file describes them, their kind (of the
/// first key read), its DoRA magnitude and its base weight if saved.
#[derive(Default)]
struct Module<'f> {
    kind: Option<LoraKind>,
    matrices: [Option<&'f FileTensor>; 2],
    magnitude: Option<&'f FileTensor>,
    base: Option<&'f FileTensor>,
    tokens: Option<&'f FileTensor>,
}

/// The file's keys grouped by module path; a problem for every key that is not a LoRA
/// A or B weight in PEFT's layout, or of another kind than the module's other keys.
fn modules_of<'f>(
    described: &'f HashMap<String, FileTensor>,
    problems: &mut Vec<AdapterProblem>,
) -> BTreeMap<String, Module<'f>> {
    let mut modules: BTreeMap<String, Module<'f>> = BTreeMap::new();
    let mut keys: Vec<&String> = described.keys().collect();
    keys.sort();
    for key in keys {
        let rest = key.strip_prefix(PEFT_KEY_PREFIX);
        let base = rest.and_then(|rest| rest.strip_suffix(BASE_WEIGHT)?.strip_suffix('.'));
        if let Some(path) = base {
            modules.entry(path.to_owned()).or_default().base = Some(&described[key]);
            continue;
        }
        let tokens = rest.and_then(|rest| rest.strip_suffix(TOKENS_SUFFIX)?.strip_suffix('.'));
        if let Some(path) = tokens {
            modules.entry(path.to_owned()).or_default().tokens = Some(&described[key]);
            continue;
        }
        let magnitude =
            rest.and_then(|rest| rest.strip_suffix(MAGNITUDE_SUFFIX)?.strip_suffix('.'));
        if let Some(path) = magnitude {
            modules.entry(path.to_owned()).or_default().magnitude = Some(&described[key]);
            continue;
        }
        let parsed = rest.and_then(LoraKind::parse);
        let Some((path, kind, which)) = parsed else {
            problems.push(AdapterProblem::UnexpectedTensor {
                name: key.clone(),
                file: PEFT_TENSORS_FILE.into(),
                reason: unexpected_reason(key),
            });
            continue;
        };
        let module = modules.entry(path.to_owned()).or_default();
        match module.kind {
            Some(other) if other != kind => problems.push(AdapterProblem::UnexpectedTensor {
                name: key.clone(),
                file: PEFT_TENSORS_FILE.into(),
                reason: format!(
                    "module `{path}` also has {}, and a module holds one kind of LoRA",
                    other.describe()
                ),
            }),
            _ => {
                module.kind = Some(kind);
                module.matrices[which] = Some(&described[key]);
            }
        }
    }
    modules
}

/// Why a key is not one of PEFT's LoRA weights, as precisely as can be told.
fn unexpected_reason(key: &str) -> String {
    let layout = "keys are `base_model.model.<path>.lora_A.weight` and `...lora_B.weight` \
        (`...lora_embedding_A` and `...lora_embedding_B` for an embedding)";
    if !key.starts_with(PEFT_KEY_PREFIX) {
        format!("it does not start with `{PEFT_KEY_PREFIX}`; {layout}")
    } else if key.ends_with(".trainable_tokens_delta") {
        "it is a key of PEFT's TrainableTokensConfig (`TRAINABLE_TOKENS` adapters are not read); a LoRA's trainable tokens are `<path>.token_adapter.trainable_tokens_delta`".into()
    } else if key.ends_with(".lora_B.bias") {
        "a bias on LoRA's B (`lora_bias`) is not supported".into()
    } else if [
        ".lora_A.",
        ".lora_B.",
        ".lora_embedding_A.",
        ".lora_embedding_B.",
        ".lora_magnitude_vector.",
    ]
    .iter()
    .any(|part| key.contains(part))
    {
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

/// Checks each module against the config; the kind and spec of each if all are valid.
fn check_modules(
    config: &PeftLoraConfig,
    modules: &BTreeMap<String, Module<'_>>,
    token_ids: &mut Vec<(String, Vec<i64>)>,
    problems: &mut Vec<AdapterProblem>,
) -> Vec<(String, LoraKind, crate::registry::PatchSpec)> {
    let mut specs = Vec::new();
    for (path, module) in modules {
        let before = problems.len();
        let base_key = format!("{PEFT_KEY_PREFIX}{path}.{BASE_WEIGHT}");
        if let Some(tokens) = module.tokens {
            if module.kind.is_some() || module.magnitude.is_some() || module.base.is_some() {
                problems.push(AdapterProblem::UnexpectedTensor {
                    name: tokens_key(path),
                    file: PEFT_TENSORS_FILE.into(),
                    reason: format!(
                        "module `{path}` has trainable tokens and LoRA weights (or a saved base weight) too: an embedding both LoRA-targeted and with trainable tokens is not supported"
                    ),
                });
                continue;
            }
            if let Some(problem) = path_problem(path) {
                problems.push(problem);
            }
            if let Some(ids) = check_tokens(config, path, tokens, problems) {
                if problems.len() == before {
                    token_ids.push((path.clone(), ids));
                }
            }
            continue;
        }
        let Some(kind) = module.kind else {
            let (name, reason) = if module.base.is_some() {
                (
                    base_key,
                    "PEFT saves a base weight only beside its LoRA (`save_embedding_layers`)",
                )
            } else {
                (
                    magnitude_key(path),
                    "DoRA's magnitude goes with a LoRA's A and B",
                )
            };
            problems.push(AdapterProblem::UnexpectedTensor {
                name,
                file: PEFT_TENSORS_FILE.into(),
                reason: format!("module `{path}` has no LoRA weights, and {reason}"),
            });
            continue;
        };
        if let Some(base) = module.base {
            float_problem(base_key, base, problems);
        }
        if let Some(problem) = path_problem(path) {
            problems.push(problem);
        }
        if !config.targets(path) {
            problems.push(target_problem(format!(
                    "does not select module `{path}` (with exclude_modules and layers_to_transform as set), which has LoRA weights: PEFT would not load them (target_modules: {})",
                    describe_targets(&config.target_modules)
                ),
            ));
        } else if kind == LoraKind::Embedding
            && config.target_modules == PeftTargetModules::AllLinear
        {
            problems.push(target_problem(format!(
                    "is \"all-linear\", which PEFT does not apply to embeddings, but module `{path}` has {}",
                    kind.describe()
                ),
            ));
        }
        let rank = config.rank_of(path);
        let [in_name, out_name] = kind.dims();
        let expected = [
            (0, format!("[{rank}, {in_name}]")),
            (1, format!("[{out_name}, {rank}]")),
        ];
        for (which, shape) in expected {
            let Some(matrix) = matrix(path, kind, which, module.matrices[which], problems) else {
                continue;
            };
            if matrix.shape.len() != 2 || matrix.shape[which] != rank {
                problems.push(AdapterProblem::Shape {
                    name: kind.key(path, which),
                    found: matrix.shape.clone(),
                    expected: format!("{shape} (r of `{path}` in the config is {rank})"),
                });
            }
        }
        let out = module.matrices[1].and_then(|b| b.shape.first().copied());
        let dora = dora_problems(config, path, kind, module.magnitude, out, problems);
        let lora = LoraConfig {
            rank,
            alpha: config.alpha_of(path),
            dropout: config.lora_dropout,
            use_rslora: config.use_rslora,
        };
        let spec = if dora {
            DoraConfig::from(&lora).to_spec(path.clone())
        } else {
            lora.to_spec(path.clone())
        };
        match spec {
            Ok(spec) if problems.len() == before => specs.push((path.clone(), kind, spec)),
            Ok(_) => {}
            Err(error) => problems.push(AdapterProblem::InvalidPatch {
                path: path.clone(),
                error: Box::new(error),
            }),
        }
    }
    specs
}

/// Whether module `path` is a DoRA (`use_dora` and a linear layer's LoRA), with a problem
/// for a magnitude that is missing, not `[out]` (`out` from `B`, when known) or not
/// floating point, for one without `use_dora`, and for `use_dora` on an embedding.
fn dora_problems(
    config: &PeftLoraConfig,
    path: &str,
    kind: LoraKind,
    magnitude: Option<&FileTensor>,
    out: Option<i64>,
    problems: &mut Vec<AdapterProblem>,
) -> bool {
    let name = magnitude_key(path);
    match (config.use_dora, kind, magnitude) {
        (true, LoraKind::Linear, Some(magnitude)) => {
            if magnitude.shape.len() != 1 || out.is_some_and(|out| magnitude.shape[0] != out) {
                problems.push(AdapterProblem::Shape {
                    name: name.clone(),
                    found: magnitude.shape.clone(),
                    expected: format!(
                        "[{}] (out_features of `{path}`, the rows of its lora_B)",
                        out.map_or("out_features".to_owned(), |out| out.to_string())
                    ),
                });
            }
            float_problem(name, magnitude, problems);
            true
        }
        (true, LoraKind::Linear, None) => {
            problems.push(AdapterProblem::MissingTensor {
                name,
                file: PEFT_TENSORS_FILE.into(),
                reason: format!("`use_dora` is true, and the DoRA of `{path}` needs its magnitude"),
            });
            true
        }
        (true, LoraKind::Embedding, _) => {
            problems.push(AdapterProblem::Field {
                file: PEFT_CONFIG_FILE.into(),
                field: "use_dora".into(),
                message: format!(
                    "is true, and module `{path}` is an embedding: DoRA on an embedding (PEFT's DoraEmbeddingLayer) is not supported"
                ),
            });
            false
        }
        (false, _, Some(_)) => {
            problems.push(AdapterProblem::UnexpectedTensor {
                name,
                file: PEFT_TENSORS_FILE.into(),
                reason: "it is DoRA's magnitude, and `use_dora` is false in the config".into(),
            });
            false
        }
        (false, _, None) => false,
    }
}

/// A problem with `target_modules`.
fn target_problem(message: String) -> AdapterProblem {
    AdapterProblem::Field {
        file: PEFT_CONFIG_FILE.into(),
        field: "target_modules".into(),
        message,
    }
}

/// Matrix `which` (0 for A, 1 for B) of a module if present and floating point; a problem
/// otherwise.
fn matrix<'f>(
    path: &str,
    kind: LoraKind,
    which: usize,
    tensor: Option<&'f FileTensor>,
    problems: &mut Vec<AdapterProblem>,
) -> Option<&'f FileTensor> {
    let name = kind.key(path, which);
    let Some(tensor) = tensor else {
        problems.push(AdapterProblem::MissingTensor {
            name,
            file: PEFT_TENSORS_FILE.into(),
            reason: format!(
                "module `{path}` has a {} weight, and a LoRA needs both",
                kind.suffixes()[1 - which].trim_end_matches(".weight")
            ),
        });
        return None;
    };
    float_problem(name, tensor, problems);
    Some(tensor)
}

/// A problem if the described tensor `name` is not floating point.
pub(crate) fn float_problem(name: String, tensor: &FileTensor, problems: &mut Vec<AdapterProblem>) {
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
}
