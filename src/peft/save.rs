//! Writing LoRA entries in PEFT's layout.
use super::config::{config_bytes, PeftLoraConfig, PeftOptions, PeftTargetModules, PeftTargets};
use super::kind::{magnitude_key, LoraKind, MAGNITUDE_LOCAL};
use super::pattern::{exact_key, PeftPattern};
use super::tokens::tokens_key;
use super::{PEFT_CONFIG_FILE, PEFT_TENSORS_FILE};
use crate::adapter::check_entries::check_entries;
use crate::adapter::entry::{AdapterEntry, AdapterSummary};
use crate::adapter::problem::AdapterProblem;
use crate::adapter::save::write_pair;
use crate::adapter::tensors::to_safetensors_bytes;
use crate::adapter::AdapterError;
use crate::error::Result;
use crate::names::kind_name;
use crate::patches::{DoraConfig, LoraConfig, MostlyFrozenEmbeddingConfig};
use crate::registry::{PatchArgs, Registry};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use tch::Tensor;

/// Saves LoRA entries (see [`AdapterEntry::from_lora`]) in PEFT's layout in folder `dir`
/// (created if missing): `adapter_config.json` and `adapter_model.safetensors` with keys
/// `base_model.model.<path>.lora_A.weight` (`lora_a`, `[r, in]`) and
/// `...lora_B.weight` (`lora_b`, `[out, r]`), values bit for bit. An embedding's entry
/// ([`AdapterEntry::from_lora_embedding`]: `lora_embedding_a` `[r, num_embeddings]`,
/// `lora_embedding_b` `[embedding_dim, r]`) is written as `...lora_embedding_A` and
/// `...lora_embedding_B`, as PEFT writes a `lora.Embedding`. A DoRA's entry
/// ([`AdapterEntry::from_dora`]: `lora_a`, `lora_b`, `lora_magnitude` `[out]`) is written
/// with `...lora_magnitude_vector` and `use_dora: true`; PEFT has one `use_dora` for all,
/// so LoRA and DoRA entries together are refused.
///
/// `r` and `lora_alpha` are the most common rank and alpha (the smallest on a tie);
/// modules with others are listed in `rank_pattern` / `alpha_pattern` by path.
///
/// Everything is checked first (nothing is written on error): each entry as
/// [`save_adapter`](crate::adapter::save_adapter) checks it, a `lora` patch, with exactly
/// `lora_a` `[rank, in]` and `lora_b` `[out, rank]` (or an embedding's two) of one
/// floating-point dtype; one
/// `lora_dropout` and one `use_rslora` for all (PEFT has no per-module value). Any
/// problem is [`AdapterError`](crate::adapter::AdapterError) listing them all.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::adapter::{AdapterEntry};
/// use tch_patch::{peft::read_peft_lora, peft::save_peft_lora, peft::PeftOptions};
/// use tch_patch::patches::{Lora, LoraConfig};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "attn" / "q";
/// let lora = Lora::new(nn::linear(&path, 8, 6, Default::default()), &path, &LoraConfig { rank: 2, ..Default::default() })?;
/// let dir = std::env::temp_dir().join(format!("tch-patch-doc-peft-{}", std::process::id()));
/// save_peft_lora(&dir, &[AdapterEntry::from_lora("attn.q", &lora)?], &PeftOptions::default())?;
/// let read = read_peft_lora(&dir)?;
/// assert_eq!((read.config.r, read.config.lora_alpha), (2, 16.0));
/// assert!(read.entries[0].tensor("lora_b").unwrap().equal(lora.lora_b()));
/// let keys: Vec<String> = tch::Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
///     .unwrap().into_iter().map(|(key, _)| key).collect();
/// assert!(keys.contains(&"base_model.model.attn.q.lora_A.weight".to_owned()));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn save_peft_lora(
    dir: impl AsRef<Path>,
    entries: &[AdapterEntry],
    options: &PeftOptions,
) -> Result<AdapterSummary> {
    save_peft(dir.as_ref(), entries, &[], options)
}

