//! Rebind: change hyperparameters by path (`0.in_features = 10`), rebuilding exactly the
//! layers they belong to at their own VarStore paths, every other tensor kept; all or
//! nothing, with a shape check along every sequence before anything changes.
use super::hyper::{HyperList, HyperValue};
use super::node::NodeLayer;
use super::query::Nodes;
use super::rebuild::{rebuilder, slot_patches, BadHyperparameter, HyperArgs};
use super::slot::short_type_name;
use super::visit::{ModuleTree, TreeNode};
use super::TreeError;
use crate::layers::Sequential;
use crate::params::named_tensors;
use crate::tensor_fit::same_tensor;
use crate::varstore::SharedStore;
use std::collections::BTreeMap;
use tch::{nn, Tensor};

/// The layer types [`rebind`](super::ModuleTreeExt::rebind) can rebuild.
const REBUILDS: &[&str] = &[
    "Linear",
    "Embedding",
    "LayerNorm",
    "Conv1D/2D/3D",
    "ConvTranspose1D/2D/3D",
    "this crate's layers",
    "your layers that implement Rebuild",
    "an unpatched Slot of those",
];

/// A VarStore entry of a layer: full name, the tensor, whether it is trainable.
type Entry = (String, Tensor, bool);

/// A size a layer takes or gives: the hyperparameter's name and value.
type NamedSize = (&'static str, i64);

/// What a rebind changed, to report and to take back with
/// [`undo_rebind`](super::ModuleTreeExt::undo_rebind).
#[derive(Debug, Default)]
pub struct RebindReport {
    /// Each rebuilt node: its path, its hyperparameters before and after.
    pub rebuilt: Vec<(String, HyperList, HyperList)>,
    /// The VarStore entries each rebuilt layer had, to put back on undo.
    saved: Vec<Vec<Entry>>,
}

/// One node to rebuild: where it is, its old and new hyperparameters, its VarStore prefix.
struct Planned {
    path: String,
    old: HyperList,
    new: HyperList,
    prefix: String,
    saved: Vec<Entry>,
}

/// See [`ModuleTreeExt::rebind`](super::ModuleTreeExt::rebind).
pub(super) fn rebind<M: ModuleTree + ?Sized>(
    model: &mut M,
    vs: &nn::VarStore,
    changes: &[(&str, HyperValue)],
) -> Result<RebindReport, TreeError> {
    let planned = plan(model, vs, changes)?;
    check_sequences(model, &planned)?;
    // Everything is checked: build each layer, then swap it in. A rebuild that fails all
    // the same (a user layer whose `rebuild` refuses what its `check` accepted) puts back
    // every layer rebuilt before it.
    let mut report = RebindReport::default();
    let mut failed = None;
    let mut nodes =
        super::nodes::nodes_mut(model, |path, _| planned.iter().any(|p| p.path == path));
    for plan in planned {
        let node = nodes
            .iter_mut()
            .find(|(path, _)| *path == plan.path)
            .map(|(_, node)| &mut **node)
            .expect("the plan was made from these nodes");
        let tensors: Vec<Tensor> = plan
            .saved
            .iter()
            .map(|(_, t, _)| t.shallow_clone())
            .collect();
        crate::varstore::forget_tensors(&vs.variables_, &tensors);
        let before: Vec<String> = vs.variables().into_keys().collect();
        let root = super::rule::path_in(&vs.root(), &plan.prefix);
        let built = rebuilder(node.content())
            .expect("the plan checked that this layer is rebuilt")
            .rebuild_dyn(&root, &HyperArgs::new(&plan.new));
        match built {
            Ok(layer) => {
                node.replace_boxed(layer);
                report.rebuilt.push((plan.path, plan.old, plan.new));
                report.saved.push(plan.saved);
            }
            Err(bad) => {
                let made: Vec<Tensor> = vs
                    .variables()
                    .into_iter()
                    .filter(|(name, _)| !before.contains(name))
                    .map(|(_, tensor)| tensor)
                    .collect();
                crate::varstore::forget_tensors(&vs.variables_, &made);
                crate::varstore::restore_tensors(vs, plan.saved);
                failed = Some(TreeError::RebuildFailed {
                    layer: short_type_name(node.content().type_name()),
                    path: plan.path,
                    name: bad.name,
                    reason: bad.reason,
                });
                break;
            }
        }
    }
    drop(nodes);
    if let Some(error) = failed {
        undo_rebind(model, vs, report)?;
        return Err(error);
    }
    Ok(report)
}

/// See [`ModuleTreeExt::undo_rebind`](super::ModuleTreeExt::undo_rebind).
pub(super) fn undo_rebind<M: ModuleTree + ?Sized>(
    model: &mut M,
    vs: &nn::VarStore,
    report: RebindReport,
) -> Result<(), TreeError> {
    for ((path, _, _), saved) in report.rebuilt.iter().zip(report.saved).rev() {
        let node = super::nodes::node_mut(model, path)?;
        let current: Vec<Tensor> = named_tensors(node).into_iter().map(|t| t.tensor).collect();
        node.undo()?;
        crate::varstore::forget_tensors(&vs.variables_, &current);
        crate::varstore::restore_tensors(vs, saved);
    }
    Ok(())
}

/// Every change resolved to its node, checked, grouped by node, in the model's order.
fn plan<M: ModuleTree + ?Sized>(
    model: &mut M,
    vs: &nn::VarStore,
    changes: &[(&str, HyperValue)],
) -> Result<Vec<Planned>, TreeError> {
    let mut by_node: BTreeMap<String, Vec<(&str, &HyperValue)>> = BTreeMap::new();
    let every_node: Vec<String> = super::nodes::every_node(model)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    for (key, value) in changes {
        let (path, name) = key.rsplit_once('.').unwrap_or(("", key));
        if !every_node.iter().any(|p| p == path) {
            return Err(TreeError::NoSuchNode {
                path: path.to_owned(),
                known: every_node.clone(),
            });
        }
        let entry = by_node.entry(path.to_owned()).or_default();
        if entry.iter().any(|(n, _)| *n == name) {
            return Err(TreeError::RebindTwice {
                name: (*key).to_owned(),
            });
        }
        entry.push((name, value));
    }
    let variables = vs.variables();
    let mut planned = Vec::new();
    for (path, node) in super::nodes::nodes_mut(model, |path, _| by_node.contains_key(path)) {
        let layer = node.content();
        let old = layer_hyperparameters(layer);
        let type_name = short_type_name(layer.type_name());
        if let Some(patches) = slot_patches(layer) {
            return Err(TreeError::PatchedSlot {
                action: "rebind",
                path,
                patches,
            });
        }
        let Some(rebuilder) = rebuilder(layer) else {
            return Err(TreeError::CannotRebind {
                path,
                layer: type_name,
                rebuilds: REBUILDS.iter().map(|s| (*s).to_owned()).collect(),
            });
        };
        let mut new = old.clone();
        for (name, value) in &by_node[&path] {
            let Some(slot) = new.iter_mut().find(|(n, _)| n == name) else {
                return Err(TreeError::UnknownHyperparameter {
                    name: crate::params::join_name(&path, name),
                    known: old.iter().map(|(n, _)| (*n).to_owned()).collect(),
                });
            };
            check_value(&path, name, &slot.1, value)?;
            slot.1 = (*value).clone();
        }
        rebuilder
            .check_dyn(&HyperArgs::new(&new))
            .map_err(|bad| refused(&path, &new, bad))?;
        let (prefix, saved) = var_store_entries(vs, &variables, &path, layer)?;
        planned.push(Planned {
            path,
            old,
            new,
            prefix,
            saved,
        });
    }
    Ok(planned)
}

/// What a node's layer reports: the hyperparameters of its first tree node (a leaf's, or a
/// slot's innermost layer's).
pub(super) fn layer_hyperparameters(layer: &dyn NodeLayer) -> HyperList {
    Nodes::of(layer)
        .iter()
        .next()
        .map(|node| node.hyperparameters())
        .unwrap_or_default()
}

/// A new value must have the old one's kind, and a float must be finite; the rest is the
/// layer's own [`Rebuild::check`](super::Rebuild::check).
fn check_value(
    path: &str,
    name: &str,
    old: &HyperValue,
    new: &HyperValue,
) -> Result<(), TreeError> {
    let reason = match (old, new) {
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            Some("the value has another type than the hyperparameter's")
        }
        (HyperValue::Float(_), HyperValue::Float(v)) if !v.is_finite() => Some("it must be finite"),
        _ => None,
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(TreeError::BadRebindValue {
            name: crate::params::join_name(path, name),
            value: new.to_string(),
            reason: reason.to_owned(),
        }),
    }
}

