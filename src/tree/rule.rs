//! [`Rule`]: "every `T` slot this selector picks gets this patch", applied all or nothing.
use super::layer::Layer;
use super::query::{ModuleTreeExt, Nodes, SlotMut};
use super::select::{nearest, Selector};
use super::slot::{short_type_name, AnySlot, DynLayer, Refused, Slot};
use super::ties::{tensor_entries, EntryTies};
use super::visit::{ModuleTree, TreeNode};
use super::TreeError;
use crate::error::Result;
use crate::params::{named_tensors, Parameters};
use std::any::{Any, TypeId};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use tch::nn;

/// What a rule does when a slot it picks shares a tensor with a node it does not patch
/// (a tied weight: an input embedding and an output head sharing one table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TiePolicy {
    /// Refuse with [`TreeError::TiedWeights`] (the default): patching one side only of
    /// a tie is usually a mistake (merging a LoRA into the head would change the embedding).
    #[default]
    Refuse,
    /// Also patch every other `T` slot that shares the tensor; refuse when a sharer is
    /// not a `T` slot.
    PatchAll,
    /// Patch the picked side only. The tensor stays shared: patches never copy it.
    Allow,
}

type PatchFn<T> = dyn Fn(&str, DynLayer<T>) -> std::result::Result<DynLayer<T>, Refused<T>>;
type CheckFn<T> = dyn Fn(&str, &Slot<T>) -> Result<()>;

/// A whole-model rewrite: every `Slot<T>` that `selector` picks is wrapped by a patch.
///
/// [`ModuleTreeExt::apply`] runs it all or nothing:
/// 1. no slot picked is [`TreeError::NoMatch`], listing the nearest `T` slot paths;
/// 2. a picked slot already holding this patch is [`TreeError::AlreadyPatched`] unless
///    [`allow_stacking`](Self::allow_stacking);
/// 3. a picked slot tied to a node the rule does not patch follows [`TiePolicy`];
/// 4. the optional [`check`](Self::check) runs on every picked slot;
/// 5. then the patch closure runs on each slot in the model's order; when it refuses at
///    one, every slot patched before is unpatched again and [`TreeError::PatchFailed`]
///    names the path. Nothing is changed before steps 1-4 pass.
///
/// The closure gets the slot's path and its content, and returns the content wrapped, or
/// hands it back in [`Refused`] with an error. `name` must be the `NAME` of the patch the
/// closure applies (checked after each wrap).
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{patch, Layer, ModuleTree, tree::ModuleTreeExt, tree::Rule, tree::Selector, Slot};
///
/// #[patch(from = L, module_t)]
/// struct Frozen<L: Layer> {}
///
/// #[derive(ModuleTree)]
/// struct Attention { q: Slot<nn::Linear>, k: Slot<nn::Linear>, v: Slot<nn::Linear> }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = |name: &str| Slot::new(nn::linear(vs.root() / name, 4, 4, Default::default()));
/// let mut attn = Attention { q: linear("q"), k: linear("k"), v: linear("v") };
/// let rule = Rule::<nn::Linear>::wrap(Selector::glob("{q,v}")?, "Frozen", |_path, base| Frozen { base });
/// let report = attn.apply(&rule)?;
/// assert_eq!(report.paths(), ["q", "v"]);
/// assert!(attn.apply(&rule).is_err()); // already patched: stacking must be asked for
/// assert_eq!(attn.unpatch_all().patches(), 2);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct Rule<T: 'static> {
    name: String,
    selector: Selector,
    patch: Box<PatchFn<T>>,
    check: Option<Box<CheckFn<T>>>,
    stacking: bool,
    tie: TiePolicy,
    variables: Option<Arc<Mutex<nn::Variables>>>,
}

impl<T: Parameters + Any + Send> Rule<T> {
    /// A rule wrapping every `T` slot `selector` picks with `patch(path, content)`, which
    /// may refuse (handing the content back). `name` is the patch's `NAME`.
    pub fn new<F>(selector: Selector, name: impl Into<String>, patch: F) -> Self
    where
        F: Fn(&str, DynLayer<T>) -> std::result::Result<DynLayer<T>, Refused<T>> + 'static,
    {
        Rule {
            name: name.into(),
            selector,
            patch: Box::new(patch),
            check: None,
            stacking: false,
            tie: TiePolicy::Refuse,
            variables: None,
        }
    }