/// PEFT's trainable tokens of one embedding, to save: its path, ids and PEFT's rows (the
/// new values, `W[ids] + delta`).
pub(crate) type TokensToSave = (String, Vec<i64>, Tensor);

/// [`save_peft_lora`] with trainable tokens too (`trainable_token_indices`, keys
/// `<path>.token_adapter.trainable_tokens_delta`).
pub(crate) fn save_peft(
    dir: &Path,
    entries: &[AdapterEntry],
    tokens: &[TokensToSave],
    options: &PeftOptions,
) -> Result<AdapterSummary> {
    let invalid = |problems| AdapterError {
        operation: format!("save PEFT adapter to `{}`", dir.display()),
        problems,
    };
    let mut problems = check_entries(Registry::global()?, entries);
    if !problems.is_empty() {
        return Err(invalid(problems).into());
    }
    let mut loras = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(lora) = check_lora(entry, &mut problems) {
            loras.push(lora);
        }
    }
    for (path, _, _) in tokens {
        if loras.iter().any(|lora| &lora.path == path) {
            problems.push(AdapterProblem::UnexpectedTensor {
                name: tokens_key(path),
                file: format!("the patches of `{path}`"),
                reason: format!(
                    "module `{path}` has a LoRA and trainable tokens: an embedding both LoRA-targeted and with trainable tokens is not supported in PEFT's layout"
                ),
            });
        }
    }
    let config = problems
        .is_empty()
        .then(|| peft_config(&loras, options, &mut problems))
        .flatten();
    let Some(mut config) = config else {
        return Err(invalid(problems).into());
    };
    config.trainable_token_indices = tokens
        .iter()
        .map(|(path, ids, _)| (path.clone(), ids.clone()))
        .collect();
    config.trainable_token_indices.sort();
    let tensors: Vec<(String, &Tensor)> = loras
        .iter()
        .flat_map(|lora| {
            let magnitude = lora.magnitude.map(|m| (magnitude_key(&lora.path), m));
            [
                (lora.kind.key(&lora.path, 0), lora.a),
                (lora.kind.key(&lora.path, 1), lora.b),
            ]
            .into_iter()
            .chain(magnitude)
        })
        .chain(
            tokens
                .iter()
                .map(|(path, _, values)| (tokens_key(path), values)),
        )
        .collect();
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let tensor_bytes = to_safetensors_bytes(&tensors, metadata)?;
    let json = config_bytes(&config).map_err(|error| {
        invalid(vec![AdapterProblem::Field {
            file: PEFT_CONFIG_FILE.into(),
            field: "(all)".into(),
            message: error.to_string(),
        }])
    })?;
    write_pair(
        dir,
        (PEFT_TENSORS_FILE, &tensor_bytes),
        (PEFT_CONFIG_FILE, &json),
        &tensors,
    )
}

/// One checked LoRA entry (a DoRA's with its magnitude).
struct LoraEntry<'e> {
    path: String,
    kind: LoraKind,
    config: LoraConfig,
    a: &'e Tensor,
    b: &'e Tensor,
    magnitude: Option<&'e Tensor>,
}

