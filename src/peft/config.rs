//! `adapter_config.json`: PEFT's `LoraConfig`, written with every field PEFT 0.21 writes
//! and read back checking each of them (see the table of [`fields`](super::fields)).
use super::fields;
use super::pattern::{ordered_patterns, PeftPattern};
use super::PEFT_CONFIG_FILE;
use crate::adapter::json::{self, Reader};
use crate::adapter::problem::AdapterProblem;
use regex::Regex;
use serde_json::{Map, Value};

/// How [`save_peft_lora`](super::save_peft_lora) writes `target_modules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeftTargets {
    /// Every patched path in full (`["blocks.0.attn.q", "blocks.1.attn.q"]`): selects
    /// exactly the patched modules in PEFT (a name matches a module whose path equals it
    /// or ends with `.name`).
    #[default]
    Paths,
    /// The last segment of every patched path (`["q", "v"]`), as PEFT users write it.
    /// In PEFT it also selects unpatched modules of the same names, if the model has any.
    Names,
}

/// What PEFT's config holds beyond the LoRA hyper-parameters, for
/// [`save_peft_lora`](super::save_peft_lora).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftOptions {
    /// `base_model_name_or_path`: the model the adapter was trained on (Hub name or
    /// folder), or `None` (`null`).
    pub base_model_name_or_path: Option<String>,
    /// `task_type`: PEFT's task (`"CAUSAL_LM"`, `"SEQ_CLS"`...) or `None` (`null`).
    pub task_type: Option<String>,
    /// `inference_mode`: `true` as PEFT's `save_pretrained` writes it.
    pub inference_mode: bool,
    /// How `target_modules` is written.
    pub target_modules: PeftTargets,
    /// `fan_in_fan_out`: `true` for a model whose adapted layers store their weight
    /// `[in, out]` (GPT-2's `Conv1D`). PEFT sets it by each layer's type when it loads
    /// (warning when the file says otherwise), so it changes no value, only the warning.
    pub fan_in_fan_out: bool,
}

impl Default for PeftOptions {
    fn default() -> Self {
        PeftOptions {
            base_model_name_or_path: None,
            task_type: None,
            inference_mode: true,
            target_modules: PeftTargets::Paths,
            fan_in_fan_out: false,
        }
    }
}

/// PEFT's `target_modules` (or `exclude_modules`): a list of module names, or one regular
/// expression.
#[derive(Debug, Clone, PartialEq)]
pub enum PeftTargetModules {
    /// Names, each selecting the modules whose path equals it or ends with `.name`.
    List(Vec<String>),
    /// A regular expression PEFT full-matches against module paths.
    Regex(String),
    /// `"all-linear"` (in any case), for `target_modules`: PEFT's shorthand for every linear
    /// layer (`nn.Linear`, `Conv1D`) but the model's output head, which for the causal
    /// language models here is the module named `lm_head`. (PEFT's `save_pretrained`
    /// writes the list of names it expanded to; a hand-written config may hold the
    /// shorthand itself.)
    AllLinear,
    /// `null`: for `target_modules`, PEFT's defaults for the model's architecture (which
    /// this library does not know, so any module is taken as selected); for
    /// `exclude_modules`, nothing excluded.
    Unset,
}

impl PeftTargetModules {
    /// Whether it names `path` as PEFT does: a list entry equal to the path or to a suffix
    /// of it after a dot, or the regular expression matching the whole path.
    pub fn names(&self, path: &str) -> bool {
        match self {
            PeftTargetModules::List(names) => names
                .iter()
                .any(|name| path == name || path.ends_with(&format!(".{name}"))),
            PeftTargetModules::Regex(regex) => full_match(regex).is_ok_and(|r| r.is_match(path)),
            PeftTargetModules::AllLinear => path.rsplit('.').next() != Some("lm_head"),
            PeftTargetModules::Unset => false,
        }
    }
}

/// PEFT's `INCLUDE_LINEAR_LAYERS_SHORTHAND`.
const ALL_LINEAR: &str = "all-linear";

