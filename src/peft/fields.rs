//! Every field of PEFT 0.21's `LoraConfig` (with `PeftConfig`'s), and what this library
//! does with each: read it, accept it as information, or refuse a value that would make
//! the adapter compute something this library does not.
use crate::adapter::json::{self, Reader};
use serde_json::{Map, Value};

/// What this library does with one field of `adapter_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Read and used (its meaning is implemented).
    Read,
    /// Information only; any value is accepted, none changes what is computed.
    Info,
    /// Used by one of PEFT's initialisations only, which a loaded adapter's saved values
    /// replace (`init_lora_weights` itself decides whether the initialisation is allowed).
    InitOnly,
    /// A value other than the defaults is refused: it changes what the adapter computes
    /// in a way this library does not implement. The text names what the field turns on.
    Refused(&'static str),
}

/// One field: its name, the JSON values that count as "not set" (the first is the one
/// written), and what is done with it.
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) defaults: &'static [&'static str],
    pub(crate) support: Support,
}

const fn field(name: &'static str, defaults: &'static [&'static str], support: Support) -> Field {
    Field {
        name,
        defaults,
        support,
    }
}

use Support::{Info, InitOnly, Read, Refused};

/// Every field PEFT 0.21.2 writes for a LoRA adapter, sorted by name (the order of
/// `save_pretrained`). `runtime_config` is PEFT's too but never saved.
#[rustfmt::skip]
pub(crate) const FIELDS: &[Field] = &[
    field("alora_invocation_tokens", &["null"], Refused("activated LoRA (aLoRA: the adapter applies only after the invocation tokens)")),
    field("alpha_pattern", &["{}", "null"], Read),
    field("arrow_config", &["null"], Refused("Arrow's routing of each token among several LoRA experts")),
    field("auto_mapping", &["null"], Info),
    field("base_model_name_or_path", &["null"], Info),
    field("bias", &["\"none\""], Refused("training and saving the base model's biases")),
    field("corda_config", &["null"], InitOnly),
    field("ensure_weight_tying", &["false"], Refused("tying the adapters of tied layers (embedding and output head)")),
    field("eva_config", &["null"], InitOnly),
    field("exclude_modules", &["null", "[]"], Read),
    field("fan_in_fan_out", &["false"], Read),
    field("inference_mode", &["false"], Info),
    field("init_lora_weights", &["true"], Read),
    field("kasa_config", &["null"], Refused("KaSA's singular-value adapter")),
    field("layer_replication", &["null"], Refused("a model made bigger by repeating base layers")),
    field("layers_pattern", &["null"], Read),
    field("layers_to_transform", &["null"], Read),
    field("loftq_config", &["{}", "null"], InitOnly),
    field("lora_alpha", &["8"], Read),
    field("lora_bias", &["false"], Refused("a trained bias on LoRA's B")),
    field("lora_dropout", &["0.0"], Read),
    field("lora_ga_config", &["null"], InitOnly),
    field("megatron_config", &["null"], Refused("LoRA split across Megatron's tensor-parallel ranks")),
    field("megatron_core", &["\"megatron.core\""], Info),
    field("modules_to_save", &["null", "[]"], Refused("whole modules trained and saved next to the adapter")),
    field("monteclora_config", &["null"], Refused("MonteCLoRA's sampled adapter weights")),
    field("peft_type", &["\"LORA\""], Read),
    field("peft_version", &["null"], Info),
    field("qalora_group_size", &["16"], Info),
    field("r", &["8"], Read),
    field("rank_pattern", &["{}", "null"], Read),
    field("revision", &["null"], Info),
    field("target_modules", &["null"], Read),
    field("target_parameters", &["null", "[]"], Refused("LoRA on raw parameters (for example a mixture of experts' 3-D weights)")),
    field("task_type", &["null"], Info),
    field("trainable_token_indices", &["null"], Read),
    field("use_bdlora", &["null"], Refused("BD-LoRA's block-diagonal A or B")),
    field("use_dora", &["false"], Read),
    field("use_qalora", &["false"], Refused("QA-LoRA's pooling of the input by groups")),
    field("use_rslora", &["false"], Read),
    field("velora_config", &["null"], Refused("VeLoRA's compressed activations")),
];

/// The values of `init_lora_weights` a loaded adapter may have: the ones that only choose
/// the starting values of A and B, which the saved values replace.
pub(crate) const ACCEPTED_INITS: &[&str] =
    &["true", "false", "\"gaussian\"", "\"eva\"", "\"orthogonal\""];

/// Why the other values of `init_lora_weights` PEFT 0.21 knows are refused.
#[rustfmt::skip]
const REFUSED_INITS: &[(&str, &str)] = &[
    ("pissa", "PiSSA subtracts the adapter's initial value from the base weight when PEFT loads it; save it with `path_initial_model_for_weight_conversion` to get a plain LoRA"),
    ("olora", "OLoRA subtracts the adapter's initial value from the base weight when PEFT loads it; save it with `path_initial_model_for_weight_conversion` to get a plain LoRA"),
    ("corda", "CorDA subtracts the adapter's initial value from the base weight when PEFT loads it; save it with `path_initial_model_for_weight_conversion` to get a plain LoRA"),
    ("lora_ga", "LoRA-GA subtracts the adapter's initial value from the base weight when PEFT loads it; save it with `path_initial_model_for_weight_conversion` to get a plain LoRA"),
    ("loftq", "LoftQ replaces the base weight by its quantized residual when PEFT loads it"),
    ("mica", "MiCA is a LoRA variant with its own forward"),
];

/// The names of every field, sorted.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|field| field.name)
}