/// A layer's refusal of its new hyperparameters, with the node's path and the value.
fn refused(path: &str, new: &HyperList, bad: BadHyperparameter) -> TreeError {
    let value = new
        .iter()
        .find(|(n, _)| *n == bad.name)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "nothing".to_owned());
    TreeError::BadRebindValue {
        name: crate::params::join_name(path, &bad.name),
        value,
        reason: bad.reason,
    }
}

/// The VarStore prefix of a layer's tensors (`mlp.0` for `mlp.0.weight`) and its entries
/// (name, tensor, trainable): each tensor must be a variable of `vs`.
fn var_store_entries(
    vs: &nn::VarStore,
    variables: &std::collections::HashMap<String, Tensor>,
    path: &str,
    layer: &dyn NodeLayer,
) -> Result<(String, Vec<Entry>), TreeError> {
    let trainable = vs.trainable_variables();
    let mut prefix = None;
    let mut saved = Vec::new();
    for named in named_tensors(layer) {
        let found = variables
            .iter()
            .find(|(_, var)| same_tensor(var, &named.tensor))
            .map(|(name, _)| name.clone());
        let Some(var_name) = found else {
            return Err(TreeError::NotInVarStore {
                name: crate::params::join_name(path, &named.name),
            });
        };
        let own = var_name
            .strip_suffix(&named.name)
            .map(|p| p.trim_end_matches('.').to_owned())
            .unwrap_or_default();
        prefix.get_or_insert(own);
        let is_trainable = trainable.iter().any(|t| same_tensor(t, &named.tensor));
        saved.push((var_name, named.tensor, is_trainable));
    }
    Ok((prefix.unwrap_or_else(|| path.to_owned()), saved))
}