/// The regular expression `re.fullmatch(pattern, ...)` uses.
fn full_match(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The fields of a PEFT LoRA config that change which modules have a LoRA and what each
/// computes, as read from `adapter_config.json` (every other field PEFT 0.21 has is
/// accepted as information or refused by name when set: see
/// [`read_peft_lora`](super::read_peft_lora)).
#[derive(Debug, Clone, PartialEq)]
pub struct PeftLoraConfig {
    /// `r`: the rank of modules no `rank_pattern` entry names.
    pub r: i64,
    /// `lora_alpha`: the alpha of modules no `alpha_pattern` entry names.
    pub lora_alpha: f64,
    /// `lora_dropout`.
    pub lora_dropout: f64,
    /// `use_rslora`: scale by `alpha / √r` instead of `alpha / r`.
    pub use_rslora: bool,
    /// `target_modules`.
    pub target_modules: PeftTargetModules,
    /// `exclude_modules`: modules never adapted, even when `target_modules` names them.
    pub exclude_modules: PeftTargetModules,
    /// `layers_to_transform`: the layer indices adapted (with a list `target_modules`);
    /// `None` for all.
    pub layers_to_transform: Option<Vec<u64>>,
    /// `layers_pattern`: the names of the module lists whose index is the layer index
    /// (`["layers", "h"]`); empty for PEFT's default (the first numbered segment).
    pub layers_pattern: Vec<String>,
    /// `rank_pattern`: ranks of particular modules, PEFT's first matching key winning.
    pub rank_pattern: PeftPattern<i64>,
    /// `alpha_pattern`: alphas of particular modules, PEFT's first matching key winning.
    pub alpha_pattern: PeftPattern<f64>,
    /// `base_model_name_or_path`.
    pub base_model_name_or_path: Option<String>,
    /// `task_type`.
    pub task_type: Option<String>,
    /// `inference_mode`.
    pub inference_mode: bool,
    /// `fan_in_fan_out`: as written. PEFT, and this library, decide by each layer's type
    /// whatever it says: a `Conv1D` weight is `[in, out]`, an `nn.Linear`'s `[out, in]`
    /// ([`LinearLike::fan_in_fan_out`](crate::patches::LinearLike::fan_in_fan_out)).
    pub fan_in_fan_out: bool,
    /// `use_dora`: every linear module is a DoRA ([`Dora`](crate::patches::Dora), with
    /// the magnitude `<path>.lora_magnitude_vector`); refused for embeddings.
    pub use_dora: bool,
    /// `trainable_token_indices`, in its dict form `{module_name: [token ids]}` (empty when
    /// unset): PEFT's trainable tokens, a
    /// [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) on each embedding
    /// whose path ends with the name (PEFT's `key.endswith(name)`). The list form (ids for
    /// the model's input embedding, which only the Python model knows) is refused.
    pub trainable_token_indices: Vec<(String, Vec<i64>)>,
}

impl PeftLoraConfig {
    /// The rank of module `path`: its `rank_pattern` entry, else `r`.
    pub fn rank_of(&self, path: &str) -> i64 {
        self.rank_pattern.get(path).unwrap_or(self.r)
    }

    /// The alpha of module `path`: its `alpha_pattern` entry, else `lora_alpha`.
    pub fn alpha_of(&self, path: &str) -> f64 {
        self.alpha_pattern.get(path).unwrap_or(self.lora_alpha)
    }

    /// Whether PEFT 0.21 puts a LoRA on module `path` with this config
    /// (`check_target_module_exists`): not excluded by `exclude_modules`, named by
    /// `target_modules` (any module when it is unset), and, for a list `target_modules`
    /// with `layers_to_transform`, in one of those layers.
    pub fn targets(&self, path: &str) -> bool {
        if self.exclude_modules.names(path) {
            return false;
        }
        match &self.target_modules {
            PeftTargetModules::Unset => true,
            PeftTargetModules::Regex(_) => self.target_modules.names(path),
            // PEFT expands "all-linear" to a list of names first, so layers apply to it too.
            PeftTargetModules::List(_) | PeftTargetModules::AllLinear => {
                self.target_modules.names(path)
                    && self.layers_to_transform.as_ref().is_none_or(|layers| {
                        layer_index(&self.layers_pattern, path).is_some_and(|i| layers.contains(&i))
                    })
            }
        }
    }
}

/// The layer index PEFT 0.21 reads from `path`: the first numbered segment after one of
/// `patterns` (or after any segment when there is none).
fn layer_index(patterns: &[String], path: &str) -> Option<u64> {
    let regexes: Vec<String> = if patterns.is_empty() {
        vec![r"^.*?\.[^.]*\.(\d+)\.".to_owned()]
    } else {
        patterns
            .iter()
            .map(|pattern| format!(r"^(?:^|.*?\.)(?:{pattern})\.(\d+)\."))
            .collect()
    };
    regexes.iter().find_map(|regex| {
        Regex::new(regex)
            .ok()?
            .captures(path)?
            .get(1)?
            .as_str()
            .parse()
            .ok()
    })
}

/// A number as JSON: an integer when it is one (PEFT writes `lora_alpha: 16`).
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

fn targets_value(targets: &PeftTargetModules) -> Value {
    match targets {
        PeftTargetModules::List(names) => Value::from(names.clone()),
        PeftTargetModules::Regex(regex) => Value::from(regex.clone()),
        PeftTargetModules::AllLinear => Value::from(ALL_LINEAR),
        PeftTargetModules::Unset => Value::Null,
    }
}

/// `config` as the bytes of `adapter_config.json`: every field of PEFT 0.21's
/// `LoraConfig`, sorted as `save_pretrained` writes them (`sort_keys=True`, also inside
/// the patterns: `config`'s patterns must mean the same with their keys sorted, which
/// [`save_peft_lora`](super::save_peft_lora) makes sure of), the fields this library does
/// not implement at their defaults.
pub(crate) fn config_bytes(config: &PeftLoraConfig) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Map::new();
    for field in fields::FIELDS {
        let value = match field.name {
            "alpha_pattern" => Value::Object(
                config
                    .alpha_pattern
                    .entries()
                    .iter()
                    .map(|(key, alpha)| (key.clone(), number(*alpha)))
                    .collect(),
            ),
            "rank_pattern" => Value::Object(
                config
                    .rank_pattern
                    .entries()
                    .iter()
                    .map(|(key, rank)| (key.clone(), Value::from(*rank)))
                    .collect(),
            ),
            "base_model_name_or_path" => config.base_model_name_or_path.clone().into(),
            "exclude_modules" => targets_value(&config.exclude_modules),
            "inference_mode" => config.inference_mode.into(),
            "layers_pattern" => match config.layers_pattern.as_slice() {
                [] => Value::Null,
                [one] => Value::from(one.clone()),
                many => Value::from(many.to_vec()),
            },
            "layers_to_transform" => config.layers_to_transform.clone().into(),
            "lora_alpha" => number(config.lora_alpha),
            "lora_dropout" => {
                serde_json::Number::from_f64(config.lora_dropout).map_or(Value::Null, Value::Number)
            }
            "r" => config.r.into(),
            "target_modules" => targets_value(&config.target_modules),
            "task_type" => config.task_type.clone().into(),
            "use_rslora" => config.use_rslora.into(),
            "fan_in_fan_out" => config.fan_in_fan_out.into(),
            "use_dora" => config.use_dora.into(),
            "trainable_token_indices" if !config.trainable_token_indices.is_empty() => {
                Value::Object(
                    config
                        .trainable_token_indices
                        .iter()
                        .map(|(name, ids)| (name.clone(), Value::from(ids.clone())))
                        .collect(),
                )
            }
            _ => serde_json::from_str(field.defaults[0])?,
        };
        out.insert(field.name.to_owned(), value);
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(out))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads `adapter_config.json`, recording every problem; `None` if the values the
/// tensors are checked against could not be read.
pub(crate) fn read_config(
    bytes: &[u8],
    problems: &mut Vec<AdapterProblem>,
) -> Option<PeftLoraConfig> {
    let value = match json::parse(PEFT_CONFIG_FILE, bytes) {
        Ok(value) => value,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut reader = Reader::new(PEFT_CONFIG_FILE, problems);
    let top = reader.object("(top level)", &value)?;
    if let Some(peft_type) = reader.string(top, "", "peft_type") {
        if peft_type != "LORA" {
            reader.problem(
                "peft_type",
                if peft_type == "TRAINABLE_TOKENS" {
                    "is \"TRAINABLE_TOKENS\" (PEFT's TrainableTokensConfig, keys `<path>.trainable_tokens_delta`), which is not read; only \"LORA\" adapters are, and their `trainable_token_indices` are the same trainable tokens".to_owned()
                } else {
                    format!("is {peft_type:?}; only \"LORA\" adapters are read")
                },
            );
            return None;
        }
    }
    fields::check(&mut reader, top);
    let r = reader.unsigned(top, "", "r").and_then(|r| {
        let r = i64::try_from(r).ok().filter(|r| *r > 0);
        if r.is_none() {
            reader.problem("r", "must be a positive integer");
        }
        r
    });
    let lora_alpha = match top.get("lora_alpha") {
        None => Some(8.0), // PEFT's default
        Some(_) => reader.number(top, "", "lora_alpha"),
    };
    let lora_dropout = match top.get("lora_dropout") {
        None | Some(Value::Null) => Some(0.0),
        Some(_) => reader.number(top, "", "lora_dropout"),
    };
    let use_rslora = reader.bool_or(top, "", "use_rslora", false);
    let target_modules = read_targets(&mut reader, top, "target_modules");
    let exclude_modules = read_targets(&mut reader, top, "exclude_modules");
    let layers_to_transform = read_layers(&mut reader, top);
    let layers_pattern = read_layers_pattern(&mut reader, top);
    let [rank_members, alpha_members] = ordered_patterns(bytes);
    let rank_pattern = read_pattern(&mut reader, top, "rank_pattern", rank_members, |v| {
        v.as_u64()
            .and_then(|r| i64::try_from(r).ok())
            .filter(|r| *r > 0)
    });
    let alpha_pattern = read_pattern(
        &mut reader,
        top,
        "alpha_pattern",
        alpha_members,
        Value::as_f64,
    );
    let base_model_name_or_path = reader
        .optional_string(top, "", "base_model_name_or_path")
        .map(str::to_owned);
    let task_type = reader
        .optional_string(top, "", "task_type")
        .map(str::to_owned);
    let inference_mode = reader.bool_or(top, "", "inference_mode", false);
    let fan_in_fan_out = reader.bool_or(top, "", "fan_in_fan_out", false);
    let use_dora = reader.bool_or(top, "", "use_dora", false);
    let trainable_token_indices = read_token_indices(&mut reader, top);
    // With unsupported options (recorded as problems) the values are still returned, so
    // the tensors are checked against them too and every problem is listed at once.
    Some(PeftLoraConfig {
        r: r?,
        lora_alpha: lora_alpha?,
        lora_dropout: lora_dropout?,
        use_rslora: use_rslora?,
        target_modules: target_modules?,
        exclude_modules: exclude_modules?,
        layers_to_transform: layers_to_transform?,
        layers_pattern: layers_pattern?,
        rank_pattern: rank_pattern?,
        alpha_pattern: alpha_pattern?,
        base_model_name_or_path,
        task_type,
        inference_mode: inference_mode?,
        fan_in_fan_out: fan_in_fan_out?,
        use_dora: use_dora?,
        trainable_token_indices: trainable_token_indices?,
    })
}

/// `trainable_token_indices`: absent or `null` is none; a dict `{module_name: [ids]}` of
/// non-negative ids, each list non-empty. PEFT's list form (ids for the model's input
/// embedding, found by `get_input_embeddings`) is refused by name: which module that is,
/// only the Python model can say.
fn read_token_indices(
    reader: &mut Reader<'_>,
    top: &Map<String, Value>,
) -> Option<Vec<(String, Vec<i64>)>> {
    const FIELD: &str = "trainable_token_indices";
    let object = match top.get(FIELD) {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Object(object)) => object,
        Some(Value::Array(_)) => {
            reader.problem(
                FIELD,
                "is a list (token ids for the model's input embedding, which PEFT finds with `get_input_embeddings`); only the dict form `{\"<embedding module>\": [ids]}` is read: write the embedding's name",
            );
            return None;
        }
        Some(_) => {
            reader.problem(FIELD, "must be a dict `{module_name: [token ids]}`");
            return None;
        }
    };
    let mut out = Vec::with_capacity(object.len());
    for (name, ids) in object {
        let read: Option<Vec<i64>> = ids.as_array().and_then(|ids| {
            ids.iter()
                .map(|id| id.as_u64().and_then(|id| i64::try_from(id).ok()))
                .collect()
        });
        match read {
            Some(ids) if !ids.is_empty() => out.push((name.clone(), ids)),
            _ => {
                reader.problem(
                    FIELD,
                    format!("`{name}` must be a non-empty list of non-negative token ids"),
                );
                return None;
            }
        }
    }
    Some(out)
}

fn read_targets(
    reader: &mut Reader<'_>,
    top: &Map<String, Value>,
    field: &str,
) -> Option<PeftTargetModules> {
    match top.get(field) {
        None | Some(Value::Null) => Some(PeftTargetModules::Unset),
        Some(Value::String(text))
            if field == "target_modules" && text.eq_ignore_ascii_case(ALL_LINEAR) =>
        {
            Some(PeftTargetModules::AllLinear)
        }
        Some(Value::String(regex)) => match full_match(regex) {
            Ok(_) => Some(PeftTargetModules::Regex(regex.clone())),
            Err(error) => {
                reader.problem(
                    field,
                    format!(
                        "is the regular expression {regex:?}, which this library cannot evaluate like Python's `re` ({})",
                        error.to_string().lines().last().unwrap_or_default().trim()
                    ),
                );
                None
            }
        },
        Some(Value::Array(items)) => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            if names.is_none() {
                reader.problem(field, "must be a list of strings or a string");
            }
            names.map(PeftTargetModules::List)
        }
        Some(other) => {
            reader.problem(
                field,
                format!(
                    "must be a list of strings or a string, found {}",
                    json::describe(other)
                ),
            );
            None
        }
    }
}