    /// A rule whose patch cannot fail: `wrap(path, content)` returns the patched layer.
    pub fn wrap<L, F>(selector: Selector, name: impl Into<String>, wrap: F) -> Self
    where
        L: Layer<Root = T>,
        F: Fn(&str, DynLayer<T>) -> L + 'static,
    {
        Rule::new(selector, name, move |path, content| {
            Ok(wrap(path, content).into_content())
        })
    }

    /// A check run on every picked slot before any is changed (e.g. that a rank fits the
    /// layer's shape); its first error is returned, naming nothing changed.
    pub fn check<F>(mut self, check: F) -> Self
    where
        F: Fn(&str, &Slot<T>) -> Result<()> + 'static,
    {
        self.check = Some(Box::new(check));
        self
    }

    /// Lets the rule patch slots that already hold its patch (a second layer on top).
    pub fn allow_stacking(mut self) -> Self {
        self.stacking = true;
        self
    }

    /// How to treat tied tensors (default [`TiePolicy::Refuse`]).
    pub fn tie(mut self, policy: TiePolicy) -> Self {
        self.tie = policy;
        self
    }

    /// The VarStore the patch closure registers tensors in: when the rule is rolled back,
    /// the tensors of the patches it removes are taken out of it again.
    pub fn var_store(mut self, vs: &nn::VarStore) -> Self {
        self.variables = Some(vs.variables_.clone());
        self
    }

    /// The patch's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
}

impl<T: 'static> fmt::Debug for Rule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("slot_type", &short_type_name(std::any::type_name::<T>()))
            .field("selector", &self.selector)
            .field("stacking", &self.stacking)
            .field("tie", &self.tie)
            .finish_non_exhaustive()
    }
}

/// What [`ModuleTreeExt::apply`] patched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The rule's patch name.
    pub rule: String,
    /// Each patched slot's path and its patch names afterwards, outermost first.
    pub patched: Vec<(String, Vec<&'static str>)>,
}

impl ApplyReport {
    /// The patched slots' paths, in the model's order.
    pub fn paths(&self) -> Vec<&str> {
        self.patched.iter().map(|(path, _)| path.as_str()).collect()
    }

    /// How many slots were patched.
    pub fn len(&self) -> usize {
        self.patched.len()
    }

    /// Whether no slot was patched (never, for a report `apply` returned).
    pub fn is_empty(&self) -> bool {
        self.patched.is_empty()
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} patched {} slot(s): {}",
            self.rule,
            self.patched.len(),
            self.paths().join(", ")
        )
    }
}

/// The VarStore path of a slot's dotted path under `root`: `path_in(&vs.root(),
/// "blocks.0.attn.q")` is `vs.root() / "blocks" / "0" / "attn" / "q"`, where a patch closure
/// registers the tensors it adds (so they are named `blocks.0.attn.q.<name>`).
///
/// ```
/// use tch::{nn, Device};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = tch_patch::tree::path_in(&vs.root(), "blocks.0.attn.q");
/// assert_eq!(path.path("scale"), "blocks.0.attn.q.scale");
/// ```
pub fn path_in<'a>(root: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted
        .split('.')
        .filter(|segment| !segment.is_empty())
        .fold(root.clone(), |path, segment| path / segment)
}

pub(crate) fn apply_rule<M, T>(model: &mut M, rule: &Rule<T>) -> Result<ApplyReport>
where
    M: ModuleTree + ?Sized,
    T: Parameters + Any + Send,
{
    apply_tracked(model, rule).map(|(report, _)| report)
}

/// Slots a successful rule patched: (index among the model's slots, number of layers the
/// rule put on it), enough to undo the rule later.
pub(crate) type Undo = Vec<(usize, usize)>;