/// The field named `name`.
pub(crate) fn get(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|field| field.name == name)
}

/// `value` is one of `field`'s defaults.
fn is_default(field: &Field, value: &Value) -> bool {
    field
        .defaults
        .iter()
        .any(|text| serde_json::from_str::<Value>(text).is_ok_and(|default| same(&default, value)))
}

/// JSON equality with numbers compared by value (`8` and `8.0` are the same).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A problem for every field of `top` that is unknown (listing the known ones) or refused
/// with the value it has; `init_lora_weights` checked against the initialisations allowed.
pub(crate) fn check(reader: &mut Reader<'_>, top: &Map<String, Value>) {
    let known: Vec<&str> = names().collect();
    reader.deny_unknown(top, "", &known);
    for (name, value) in top {
        let Some(field) = get(name) else {
            continue;
        };
        if let Refused(what) = field.support {
            if !is_default(field, value) {
                reader.problem(
                    name,
                    format!(
                        "is {}: {what} is not supported (this library reads only {})",
                        json::describe(value),
                        field.defaults.join(" or ")
                    ),
                );
            }
        }
    }
    if let Some(init) = top.get("init_lora_weights") {
        check_init(reader, init);
    }
}

fn check_init(reader: &mut Reader<'_>, init: &Value) {
    let accepted = ACCEPTED_INITS
        .iter()
        .any(|text| serde_json::from_str::<Value>(text).is_ok_and(|v| &v == init));
    if accepted {
        return;
    }
    let refused = init.as_str().and_then(|name| {
        REFUSED_INITS.iter().find(|(prefix, _)| {
            name == *prefix || (*prefix == "pissa" && name.starts_with("pissa_niter_"))
        })
    });
    let message = match refused {
        Some((_, why)) => format!("is {}: {why}", json::describe(init)),
        None => format!(
            "is {}; PEFT 0.21's values are {}, {}",
            json::describe(init),
            ACCEPTED_INITS.join(", "),
            REFUSED_INITS
                .iter()
                .map(|(name, _)| format!("\"{name}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    reader.problem("init_lora_weights", message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::problem::AdapterProblem;

    fn problems(config: Value) -> Vec<String> {
        let mut problems: Vec<AdapterProblem> = Vec::new();
        let mut reader = Reader::new("adapter_config.json", &mut problems);
        check(&mut reader, config.as_object().unwrap());
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_table_is_sorted_and_every_default_is_json_and_accepted() {
        let names: Vec<&str> = names().collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        let defaults: Map<String, Value> = FIELDS
            .iter()
            .map(|f| {
                (
                    f.name.to_owned(),
                    serde_json::from_str(f.defaults[0]).unwrap(),
                )
            })
            .collect();
        assert!(problems(Value::Object(defaults)).is_empty());
    }

    #[test]
    fn every_refused_field_is_refused_by_name_with_a_non_default_value() {
        for field in FIELDS {
            let Refused(what) = field.support else {
                continue;
            };
            let set = match field.defaults[0] {
                "false" => Value::Bool(true),
                "null" => serde_json::json!(["x"]),
                "\"none\"" => Value::from("all"),
                other => panic!("no non-default value for {other}"),
            };
            let found = problems(serde_json::json!({ field.name: set }));
            assert_eq!(found.len(), 1, "{}: {found:?}", field.name);
            assert!(
                found[0].contains(&format!("field `{}`", field.name)) && found[0].contains(what),
                "{}: {}",
                field.name,
                found[0]
            );
        }
    }

    #[test]
    fn init_methods_that_change_the_base_are_refused_by_name() {
        for accepted in ["true", "false", "\"gaussian\"", "\"eva\"", "\"orthogonal\""] {
            let value: Value = serde_json::from_str(accepted).unwrap();
            assert!(problems(serde_json::json!({ "init_lora_weights": value })).is_empty());
        }
        for (value, says) in [
            ("pissa", "PiSSA"),
            ("pissa_niter_4", "PiSSA"),
            ("olora", "OLoRA"),
            ("loftq", "LoftQ"),
            ("corda", "CorDA"),
            ("lora_ga", "LoRA-GA"),
            ("mica", "MiCA"),
            ("kaiming", "PEFT 0.21's values are"),
        ] {
            let found = problems(serde_json::json!({ "init_lora_weights": value }));
            assert_eq!(found.len(), 1, "{value}");
            assert!(
                found[0].contains("init_lora_weights") && found[0].contains(says),
                "{}",
                found[0]
            );
        }
    }

    #[test]
    fn an_unknown_field_lists_the_known_ones() {
        let found = problems(serde_json::json!({ "lora_alhpa": 16 }));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("lora_alhpa") && found[0].contains("lora_alpha, lora_bias"),
            "{}",
            found[0]
        );
    }
}