fn check_lora<'e>(
    entry: &'e AdapterEntry,
    problems: &mut Vec<AdapterProblem>,
) -> Option<LoraEntry<'e>> {
    let dora = entry.spec.name == DoraConfig::NAME;
    if entry.spec.name != LoraConfig::NAME && !dora {
        problems.push(AdapterProblem::NotLora {
            path: entry.path.clone(),
            patch: entry.spec.name.clone(),
            operation: if entry.spec.name == MostlyFrozenEmbeddingConfig::NAME {
                "written by save_peft_lora (which has no table to add a mostly_frozen_embedding's delta to: save_model_lora writes it as PEFT's trainable tokens)"
            } else {
                "written in PEFT's layout"
            },
        });
        return None;
    }
    let config = if dora {
        entry.spec.config::<DoraConfig>().map(|dora| dora.lora())
    } else {
        entry.spec.config::<LoraConfig>()
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            problems.push(AdapterProblem::InvalidPatch {
                path: entry.path.clone(),
                error: Box::new(error),
            });
            return None;
        }
    };
    let before = problems.len();
    let kind = LoraKind::of_entry(entry);
    let locals = kind.locals();
    for (local, _) in &entry.tensors {
        let known = locals.contains(&local.as_str()) || (dora && local == MAGNITUDE_LOCAL);
        if !known {
            let only = if dora {
                format!(
                    "a DoRA has only `{}`, `{}` and `{MAGNITUDE_LOCAL}`",
                    locals[0], locals[1]
                )
            } else {
                format!(
                    "{} has only `{}` and `{}`",
                    kind.patch_words(),
                    locals[0],
                    locals[1]
                )
            };
            problems.push(AdapterProblem::UnexpectedTensor {
                name: entry.full_name(local),
                file: format!("the entry of `{}`", entry.path),
                reason: only,
            });
        }
    }
    let mut get = |name: &str| entry.required_tensor(name, problems);
    let (a, b) = (get(locals[0]), get(locals[1]));
    let magnitude = if dora { get(MAGNITUDE_LOCAL) } else { None };
    let (Some(a), Some(b)) = (a, b) else {
        return None;
    };
    if dora && magnitude.is_none() {
        return None;
    }
    let rank = config.rank;
    let [in_name, out_name] = kind.dims();
    let (a_size, b_size) = (a.size(), b.size());
    if a_size.len() != 2 || a_size[0] != rank {
        problems.push(AdapterProblem::Shape {
            name: entry.full_name(locals[0]),
            found: a_size,
            expected: format!("[{rank}, {in_name}] (rank {rank})"),
        });
    }
    if b_size.len() != 2 || b_size[1] != rank {
        problems.push(AdapterProblem::Shape {
            name: entry.full_name(locals[1]),
            found: b_size,
            expected: format!("[{out_name}, {rank}] (rank {rank})"),
        });
    }
    let mut named = vec![(locals[0], a), (locals[1], b)];
    if let Some(magnitude) = magnitude {
        let out = b.size().first().copied().unwrap_or_default();
        if magnitude.size() != [out] {
            problems.push(AdapterProblem::Shape {
                name: entry.full_name(MAGNITUDE_LOCAL),
                found: magnitude.size(),
                expected: format!("[{out}] (out_features, the rows of lora_b)"),
            });
        }
        named.push((MAGNITUDE_LOCAL, magnitude));
    }
    for (name, tensor) in named {
        if !tensor.is_floating_point() {
            problems.push(AdapterProblem::Dtype {
                name: entry.full_name(name),
                found: kind_name(tensor.kind()).to_owned(),
                expected: "a floating-point dtype".into(),
            });
        }
    }
    (problems.len() == before).then(|| LoraEntry {
        path: entry.path.clone(),
        kind,
        config,
        a,
        b,
        magnitude,
    })
}

/// The most common value (the smallest on a tie).
fn most_common<T: PartialOrd + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counted: Vec<(T, usize)> = Vec::new();
    for value in values {
        match counted.iter_mut().find(|(v, _)| *v == value) {
            Some((_, count)) => *count += 1,
            None => counted.push((value, 1)),
        }
    }
    counted
        .into_iter()
        .max_by(|(va, ca), (vb, cb)| {
            ca.cmp(cb)
                .then(vb.partial_cmp(va).unwrap_or(std::cmp::Ordering::Equal))
        })
        .map(|(value, _)| value)
}