/// Applies the rule and says how to undo it.
pub(crate) fn apply_tracked<M, T>(model: &mut M, rule: &Rule<T>) -> Result<(ApplyReport, Undo)>
where
    M: ModuleTree + ?Sized,
    T: Parameters + Any + Send,
{
    let chosen = plan(model, rule)?;
    let mut slots: Vec<SlotMut<'_>> = model.slots_mut();
    let mut done: Undo = Vec::new();
    for &index in &chosen {
        let SlotMut { path, slot } = &mut slots[index];
        let slot = slot.downcast_mut::<T>().expect("plan picked T slots only");
        match patch_one(rule, path, slot) {
            Ok(added) => done.push((index, added)),
            Err(error) => {
                for &(earlier, added) in done.iter().rev() {
                    let slot = slots[earlier].slot.downcast_mut::<T>().expect("a T slot");
                    peel(rule, slot, added);
                }
                return Err(error.into());
            }
        }
    }
    let patched = chosen
        .iter()
        .map(|&index| (slots[index].path.clone(), slots[index].slot.patch_names()))
        .collect();
    let report = ApplyReport {
        rule: rule.name.clone(),
        patched,
    };
    Ok((report, done))
}

/// Undoes what [`apply_tracked`] did (with nothing applied since, or that undone first).
pub(crate) fn undo<M, T>(model: &mut M, rule: &Rule<T>, undo: &Undo)
where
    M: ModuleTree + ?Sized,
    T: Parameters + Any + Send,
{
    let mut slots = model.slots_mut();
    for &(index, added) in undo.iter().rev() {
        if let Some(slot) = slots
            .get_mut(index)
            .and_then(|s| s.slot.downcast_mut::<T>())
        {
            peel(rule, slot, added);
        }
    }
}