/// `layers_to_transform`: absent, `null` or `[]` is every layer; an integer or a list of
/// them.
fn read_layers(reader: &mut Reader<'_>, top: &Map<String, Value>) -> Option<Option<Vec<u64>>> {
    const FIELD: &str = "layers_to_transform";
    match top.get(FIELD) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(items)) if items.is_empty() => Some(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| reader.as_unsigned(FIELD, item))
            .collect::<Option<Vec<u64>>>()
            .map(Some),
        Some(value) => reader
            .as_unsigned(FIELD, value)
            .map(|layer| Some(vec![layer])),
    }
}

/// `layers_pattern`: absent, `null`, `""` or `[]` is PEFT's default; a string or a list.
fn read_layers_pattern(reader: &mut Reader<'_>, top: &Map<String, Value>) -> Option<Vec<String>> {
    const FIELD: &str = "layers_pattern";
    let patterns = match top.get(FIELD) {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::String(one)) if one.is_empty() => return Some(Vec::new()),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            let Some(names) = names else {
                reader.problem(FIELD, "must be a string or a list of strings");
                return None;
            };
            names
        }
        Some(other) => {
            reader.problem(
                FIELD,
                format!(
                    "must be a string or a list of strings, found {}",
                    json::describe(other)
                ),
            );
            return None;
        }
    };
    for pattern in &patterns {
        if let Err(error) = Regex::new(pattern) {
            reader.problem(
                FIELD,
                format!(
                    "holds {pattern:?}, which this library cannot evaluate like Python's `re` ({})",
                    error.to_string().lines().last().unwrap_or_default().trim()
                ),
            );
            return None;
        }
    }
    Some(patterns)
}

