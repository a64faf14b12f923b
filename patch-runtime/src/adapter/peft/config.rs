//! `adapter_config.json`: PEFT's `LoraConfig`, written with the fields PEFT writes and
//! read back checking the ones that change what the tensors mean.
use super::PEFT_CONFIG_FILE;
use crate::adapter::json::{self, Reader};
use crate::adapter::problem::AdapterProblem;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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
}

impl Default for PeftOptions {
    fn default() -> Self {
        PeftOptions {
            base_model_name_or_path: None,
            task_type: None,
            inference_mode: true,
            target_modules: PeftTargets::Paths,
        }
    }
}

/// PEFT's `target_modules`: a list of module names, or one regular expression.
#[derive(Debug, Clone, PartialEq)]
pub enum PeftTargetModules {
    /// Names, each selecting the modules whose path equals it or ends with `.name`.
    List(Vec<String>),
    /// A regular expression PEFT full-matches against module paths (not checked here).
    Regex(String),
    /// `null`: PEFT's defaults for the model's architecture (not checked here).
    Unset,
}

/// The fields of a PEFT LoRA config that this library reads (PEFT's other fields are
/// accepted and ignored).
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
    /// `rank_pattern`: ranks of particular modules, by path (or path suffix).
    pub rank_pattern: BTreeMap<String, i64>,
    /// `alpha_pattern`: alphas of particular modules, by path (or path suffix).
    pub alpha_pattern: BTreeMap<String, f64>,
    /// `base_model_name_or_path`.
    pub base_model_name_or_path: Option<String>,
    /// `task_type`.
    pub task_type: Option<String>,
    /// `inference_mode`.
    pub inference_mode: bool,
}

impl PeftLoraConfig {
    /// The rank of module `path`: its `rank_pattern` entry, else `r`.
    pub fn rank_of(&self, path: &str) -> i64 {
        pattern_value(&self.rank_pattern, path).unwrap_or(self.r)
    }

    /// The alpha of module `path`: its `alpha_pattern` entry, else `lora_alpha`.
    pub fn alpha_of(&self, path: &str) -> f64 {
        pattern_value(&self.alpha_pattern, path).unwrap_or(self.lora_alpha)
    }
}

/// The value of the key that is `path`, else of the longest key that is a suffix of it
/// after a dot (PEFT's `(.*\.)?(key)$` with a literal key).
fn pattern_value<T: Copy>(pattern: &BTreeMap<String, T>, path: &str) -> Option<T> {
    pattern
        .iter()
        .filter(|(key, _)| path == *key || path.ends_with(&format!(".{key}")))
        .max_by_key(|(key, _)| key.len())
        .map(|(_, value)| *value)
}

/// A number as JSON: an integer when it is one (PEFT writes `lora_alpha: 16`).
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// PEFT's fields, in the sorted order `save_pretrained` writes them.
#[derive(Serialize)]
struct ConfigOut<'a> {
    alpha_pattern: BTreeMap<&'a str, Value>,
    auto_mapping: Option<()>,
    base_model_name_or_path: Option<&'a str>,
    bias: &'static str,
    fan_in_fan_out: bool,
    inference_mode: bool,
    init_lora_weights: bool,
    layers_pattern: Option<()>,
    layers_to_transform: Option<()>,
    lora_alpha: Value,
    lora_dropout: Value,
    modules_to_save: Option<()>,
    peft_type: &'static str,
    r: i64,
    rank_pattern: &'a BTreeMap<String, i64>,
    revision: Option<()>,
    target_modules: Value,
    task_type: Option<&'a str>,
    use_dora: bool,
    use_rslora: bool,
}

