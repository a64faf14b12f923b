//! Errors of module trees: selecting slots (globs, regexes, paths), applying rules and
//! unpatching.
use crate::error::PatchError;
use crate::names::quoted_list;
use thiserror::Error;

/// What went wrong selecting slots of a module tree, applying a [`Rule`](super::Rule) or
/// unpatching a slot. Each variant says whether anything was changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A slot holds no patch, so there is nothing to unpatch. Nothing was changed.
    #[error("{slot} holds no patch: nothing to unpatch")]
    NotPatched {
        /// The slot: its path, or its type when the path is unknown.
        slot: String,
    },
    /// A path glob could not be parsed. Nothing was changed.
    #[error("bad glob `{pattern}` at character {position}: {reason}")]
    BadGlob {
        /// The glob as given.
        pattern: String,
        /// Where the problem is (0-based character index).
        position: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A path regex could not be parsed. Nothing was changed.
    #[error("bad regex `{pattern}`: {reason}")]
    BadRegex {
        /// The regex as given.
        pattern: String,
        /// What the regex crate reported.
        reason: String,
    },
    /// A rule's selector matched no slot of the rule's layer type. The nearest paths are
    /// listed, so a typo shows at once (PEFT's silent zero-match). Found before any slot is
    /// changed: nothing was changed.
    #[error(
        "{}",
        no_match_message(rule, selector, slot_type, nearest, other_types)
    )]
    NoMatch {
        /// The rule's patch name.
        rule: String,
        /// The selector, as written.
        selector: String,
        /// The short name of the layer type the rule patches (e.g. `Linear`).
        slot_type: String,
        /// Slot paths of that type nearest to the selector, nearest first (at most 5).
        nearest: Vec<String>,
        /// Paths the selector does match whose slots hold another layer type, with that type.
        other_types: Vec<(String, String)>,
    },
    /// A slot already holds the patch a rule would add; stacking it twice must be asked
    /// for (`Rule::allow_stacking`). Found before any slot is changed: nothing was changed.
    #[error(
        "`{path}` is already patched with `{patch}`; patching it again would stack a second \
         `{patch}` (call `allow_stacking()` on the rule if that is what you want)"
    )]
    AlreadyPatched {
        /// The slot's path.
        path: String,
        /// The patch's name.
        patch: String,
    },
    /// A rule would patch one side of a tied tensor (one tensor under two paths) only.
    /// Found before any slot is changed: nothing was changed.
    #[error(
        "`{path}` shares its tensor `{tensor}` with `{tied_to}`, which {reason}; \
         say how to treat the tie: `tie(TiePolicy::PatchAll)` patches every slot sharing it, \
         `tie(TiePolicy::Allow)` patches this side only (the tensor stays shared)"
    )]
    TiedWeights {
        /// The slot the rule matched.
        path: String,
        /// The tied tensor's name under that slot.
        tensor: String,
        /// The same tensor's name elsewhere in the model.
        tied_to: String,
        /// Why the other side is not patched too.
        reason: String,
    },
    /// A rule's patch failed on one slot; every slot the rule had patched before it was
    /// unpatched again, so the model is as it was.
    #[error("rule `{rule}` failed at `{path}` (the model is unchanged): {source}")]
    PatchFailed {
        /// The rule's patch name.
        rule: String,
        /// The slot where it failed.
        path: String,
        /// The patch's own error.
        #[source]
        source: Box<PatchError>,
    },
    /// A rule's closure produced a content whose outermost patch is not the rule's patch.
    /// What it added was peeled off again and every slot patched before was unpatched: the
    /// model is as it was.
    #[error(
        "rule `{rule}` wrapped `{path}` in {}, not in `{rule}`; the rule's name must be the \
         `NAME` of the patch its closure applies",
        produced.map(|name| format!("`{name}`")).unwrap_or_else(|| "no patch".into())
    )]
    WrongPatchName {
        /// The rule's patch name.
        rule: String,
        /// The slot.
        path: String,
        /// The outermost patch name found instead.
        produced: Option<&'static str>,
    },
    /// A rule's closure did not keep what it was given under its patch (it peeled it or
    /// swapped the layer's tensors), so that slot could not be restored. **The model was
    /// changed**: that slot holds what the closure returned; every other slot was restored.
    #[error(
        "rule `{rule}` at `{path}`: the patch closure must return the content it is given \
         (the same patches over the same layer) wrapped in its patch; it returned something \
         else, so `{path}` could not be restored (every other slot was)"
    )]
    NotWrapped {
        /// The rule's patch name.
        rule: String,
        /// The slot.
        path: String,
    },
    /// No slot has this path. Nothing was changed.
    #[error("no slot at `{path}`; nearest slot paths: {}", quoted_list(nearest))]
    NoSuchSlot {
        /// The path asked for.
        path: String,
        /// The nearest slot paths, nearest first.
        nearest: Vec<String>,
    },
    /// The slot at a path holds another layer type than the one asked for. Nothing was
    /// changed.
    #[error("the slot at `{path}` holds `{actual}`, not `{expected}`")]
    WrongSlotType {
        /// The slot's path.
        path: String,
        /// The layer type asked for.
        expected: String,
        /// The layer type the slot holds.
        actual: String,
    },
    /// [`Node::undo`](crate::tree::Node::undo) on a node that was never changed (or whose
    /// changes were all undone). Nothing was changed.
    #[error("nothing to undo: the node holds its original `{holds}`")]
    NothingToUndo {
        /// The short type name of what the node holds.
        holds: String,
    },
    /// A child index past the end of a [`Sequential`](crate::layers::Sequential). Nothing
    /// was changed.
    #[error("index {index} is out of range for a sequence of {len} children")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// How many children the sequence has.
        len: usize,
    },
    /// No node holding the layer type asked for has a path the glob matches. Nothing was
    /// changed.
    #[error(
        "no `{layer}` node matches `{glob}`; the nodes are: {}",
        node_list(nodes)
    )]
    NoNodeMatch {
        /// The glob, as written.
        glob: String,
        /// The short name of the layer type asked for.
        layer: String,
        /// Every node of the model: its path and the short type name of what it holds.
        nodes: Vec<(String, String)>,
    },
    /// A rebind names one hyperparameter twice. Nothing was changed.
    #[error("`{name}` is given twice in one rebind")]
    RebindTwice {
        /// The hyperparameter's path.
        name: String,
    },
    /// A rebind names a node whose layer type it cannot rebuild. Nothing was changed.
    #[error(
        "cannot rebind `{path}`: rebind rebuilds {}, not `{layer}` (a layer of yours \
         implements `tree::Rebuild` and is declared with `leaf_layer!(rebuild: YourType)`)",
        quoted_list(rebuilds)
    )]
    CannotRebind {
        /// The node's path.
        path: String,
        /// The short type name of its layer.
        layer: String,
        /// The layer types rebind rebuilds.
        rebuilds: Vec<String>,
    },
    /// A rebind names a hyperparameter the layer does not have. Nothing was changed.
    #[error(
        "`{name}` is not a hyperparameter; the layer's are: {}",
        quoted_list(known)
    )]
    UnknownHyperparameter {
        /// The path given.
        name: String,
        /// The layer's hyperparameter names.
        known: Vec<String>,
    },
    /// A rebind gives a hyperparameter a value it cannot take. Nothing was changed.
    #[error("cannot set `{name}` to {value}: {reason}")]
    BadRebindValue {
        /// The hyperparameter's path.
        name: String,
        /// The value given, as printed.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// After a rebind, one layer of a sequence would give another size than the next takes.
    /// Found before anything changes: nothing was changed.
    #[error(
        "rebind leaves `{gives}` = {gives_value} feeding `{takes}` = {takes_value}: change both"
    )]
    RebindMismatch {
        /// The size one layer gives, e.g. `mlp.0.out_features`.
        gives: String,
        /// Its value after the rebind.
        gives_value: i64,
        /// The size the next layer takes, e.g. `mlp.2.in_features`.
        takes: String,
        /// Its value after the rebind.
        takes_value: i64,
    },
    /// A tensor of a layer to rebuild is not a variable of the VarStore given, so its
    /// VarStore path is unknown. Nothing was changed.
    #[error("`{name}` is not a variable of the VarStore given: rebind rebuilds a layer at its own VarStore path")]
    NotInVarStore {
        /// The tensor's path in the model.
        name: String,
    },
    /// A clone met a layer it cannot rebuild. Found before any tensor is made: nothing was
    /// added.
    #[error(
        "cannot clone `{layer}` at `{path}`: a clone rebuilds tch's Linear, Embedding, \
         LayerNorm and convolutions, this crate's layers, layers that implement \
         `tree::Rebuild` (declared with `leaf_layer!(rebuild: YourType)`), unpatched slots \
         of those and sequences of those"
    )]
    CannotClone {
        /// Its path in what was cloned (`""` for the top).
        path: String,
        /// The short type name of the layer.
        layer: String,
    },
    /// A clone or a rebind met a slot holding patches: a patch's state (its tensors, its
    /// configuration) cannot be rebuilt from the layer's hyperparameters. Found before
    /// anything changes: nothing was changed.
    #[error(
        "cannot {action} `{path}`: its slot holds the patches {} (outermost first), which \
         {action} cannot rebuild; {action} the model before patching it, then apply the same \
         patches again (e.g. the same patch string) to the result",
        quoted_list(patches)
    )]
    PatchedSlot {
        /// `clone` or `rebind`.
        action: &'static str,
        /// The slot's path (`""` for the top of what was cloned).
        path: String,
        /// The names of its patches, outermost first.
        patches: Vec<String>,
    },
    /// A layer's [`Rebuild`](super::Rebuild) refused its hyperparameters (a clone rebuilds
    /// with the layer's own), or failed after its check passed. A clone checks every layer
    /// before making any tensor, and a rebind puts back every layer it had rebuilt: nothing
    /// was changed, unless a clone's rebuild failed after its check passed (the tensors
    /// already made stay in the VarStore cloned into).
    #[error("cannot rebuild `{layer}` at `{path}`: `{name}`: {reason}")]
    RebuildFailed {
        /// The node's path.
        path: String,
        /// The short type name of its layer.
        layer: String,
        /// The hyperparameter the layer refused.
        name: String,
        /// Why.
        reason: String,
    },
    /// No node has this path. Nothing was changed.
    #[error("no node at `{path}`; node paths: {}", quoted_list(known))]
    NoSuchNode {
        /// The path asked for.
        path: String,
        /// The paths of the nodes there are (the nearest first).
        known: Vec<String>,
    },
}

fn node_list(nodes: &[(String, String)]) -> String {
    if nodes.is_empty() {
        return "none".to_owned();
    }
    let items: Vec<String> = nodes
        .iter()
        .map(|(path, ty)| format!("`{path}` ({ty})"))
        .collect();
    items.join(", ")
}

fn no_match_message(
    rule: &str,
    selector: &str,
    slot_type: &str,
    nearest: &[String],
    other_types: &[(String, String)],
) -> String {
    let mut message = format!("rule `{rule}` matched no `{slot_type}` slot with {selector}");
    if !other_types.is_empty() {
        let others: Vec<String> = other_types
            .iter()
            .map(|(path, ty)| format!("`{path}` ({ty})"))
            .collect();
        message.push_str(&format!(
            "; it matches slots of other types: {}",
            others.join(", ")
        ));
    }
    if nearest.is_empty() {
        message.push_str(&format!("; the model has no `{slot_type}` slot"));
    } else {
        message.push_str(&format!(
            "; nearest `{slot_type}` slot paths: {}",
            quoted_list(nearest)
        ));
    }
    message
}