/// A `{key: value}` pattern in the file's order (`members`, read apart because
/// serde_json's `Map` sorts its keys); absent or `null` is empty.
fn read_pattern<T: Copy>(
    reader: &mut Reader<'_>,
    top: &Map<String, Value>,
    field: &str,
    members: Option<Vec<(String, Value)>>,
    value_of: impl Fn(&Value) -> Option<T>,
) -> Option<PeftPattern<T>> {
    match top.get(field) {
        None | Some(Value::Null) => return Some(PeftPattern::empty()),
        Some(value) => {
            reader.object(field, value)?;
        }
    }
    let members = members.unwrap_or_default();
    let mut entries = Vec::with_capacity(members.len());
    let mut valid = true;
    for (key, value) in members {
        match value_of(&value) {
            Some(value) => entries.push((key, value)),
            None => {
                reader.problem(
                    &format!("{field}[{key:?}]"),
                    format!("is not a valid value: {}", json::describe(&value)),
                );
                valid = false;
            }
        }
    }
    match PeftPattern::new(entries) {
        Ok(pattern) => valid.then_some(pattern),
        Err(message) => {
            reader.problem(field, message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(target_modules: &str) -> Option<PeftLoraConfig> {
        let json =
            format!(r#"{{"peft_type": "LORA", "r": 4, "target_modules": {target_modules}}}"#);
        let mut problems = Vec::new();
        let config = read_config(json.as_bytes(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        config
    }

    #[test]
    fn all_linear_targets_every_module_but_the_output_head() {
        for text in [r#""all-linear""#, r#""ALL-LINEAR""#] {
            let config = config_with(text).unwrap();
            assert_eq!(config.target_modules, PeftTargetModules::AllLinear);
            assert!(config.targets("transformer.h.0.attn.c_attn"));
            assert!(config.targets("model.layers.1.mlp.down_proj"));
            assert!(!config.targets("lm_head"));
        }
        let json = config_bytes(&config_with(r#""all-linear""#).unwrap()).unwrap();
        let written: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(written["target_modules"], "all-linear");
        // Any other string is a regular expression.
        let regex = config_with(r#"".*q_proj""#).unwrap();
        assert_eq!(
            regex.target_modules,
            PeftTargetModules::Regex(".*q_proj".into())
        );
    }
}