/// The sizes a layer takes and gives along a sequence, from its hyperparameters.
fn features(hyper: &HyperList) -> (Option<NamedSize>, Option<NamedSize>) {
    let get = |name: &'static str| {
        hyper.iter().find_map(|(n, v)| match v {
            HyperValue::Int(v) if *n == name => Some((name, *v)),
            _ => None,
        })
    };
    if let (Some(i), Some(o)) = (get("in_features"), get("out_features")) {
        return (Some(i), Some(o));
    }
    if let (Some(i), Some(o)) = (get("in_channels"), get("out_channels")) {
        return (Some(i), Some(o));
    }
    if let Some(n) = get("num_channels") {
        return (Some(n), Some(n));
    }
    if let Some(o) = get("embedding_dim") {
        return (None, Some(o));
    }
    if let Some(n) = get("num_features") {
        return (Some(n), Some(n));
    }
    if let Some((_, HyperValue::Ints(shape))) = hyper.iter().find(|(n, _)| *n == "normalized_shape")
    {
        if let Some(&last) = shape.last() {
            return (
                Some(("normalized_shape", last)),
                Some(("normalized_shape", last)),
            );
        }
    }
    (None, None)
}

/// A size along a sequence: which node and hyperparameter, and the value.
type Size = (String, &'static str, i64);

/// What a node takes and gives along a sequence. `None` for a layer that keeps the size
/// (an activation), `Err(())` for one whose sizes are unknown (a user model): the check
/// restarts after it.
type Span = Result<(Option<Size>, Option<Size>), ()>;

/// Every sequence of the model, its children's sizes taken with the planned values: each
/// sized child must give what the next sized child takes, where one of the two changes.
fn check_sequences<M: ModuleTree + ?Sized>(
    model: &M,
    planned: &[Planned],
) -> Result<(), TreeError> {
    let nodes = Nodes::of(model);
    let all: Vec<_> = nodes.iter().collect();
    let changed = |path: &str| planned.iter().any(|p| p.path == path);
    for index in 0..all.len() {
        if is_sequence(&all[index]) {
            let _span = span(&all, index, planned, &mut |gives: &Size, takes: &Size| {
                if !same_axis(gives.1, takes.1) {
                    // Channels (dimension 1) feeding features (the last dimension), or the
                    // other way: different sizes, nothing to compare.
                    return Ok(());
                }
                if gives.2 != takes.2 && (changed(&gives.0) || changed(&takes.0)) {
                    return Err(TreeError::RebindMismatch {
                        gives: crate::params::join_name(&gives.0, gives.1),
                        gives_value: gives.2,
                        takes: crate::params::join_name(&takes.0, takes.1),
                        takes_value: takes.2,
                    });
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Whether two sizes along a sequence are of the same dimension: channels (a
/// convolution's, a group norm's: dimension 1) or features (the last dimension); a batch
/// norm's `num_features` is either.
fn same_axis(gives: &str, takes: &str) -> bool {
    let channels = |name: &str| matches!(name, "in_channels" | "out_channels" | "num_channels");
    gives == "num_features" || takes == "num_features" || channels(gives) == channels(takes)
}

fn is_sequence(node: &super::query::NodeRef<'_>) -> bool {
    matches!(node.node, TreeNode::Branch { type_name } if type_name == std::any::type_name::<Sequential>())
}

/// The span of `all[index]`; for a sequence, `meet(gives, takes)` is called for each pair
/// of sized children that follow each other.
fn span(
    all: &[super::query::NodeRef<'_>],
    index: usize,
    planned: &[Planned],
    meet: &mut dyn FnMut(&Size, &Size) -> Result<(), TreeError>,
) -> Result<Span, TreeError> {
    let node = &all[index];
    match node.node {
        TreeNode::Branch { .. } if is_sequence(node) => {}
        TreeNode::Branch { .. } => return Ok(Err(())),
        TreeNode::Tensor { .. } => return Ok(Ok((None, None))),
        TreeNode::Leaf { .. } | TreeNode::Slot(_) => {
            let hyper = planned
                .iter()
                .find(|p| p.path == node.path)
                .map(|p| p.new.clone())
                .unwrap_or_else(|| node.hyperparameters());
            let (takes, gives) = features(&hyper);
            let at =
                |size: Option<(&'static str, i64)>| size.map(|(n, v)| (node.path.to_owned(), n, v));
            return Ok(Ok((at(takes), at(gives))));
        }
    }
    let (mut first, mut previous): (Option<Size>, Option<Size>) = (None, None);
    let mut opaque = false;
    let children: Vec<usize> = (index + 1..all.len())
        .take_while(|&i| all[i].depth > node.depth)
        .filter(|&i| all[i].depth == node.depth + 1)
        .collect();
    for child in children {
        // A nested sequence is checked in its own turn; here it only spans.
        let child_span = span(all, child, planned, &mut |_, _| Ok(()))?;
        let Ok((takes, gives)) = child_span else {
            previous = None;
            opaque = true;
            continue;
        };
        if let Some(takes) = &takes {
            match &previous {
                Some(gives) => meet(gives, takes)?,
                None if !opaque && first.is_none() => first = Some(takes.clone()),
                None => {}
            }
        }
        if gives.is_some() {
            previous = gives;
        }
    }
    Ok(Ok((first, previous)))
}

/// [`rebind`] as a rule, for patch strings (`rebind(0.in_features=10, 2.p=0.1)`) and
/// chains: undone exactly, VarStore entries included, when a later rule fails.
pub(crate) struct RebindRule {
    shared: SharedStore,
    changes: Vec<(String, HyperValue)>,
    reports: std::sync::Mutex<Vec<RebindReport>>,
}

impl RebindRule {
    pub(crate) fn new(vs: &nn::VarStore, changes: Vec<(String, HyperValue)>) -> Self {
        RebindRule {
            shared: SharedStore::of(vs),
            changes,
            reports: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl super::chain::AnyRule for RebindRule {
    fn name(&self) -> &str {
        "rebind"
    }

    fn describe(&self) -> String {
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("rebind {}", changes.join(", "))
    }

    fn apply_undoable(
        &self,
        model: &mut dyn ModuleTree,
    ) -> crate::Result<(super::ApplyReport, super::rule::Undo)> {
        let changes: Vec<(&str, HyperValue)> = self
            .changes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let report = rebind(model, &self.shared.store(), &changes)?;
        let applied = super::ApplyReport {
            rule: "rebind".into(),
            patched: report
                .rebuilt
                .iter()
                .map(|(path, _, _)| (path.clone(), Vec::new()))
                .collect(),
        };
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.push(report);
        Ok((applied, vec![(reports.len() - 1, 1)]))
    }

    fn undo(&self, model: &mut dyn ModuleTree, undo: &super::rule::Undo) {
        let Some(&(index, _)) = undo.first() else {
            return;
        };
        let report = {
            let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
            if index >= reports.len() {
                return;
            }
            reports.remove(index)
        };
        let _ = undo_rebind(model, &self.shared.store(), report);
    }
}

/// A rule for patch strings' `rebind(...)`.
pub(crate) fn rebind_rule(
    vs: &nn::VarStore,
    changes: Vec<(String, HyperValue)>,
) -> impl super::chain::AnyRule {
    RebindRule::new(vs, changes)
}