/// `config` as the bytes of `adapter_config.json`.
pub(crate) fn config_bytes(config: &PeftLoraConfig) -> Result<Vec<u8>, serde_json::Error> {
    let target_modules = match &config.target_modules {
        PeftTargetModules::List(names) => Value::from(names.clone()),
        PeftTargetModules::Regex(regex) => Value::from(regex.clone()),
        PeftTargetModules::Unset => Value::Null,
    };
    let out = ConfigOut {
        alpha_pattern: config
            .alpha_pattern
            .iter()
            .map(|(key, alpha)| (key.as_str(), number(*alpha)))
            .collect(),
        auto_mapping: None,
        base_model_name_or_path: config.base_model_name_or_path.as_deref(),
        bias: "none",
        fan_in_fan_out: false,
        inference_mode: config.inference_mode,
        init_lora_weights: true,
        layers_pattern: None,
        layers_to_transform: None,
        lora_alpha: number(config.lora_alpha),
        lora_dropout: serde_json::Number::from_f64(config.lora_dropout)
            .map_or(Value::Null, Value::Number),
        modules_to_save: None,
        peft_type: "LORA",
        r: config.r,
        rank_pattern: &config.rank_pattern,
        revision: None,
        target_modules,
        task_type: config.task_type.as_deref(),
        use_dora: false,
        use_rslora: config.use_rslora,
    };
    let mut bytes = serde_json::to_vec_pretty(&out)?;
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
                format!("is {peft_type:?}; only \"LORA\" adapters are read"),
            );
            return None;
        }
    }
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
    expect_unsupported(&mut reader, top);
    let target_modules = read_targets(&mut reader, top);
    let rank_pattern = read_pattern(&mut reader, top, "rank_pattern", |v| {
        v.as_u64()
            .and_then(|r| i64::try_from(r).ok())
            .filter(|r| *r > 0)
    });
    let alpha_pattern = read_pattern(&mut reader, top, "alpha_pattern", Value::as_f64);
    let base_model_name_or_path = reader
        .optional_string(top, "", "base_model_name_or_path")
        .map(str::to_owned);
    let task_type = reader
        .optional_string(top, "", "task_type")
        .map(str::to_owned);
    let inference_mode = reader.bool_or(top, "", "inference_mode", false);
    // With unsupported options (recorded as problems) the values are still returned, so
    // the tensors are checked against them too and every problem is listed at once.
    Some(PeftLoraConfig {
        r: r?,
        lora_alpha: lora_alpha?,
        lora_dropout: lora_dropout?,
        use_rslora: use_rslora?,
        target_modules: target_modules?,
        rank_pattern: rank_pattern?,
        alpha_pattern: alpha_pattern?,
        base_model_name_or_path,
        task_type,
        inference_mode: inference_mode?,
    })
}

/// Problems for PEFT options that change what the tensors are or mean, which this
/// library does not support.
fn expect_unsupported(reader: &mut Reader<'_>, top: &Map<String, Value>) {
    if let Some(bias) = reader.optional_string(top, "", "bias") {
        if bias != "none" {
            reader.problem(
                "bias",
                format!("is {bias:?}; only \"none\" is supported (no bias tensors)"),
            );
        }
    }
    let flags = [
        (
            "fan_in_fan_out",
            "weights stored as [in, out] (Conv1D) are not supported",
        ),
        ("use_dora", "DoRA is not supported"),
    ];
    for (flag, why) in flags {
        if reader.bool_or(top, "", flag, false) == Some(true) {
            reader.problem(flag, format!("is true: {why}"));
        }
    }
    match top.get("modules_to_save") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.is_empty() => {}
        Some(other) => reader.problem(
            "modules_to_save",
            format!(
                "is {}: whole modules saved next to the adapter are not supported",
                json::describe(other)
            ),
        ),
    }
}

fn read_targets(reader: &mut Reader<'_>, top: &Map<String, Value>) -> Option<PeftTargetModules> {
    match top.get("target_modules") {
        None | Some(Value::Null) => Some(PeftTargetModules::Unset),
        Some(Value::String(regex)) => Some(PeftTargetModules::Regex(regex.clone())),
        Some(Value::Array(items)) => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            if names.is_none() {
                reader.problem("target_modules", "must be a list of strings or a string");
            }
            names.map(PeftTargetModules::List)
        }
        Some(other) => {
            reader.problem(
                "target_modules",
                format!(
                    "must be a list of strings or a string, found {}",
                    json::describe(other)
                ),
            );
            None
        }
    }
}

/// A `{key: value}` pattern of module paths; absent or `null` is empty. A key with
/// regular-expression syntax other than `.` is a problem (only paths are matched here).
fn read_pattern<T>(
    reader: &mut Reader<'_>,
    top: &Map<String, Value>,
    field: &str,
    value_of: impl Fn(&Value) -> Option<T>,
) -> Option<BTreeMap<String, T>> {
    let object = match top.get(field) {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(value) => reader.object(field, value)?,
    };
    let mut pattern = BTreeMap::new();
    let mut valid = true;
    for (key, value) in object {
        let at = format!("{field}[{key:?}]");
        if key.is_empty()
            || key
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            reader.problem(
                &at,
                "is a regular expression; only module paths are supported as keys",
            );
            valid = false;
        }
        match value_of(value) {
            Some(value) => {
                pattern.insert(key.clone(), value);
            }
            None => {
                reader.problem(
                    &at,
                    format!("is not a valid value: {}", json::describe(value)),
                );
                valid = false;
            }
        }
    }
    valid.then_some(pattern)
}
