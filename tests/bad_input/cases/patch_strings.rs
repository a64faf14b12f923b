//! Patch strings, from the text to a patched tree: parsed and checked by the global
//! registry, each patch made a rule on the tree's linear slots, the rules applied as one
//! chain (all or none). Bad quoting, unknown names, bad arguments and targets.
use crate::case;
use crate::cases::rules::{built_rule, lora_rule};
use crate::fixture::Fixture;
use crate::Case;
use tch::nn;
use tch_patch::patches::{BiasOnly, DropoutBefore, Lora};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::Registry;
use tch_patch::tree::TreeError;
use tch_patch::{
    tree::apply_chain, tree::AnyRule, tree::ModuleTreeExt, tree::Rule, tree::Selector, PatchError,
};

/// Parses `text` with the global registry and applies its patches to the tree.
fn apply_string(fx: &mut Fixture, text: &str) -> Result<(), PatchError> {
    let specs = Registry::global()?.parse(text)?;
    let mut rules: Vec<Rule<nn::Linear>> = Vec::new();
    for spec in &specs {
        let selector = Selector::glob(&spec.targets)?;
        rules.push(match spec.name.as_str() {
            "lora" => built_rule::<Lora<nn::Linear>>(&fx.vs, selector, spec.config()?),
            "bias_only" => built_rule::<BiasOnly<nn::Linear>>(&fx.vs, selector, spec.config()?),
            "dropout_before" => {
                built_rule::<DropoutBefore<nn::Linear>>(&fx.vs, selector, spec.config()?)
            }
            other => unimplemented!("no rule for patch `{other}` on linear slots"),
        });
    }
    let rules: Vec<&dyn AnyRule> = rules.iter().map(|rule| rule as &dyn AnyRule).collect();
    apply_chain(fx.tree(), &rules).map(drop)
}

fn syntax(error: &PatchError, at: usize, starts: &str) -> bool {
    matches!(error, PatchError::PatchString(PatchStringError::PatchSyntax { column, message, .. }) if *column == at && message.starts_with(starts))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "patch string: int8 with an activations mode it does not have",
            |_fx| Registry::global()?.parse(r#"int8(activations="int4", targets="fc1")"#).map(drop),
            PatchError::PatchString(PatchStringError::ArgumentOutOfRange { patch, name, allowed, .. })
                if patch == "int8" && name == "activations" && allowed.contains("weight_only")
        ),
        case!(
            "patch string: unterminated string",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank=4, targets="blocks.*.q)"#),
            e if syntax(e, 22, "unterminated string")
        ),
        case!(
            "patch string: unknown escape in a string",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(targets="blocks.\*.q")"#),
            e if syntax(e, 22, "unknown escape '\\*'")
        ),
        case!(
            "patch string: a backslash ending the string",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, "lora(targets=\"blocks\\"),
            e if syntax(e, 14, "unterminated string")
        ),
        case!(
            "patch string: unknown patch name",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lorra(targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::UnknownPatch { name, nearest: Some(nearest), column: Some(1), .. })
                if name == "lorra" && nearest == "lora"
        ),
        case!(
            "patch string: unknown argument",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rnak=4, targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::UnknownArgument { name, nearest: Some(nearest), column: Some(6), .. })
                if name == "rnak" && nearest == "rank"
        ),
        case!(
            "patch string: an argument of another patch",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"bias_only(rank=2, targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::UnknownArgument { patch, name, accepted, .. })
                if patch == "bias_only" && name == "rank" && accepted == &["targets"]
        ),
        case!(
            "patch string: targets missing",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, "lora(rank=4)"),
            PatchError::PatchString(PatchStringError::MissingArgument { patch, name, .. }) if patch == "lora" && name == "targets"
        ),
        case!(
            "patch string: a string for an integer",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank="four", targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::ArgumentType { name, found, .. }) if name == "rank" && found.contains("four")
        ),
        case!(
            "patch string: a list for targets",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, "lora(targets=[1, 2])"),
            PatchError::PatchString(PatchStringError::ArgumentType { name, .. }) if name == "targets"
        ),
        case!(
            "patch string: rank 0 (out of range)",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank=0, targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::ArgumentOutOfRange { name, value, .. }) if name == "rank" && value == "0"
        ),
        case!(
            "patch string: dropout past its (included) end",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(dropout=1.5, targets="blocks.*.q")"#),
            PatchError::PatchString(PatchStringError::ArgumentOutOfRange { name, allowed, .. }) if name == "dropout" && allowed == "in 0.0..=1.0"
        ),
        case!(
            "patch string: an integer past 64 bits",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank=99999999999999999999, targets="blocks.*.q")"#),
            e if syntax(e, 11, "integer 99999999999999999999 does not fit")
        ),
        case!(
            "patch string: an argument given twice",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank=4, targets="blocks.*.q", rank=8)"#),
            PatchError::PatchString(PatchStringError::DuplicateArgument { name, column: Some(36), .. }) if name == "rank"
        ),
        case!(
            "patch string: a malformed glob in targets",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(targets="blocks.{0,1.q")"#),
            PatchError::Tree(TreeError::BadGlob { position: 7, .. })
        ),
        case!(
            "patch string: targets matching no slot",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(targets="*.attn.q")"#),
            PatchError::Tree(TreeError::NoMatch { rule, .. }) if rule == "lora"
        ),
        case!(
            "patch string: the second patch matches nothing (the first is undone)",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"lora(rank=2, targets="blocks.*.q"); bias_only(targets="*.mlp")"#),
            PatchError::Tree(TreeError::NoMatch { rule, .. }) if rule == "bias_only"
        ),
        case!(
            "patch string: the second patch fails half-way (all undone)",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"bias_only(targets="blocks.*.v"); dropout_before(p=0.5, targets="blocks.*.{q,v}")"#),
            PatchError::Tree(TreeError::PatchFailed { rule, path, source })
                if rule == "dropout_before" && path == "blocks.0.v" && matches!(**source, PatchError::Tree(TreeError::AlreadyPatched { .. }))
        ),
        case!(
            "patch string: a syntax error in the second patch (nothing applied)",
            setup: |fx| fx.with_tree(),
            |fx| apply_string(fx, r#"bias_only(targets="blocks.0.v"); lora(rank 2)"#),
            e if syntax(e, 44, "expected '=' after argument name \"rank\"")
        ),
        case!(
            "patch string: a LoRA on a slot holding one",
            setup: |fx| {
                let rule = lora_rule(&fx.vs, "blocks.0.q");
                fx.with_tree().apply(&rule).unwrap();
            },
            |fx| apply_string(fx, r#"lora(targets="blocks.{0,1}.q")"#),
            PatchError::Tree(TreeError::AlreadyPatched { path, patch }) if path == "blocks.0.q" && patch == "lora"
        ),
    ]
}