/// The PEFT config of checked LoRA entries, or problems for what PEFT cannot express.
fn peft_config(
    loras: &[LoraEntry<'_>],
    options: &PeftOptions,
    problems: &mut Vec<AdapterProblem>,
) -> Option<PeftLoraConfig> {
    let r = most_common(loras.iter().map(|l| l.config.rank)).unwrap_or(8);
    let lora_alpha = most_common(loras.iter().map(|l| l.config.alpha)).unwrap_or(8.0);
    let dropout = loras.first().map_or(0.0, |l| l.config.dropout);
    let rslora = loras.first().is_some_and(|l| l.config.use_rslora);
    let use_dora = loras.first().is_some_and(|l| l.magnitude.is_some());
    for (field, differs) in [
        (
            "lora_dropout",
            loras.iter().any(|l| l.config.dropout != dropout),
        ),
        (
            "use_rslora",
            loras.iter().any(|l| l.config.use_rslora != rslora),
        ),
        (
            "use_dora",
            loras.iter().any(|l| l.magnitude.is_some() != use_dora),
        ),
    ] {
        if differs {
            let values: Vec<String> = loras
                .iter()
                .map(|l| match field {
                    "lora_dropout" => format!("`{}`: {}", l.path, l.config.dropout),
                    "use_dora" => format!("`{}`: {}", l.path, l.magnitude.is_some()),
                    _ => format!("`{}`: {}", l.path, l.config.use_rslora),
                })
                .collect();
            problems.push(AdapterProblem::Field {
                file: PEFT_CONFIG_FILE.into(),
                field: field.into(),
                message: format!(
                    "has one value for every module in PEFT's layout, but the patches differ ({})",
                    values.join(", ")
                ),
            });
        }
    }
    if !problems.is_empty() {
        return None;
    }
    let target_modules = match options.target_modules {
        PeftTargets::Paths => loras
            .iter()
            .map(|l| l.path.clone())
            .collect::<BTreeSet<_>>(),
        PeftTargets::Names => loras
            .iter()
            .map(|l| l.path.rsplit('.').next().unwrap_or(&l.path).to_owned())
            .collect(),
    };
    Some(PeftLoraConfig {
        r,
        lora_alpha,
        lora_dropout: dropout,
        use_rslora: rslora,
        target_modules: PeftTargetModules::List(target_modules.into_iter().collect()),
        rank_pattern: pattern_of(loras, |l| l.config.rank, r),
        alpha_pattern: pattern_of(loras, |l| l.config.alpha, lora_alpha),
        exclude_modules: PeftTargetModules::Unset,
        layers_to_transform: None,
        layers_pattern: Vec::new(),
        base_model_name_or_path: options.base_model_name_or_path.clone(),
        task_type: options.task_type.clone(),
        inference_mode: options.inference_mode,
        fan_in_fan_out: options.fan_in_fan_out,
        use_dora,
        trainable_token_indices: Vec::new(),
    })
}

/// The `rank_pattern` or `alpha_pattern` that gives every module its own `value` under
/// PEFT's rule (the first matching key, keys sorted as `save_pretrained` writes them):
/// the modules whose value is not `default`, keyed by path; where a path key would also
/// match another module (`attn.q` matches `blocks.1.attn.q`), keys that match one path
/// only (`^attn\.q`).
fn pattern_of<T: Copy + PartialEq>(
    loras: &[LoraEntry<'_>],
    value: impl Fn(&LoraEntry<'_>) -> T,
    default: T,
) -> PeftPattern<T> {
    let differing: BTreeMap<&str, T> = loras
        .iter()
        .filter(|l| value(l) != default)
        .map(|l| (l.path.as_str(), value(l)))
        .collect();
    let means_it = |pattern: &PeftPattern<T>| {
        loras
            .iter()
            .all(|l| pattern.get(&l.path).unwrap_or(default) == value(l))
    };
    let by_path = differing.iter().map(|(path, v)| ((*path).to_owned(), *v));
    if let Some(pattern) = PeftPattern::new(by_path).ok().filter(means_it) {
        return pattern;
    }
    let exact: BTreeMap<String, T> = differing
        .iter()
        .map(|(path, v)| (exact_key(path), *v))
        .collect();
    let pattern = PeftPattern::new(exact).expect("escaped paths are valid regular expressions");
    debug_assert!(means_it(&pattern));
    pattern
}