/// Runs the rule's closure on one slot and returns how many layers it put on. The closure
/// must keep what it was given underneath (the same patch names over the same root
/// tensors); on any error the slot holds what it held before, except when the closure
/// broke that, which [`TreeError::NotWrapped`] reports.
fn patch_one<T>(rule: &Rule<T>, path: &str, slot: &mut Slot<T>) -> Result<usize, TreeError>
where
    T: Parameters + Any + Send,
{
    let names_before = slot.patch_names();
    let root_before = named_tensors(slot.root());
    slot.replace_with(|content| (rule.patch)(path, content))
        .map_err(|source| TreeError::PatchFailed {
            rule: rule.name.clone(),
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    let names = slot.patch_names();
    let root = named_tensors(slot.root());
    let kept = names.ends_with(&names_before)
        && root.len() == root_before.len()
        && root
            .iter()
            .zip(&root_before)
            .all(|(now, was)| now.name == was.name && now.tensor.is_set_to(&was.tensor));
    if !kept {
        return Err(TreeError::NotWrapped {
            rule: rule.name.clone(),
            path: path.to_owned(),
        });
    }
    let added = names.len() - names_before.len();
    if added > 0 && names[0] == rule.name {
        return Ok(added);
    }
    peel(rule, slot, added);
    Err(TreeError::WrongPatchName {
        rule: rule.name.clone(),
        path: path.to_owned(),
        produced: names.first().copied().filter(|_| added > 0),
    })
}

/// Peels `layers` patches off the slot, taking their tensors out of the rule's VarStore.
fn peel<T: Parameters + Any + Send>(rule: &Rule<T>, slot: &mut Slot<T>, layers: usize) {
    for _ in 0..layers {
        let Some((_, added)) = AnySlot::peel_one(slot) else {
            break;
        };
        if let Some(variables) = &rule.variables {
            crate::varstore::forget_tensors(variables, &added);
        }
    }
}

/// Steps 1-4 of [`Rule`]: the indices (among the model's slots) the rule will patch, or the
/// reason it will patch none. Changes nothing.
fn plan<M, T>(model: &M, rule: &Rule<T>) -> Result<Vec<usize>>
where
    M: ModuleTree + ?Sized,
    T: Parameters + Any + Send,
{
    let nodes = Nodes::of(model);
    let slots: Vec<(&str, &dyn AnySlot)> = nodes.slots().map(|s| (s.path, s.slot)).collect();
    let is_t = |slot: &dyn AnySlot| slot.root_type_id() == TypeId::of::<T>();
    let mut chosen: BTreeSet<usize> = slots
        .iter()
        .enumerate()
        .filter(|(_, (path, slot))| is_t(*slot) && rule.selector.matches(path, *slot))
        .map(|(index, _)| index)
        .collect();
    if chosen.is_empty() {
        return Err(no_match(rule, &slots).into());
    }
    let entries = tensor_entries(&nodes);
    let ties = EntryTies::new(&entries);
    // Node index (in `nodes`) of each slot, to tell which slot owns a tensor.
    let slot_nodes: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| matches!(node.node, TreeNode::Slot(_)))
        .map(|(index, _)| index)
        .collect();
    let slot_of_node = |node: usize| slot_nodes.iter().position(|&n| n == node);
    // In the model's order, so the first problem reported is the first in the model.
    let mut queue: VecDeque<usize> = chosen.iter().copied().collect();
    while let Some(index) = queue.pop_front() {
        let (path, slot) = slots[index];
        if !rule.stacking && slot.patch_names().iter().any(|name| *name == rule.name) {
            return Err(TreeError::AlreadyPatched {
                path: path.to_owned(),
                patch: rule.name.clone(),
            }
            .into());
        }
        if rule.tie == TiePolicy::Allow {
            continue;
        }
        for (tensor, other) in ties.partners_of_root(&entries, slot_nodes[index], path, slot) {
            let partner = slot_of_node(other.owner);
            if partner.is_some_and(|p| chosen.contains(&p)) {
                continue;
            }
            let reason = match partner {
                Some(p) if rule.tie == TiePolicy::PatchAll && is_t(slots[p].1) => {
                    chosen.insert(p);
                    queue.push_back(p);
                    continue;
                }
                Some(p) if is_t(slots[p].1) => "the rule does not pick".to_owned(),
                Some(p) => format!(
                    "is a `{}` slot, which a `{}` rule cannot patch",
                    short_type_name(slots[p].1.root_type_name()),
                    short_type_name(std::any::type_name::<T>())
                ),
                None => "is not in a slot, so it cannot be patched".to_owned(),
            };
            return Err(TreeError::TiedWeights {
                path: path.to_owned(),
                tensor,
                tied_to: other.name.clone(),
                reason,
            }
            .into());
        }
    }
    if let Some(check) = &rule.check {
        for &index in &chosen {
            let (path, slot) = slots[index];
            check(path, slot.downcast_ref::<T>().expect("a T slot"))?;
        }
    }
    Ok(chosen.into_iter().collect())
}

fn no_match<T: 'static>(rule: &Rule<T>, slots: &[(&str, &dyn AnySlot)]) -> TreeError {
    no_match_of(
        &rule.name,
        &rule.selector,
        &[TypeId::of::<T>()],
        short_type_name(std::any::type_name::<T>()),
        slots,
    )
}

/// The [`TreeError::NoMatch`] of a rule named `rule` that patches slots whose layer type
/// is one of `types` (named `slot_type`) and whose `selector` picked none of them.
pub(crate) fn no_match_of(
    rule: &str,
    selector: &Selector,
    types: &[TypeId],
    slot_type: String,
    slots: &[(&str, &dyn AnySlot)],
) -> TreeError {
    let patches = |slot: &dyn AnySlot| types.contains(&slot.root_type_id());
    let other_types = slots
        .iter()
        .filter(|(path, slot)| !patches(*slot) && selector.matches(path, *slot))
        .map(|(path, slot)| ((*path).to_owned(), short_type_name(slot.root_type_name())))
        .collect();
    let candidates = slots
        .iter()
        .filter(|(_, slot)| patches(*slot))
        .map(|(path, _)| *path);
    TreeError::NoMatch {
        rule: rule.to_owned(),
        selector: selector.to_string(),
        slot_type,
        nearest: nearest(selector, candidates, 5),
        other_types,
    }
}
