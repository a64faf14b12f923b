//! Built-in patches that change nodes rather than slots (the PyGlove tutorial's):
//! `prelu_activation` replaces every ReLU by a PReLU, `gelu_activation` by a GELU,
//! `rebind(0.in_features=10)` changes hyperparameters by path, `dropout_before_linear(p)` puts a
//! Dropout before every Linear as a new node. Both find their own nodes: `targets` is
//! optional (default `**`, every node of the model).
use crate::error::Result;
use crate::layers::{self, Relu};
use crate::registry::{ArgSpec, ArgType, PatchSchema, PatchSpec, RegisteredPatch, Value};
use crate::tree::{path_in, AnyRule, Glob, HyperValue, Node, NodeChange, NodeRule};
use crate::varstore::SharedStore;
use tch::nn;

fn prelu_schema() -> PatchSchema {
    PatchSchema::new("prelu_activation", "replace every ReLU node by a PReLU")
        .arg(
            ArgSpec::new("num_parameters", ArgType::Int)
                .default(Value::Int(1))
                .int_range(1..)
                .doc("slopes: 1, or one per channel"),
        )
        .default_targets("**")
}

fn prelu_rule(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    let count = spec.args.get_i64("num_parameters")?;
    let glob = Glob::new(&spec.targets)?;
    let shared = SharedStore::of(vs);
    let rule = NodeRule::new::<Relu>("prelu_activation", glob, move |path, _| {
        let store = shared.store();
        let at = path_in(&store.root(), path);
        if at.get("weight").is_some() {
            return Err(crate::PatchError::NameTaken {
                name: at.path("weight"),
            });
        }
        Ok(NodeChange::Replace(Box::new(layers::prelu(at, count))))
    });
    Ok(Box::new(rule.var_store(vs)))
}

fn gelu_schema() -> PatchSchema {
    PatchSchema::new("gelu_activation", "replace every ReLU node by a GELU")
        .arg(
            ArgSpec::new("approximate", ArgType::Str)
                .default(Value::Str("none".into()))
                .choices(["none", "tanh"])
                .doc("the exact form, or the tanh approximation"),
        )
        .default_targets("**")
}

fn gelu_rule(spec: &PatchSpec, _vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    let approximate = match spec.args.get_str("approximate")? {
        "tanh" => layers::GeluApproximation::Tanh,
        _ => layers::GeluApproximation::None,
    };
    let glob = Glob::new(&spec.targets)?;
    let rule = NodeRule::new::<Relu>("gelu_activation", glob, move |_, _| {
        Ok(NodeChange::Replace(Box::new(layers::Gelu { approximate })))
    });
    Ok(Box::new(rule))
}

fn dropout_schema() -> PatchSchema {
    PatchSchema::new(
        "dropout_before_linear",
        "put a Dropout before every Linear node, as a new node",
    )
    .arg(
        ArgSpec::new("p", ArgType::Float)
            .float_range(0.0..=1.0)
            .doc("the probability of zeroing an input"),
    )
    .default_targets("**")
}

fn dropout_rule(spec: &PatchSpec, _vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    let p = spec.args.get_f64("p")?;
    let glob = Glob::new(&spec.targets)?;
    let rule = NodeRule::new::<nn::Linear>("dropout_before_linear", glob, move |_, _| {
        Ok(NodeChange::Wrap(
            vec![Node::new(layers::dropout(p))],
            vec![],
        ))
    });
    Ok(Box::new(rule))
}

fn rebind_schema() -> PatchSchema {
    PatchSchema::new(
        "rebind",
        "change hyperparameters by path, rebuilding those layers: rebind(0.in_features=10)",
    )
    .default_targets("**")
}

fn rebind_rule(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    let changes = spec
        .args
        .iter()
        .map(|(name, value)| (name.to_owned(), hyper_value(value)))
        .collect();
    Ok(Box::new(crate::tree::rebind_rule(vs, changes)))
}

/// A patch-string value as a hyperparameter value.
fn hyper_value(value: &Value) -> HyperValue {
    match value {
        Value::Int(v) => HyperValue::Int(*v),
        Value::Float(v) => HyperValue::Float(*v),
        Value::Bool(v) => HyperValue::Bool(*v),
        Value::Str(v) | Value::Ident(v) => HyperValue::Text(v.clone()),
        Value::List(items) => {
            let ints: Option<Vec<i64>> = items
                .iter()
                .map(|item| match item {
                    Value::Int(v) => Some(*v),
                    _ => None,
                })
                .collect();
            match ints {
                Some(ints) => HyperValue::Ints(ints),
                None => HyperValue::Text(value.to_string()),
            }
        }
    }
}

fn rebind_source() -> &'static str {
    "tch_patch::patches::node_rewrites::rebind"
}

fn prelu_source() -> &'static str {
    "tch_patch::patches::node_rewrites::prelu_activation"
}

fn gelu_source() -> &'static str {
    "tch_patch::patches::node_rewrites::gelu_activation"
}

fn dropout_source() -> &'static str {
    "tch_patch::patches::node_rewrites::dropout_before_linear"
}

inventory::submit! {
    RegisteredPatch::new(prelu_schema, prelu_source).with_node_rule(prelu_rule)
}

inventory::submit! {
    RegisteredPatch::new(gelu_schema, gelu_source).with_node_rule(gelu_rule)
}

inventory::submit! {
    RegisteredPatch::new(rebind_schema, rebind_source).with_node_rule(rebind_rule)
}

inventory::submit! {
    RegisteredPatch::new(dropout_schema, dropout_source).with_node_rule(dropout_rule)
}
