//! From a patch string to a patched model. A patch whose config says which patch type it
//! builds (`#[derive(PatchArgs)]` with `#[patch_args(patch = ...)]`) is registered with one
//! `SlotRule` per layer type that patch wraps, in any crate, with no central list; the
//! rule of a spec covers every one of those types, and a chain of specs is applied all or
//! nothing.
use super::{PatchArgs, PatchSpec, PatchStringError, Registry};
use crate::error::Result;
use crate::params::Parameters;
use crate::patch_trait::Patch;
use crate::patches::BuildPatch;
use crate::tree::{
    apply_chain, no_match_of, path_in, short_type_name, AnyRule, AnySlot, ApplyReport, DynLayer,
    Nodes, Refused, Rule, Selector, TreeError, Undo,
};
use crate::varstore::SharedStore;
use crate::{Layer, ModuleTree};
use std::any::{Any, TypeId};
use std::fmt;
use tch::nn;

/// Parses `patches` (a `;`-separated chain such as
/// `lora(rank=8, alpha=16, targets="*.attn.{q,v}"); bias_only(targets="*.mlp.*")`), checks
/// every spec against the registry, then applies them in order to `model`, registering
/// what they add in `vs` under each slot's path. All or nothing: on any error (a bad
/// string, a glob that matches no slot, a slot of a layer type the patch does not wrap, a
/// slot already patched, a failing constructor) every patch applied so far is undone and
/// the error is returned.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{apply_patch_string, ModuleTree, Parameters, Slot};
///
/// #[derive(ModuleTree, Parameters)]
/// struct Attention { q: Slot<nn::Linear>, k: Slot<nn::Linear>, v: Slot<nn::Linear> }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = |name: &str| Slot::new(nn::linear(vs.root() / name, 8, 8, Default::default()));
/// let mut attn = Attention { q: linear("q"), k: linear("k"), v: linear("v") };
/// let reports = apply_patch_string(&mut attn, &vs, r#"lora(rank=2, targets="{q,v}")"#)?;
/// assert_eq!(reports[0].paths(), ["q", "v"]);
/// assert!(vs.variables().contains_key("q.lora_a"));
/// assert_eq!(attn.q.patch_name(), Some("lora"));
///
/// let typo = apply_patch_string(&mut attn, &vs, r#"bias_only(targets="{x,y}")"#);
/// assert!(typo.unwrap_err().to_string().contains("matched no `Linear` slot"));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn apply_patch_string(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    patches: &str,
) -> Result<Vec<ApplyReport>> {
    let specs = Registry::global()?.parse(patches)?;
    apply_specs(model, vs, &specs)
}

/// Applies checked specs (see [`apply_patch_string`]), all or nothing.
pub fn apply_specs(
    model: &mut dyn ModuleTree,
    vs: &nn::VarStore,
    specs: &[PatchSpec],
) -> Result<Vec<ApplyReport>> {
    let rules = specs
        .iter()
        .map(|spec| rule_for(spec, vs))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&dyn AnyRule> = rules.iter().map(|rule| rule.as_ref()).collect();
    apply_chain(model, &refs)
}

/// The rule of one checked spec, from the [global registry](Registry::global): it patches
/// every slot the spec's `targets` pick, of any layer type the patch was registered for.
/// An error if the patch is unknown ([`PatchStringError::UnknownPatch`](crate::registry::PatchStringError::UnknownPatch), listing
/// [`Registry::names`]) or registered without a patch type
/// ([`PatchStringError::NotApplicable`]).
pub fn rule_for(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    Registry::global()?.rule(spec, vs)
}

impl Registry {
    /// See [`rule_for`].
    pub(crate) fn rule(&self, spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
        if self.schema(&spec.name).is_none() {
            return Err(self.unknown_patch(&spec.name, None).into());
        }
        if let Some(make) = self.node_rules.get(&spec.name) {
            return make(spec, vs);
        }
        let slot_rules = self
            .rules
            .get(&spec.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if slot_rules.is_empty() {
            return Err(PatchStringError::NotApplicable {
                patch: spec.name.clone(),
            }
            .into());
        }
        let selector = Selector::glob(&spec.targets)?;
        let rules = slot_rules
            .iter()
            .map(|slot_rule| {
                let rule = (slot_rule.make)(spec, &selector, vs)?;
                Ok(((slot_rule.root)(), slot_rule.short_name(), rule))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(SpecRule {
            name: spec.name.clone(),
            selector,
            rules,
        }))
    }
}

type MakeRule = fn(&PatchSpec, &Selector, &nn::VarStore) -> Result<Box<dyn AnyRule>>;

/// How a registered patch is applied to the slots of one layer type: what
/// `#[derive(PatchArgs)]` generates for each type its `patch = ...` wraps. Not public API.
#[doc(hidden)]
pub struct SlotRule {
    root: fn() -> TypeId,
    root_name: fn() -> &'static str,
    make: MakeRule,
}

impl SlotRule {
    /// For `Slot<T>`: wraps whatever the slot holds (bare or already patched) in `P`, built
    /// over the slot's content from config `C`, so patches stack within a slot.
    pub const fn stacking<C, P, T>() -> Self
    where
        C: PatchArgs + 'static,
        P: BuildPatch<DynLayer<T>, Config = C> + Layer<Root = T> + Patch,
        T: Parameters + Any + Send,
    {
        assert!(same_name(P::NAME, C::NAME), "{}", NAME_MISMATCH);
        SlotRule {
            root: TypeId::of::<T>,
            root_name: std::any::type_name::<T>,
            make: stacking::<C, P, T>,
        }
    }

    /// For `Slot<P::Base>`: builds `P` (a patch of one layer type, `#[patch(from =
    /// nn::Embedding)]`) over the slot's bare layer from config `C`, and refuses a slot
    /// that is already patched.
    pub const fn bare<C, P>() -> Self
    where
        C: PatchArgs + 'static,
        P: BuildPatch<P::Base, Config = C> + Layer<Root = P::Base> + Patch,
        P::Base: Layer<Root = P::Base>,
    {
        assert!(same_name(P::NAME, C::NAME), "{}", NAME_MISMATCH);
        SlotRule {
            root: TypeId::of::<P::Base>,
            root_name: std::any::type_name::<P::Base>,
            make: bare::<C, P>,
        }
    }

    /// The `TypeId` of the layer type this rule patches.
    pub(crate) fn root(&self) -> TypeId {
        (self.root)()
    }

    /// The short name of the layer type this rule patches (`Linear`).
    pub(crate) fn short_name(&self) -> String {
        short_type_name((self.root_name)())
    }
}

impl fmt::Debug for SlotRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotRule")
            .field("slot_type", &self.short_name())
            .finish_non_exhaustive()
    }
}

/// Why a [`SlotRule`] cannot be made: the patch type's `NAME` (what a slot reports it
/// holds, and what model adapters are saved under) must be the name patch strings use.
const NAME_MISMATCH: &str = "the patch type of `#[patch_args(patch = ...)]` is named otherwise \
    than the config: give it `#[patch(name = \"...\")]` with the config's `name`, so that patch \
    strings, slots' patch names and saved adapters agree";

/// Whether two names are the same, in a constant.
const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

fn stacking<C, P, T>(
    spec: &PatchSpec,
    selector: &Selector,
    vs: &nn::VarStore,
) -> Result<Box<dyn AnyRule>>
where
    C: PatchArgs + 'static,
    P: BuildPatch<DynLayer<T>, Config = C> + Layer<Root = T> + Patch,
    T: Parameters + Any + Send,
{
    let config = spec.config::<C>()?;
    let shared = SharedStore::of(vs);
    let rule = Rule::<T>::new(selector.clone(), P::NAME, move |path, content| {
        let store = shared.store();
        P::build(content, &path_in(&store.root(), path), &config)
            .map(Layer::into_content)
            .map_err(|failed| Refused::new(failed.error, failed.base))
    });
    Ok(Box::new(rule.var_store(vs)))
}

fn bare<C, P>(spec: &PatchSpec, selector: &Selector, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>>
where
    C: PatchArgs + 'static,
    P: BuildPatch<P::Base, Config = C> + Layer<Root = P::Base> + Patch,
    P::Base: Layer<Root = P::Base>,
{
    let config = spec.config::<C>()?;
    let shared = SharedStore::of(vs);
    let rule = Rule::<P::Base>::new(selector.clone(), P::NAME, move |path, content| {
        let base = content.into_root().map_err(|patched| {
            let error = TreeError::AlreadyPatched {
                path: path.to_owned(),
                patch: patched.patch_names().join(" over "),
            };
            Refused::new(error.into(), patched)
        })?;
        let store = shared.store();
        P::build(base, &path_in(&store.root(), path), &config)
            .map(Layer::into_content)
            .map_err(|failed| Refused::new(failed.error, failed.base.into_content()))
    });
    Ok(Box::new(rule.var_store(vs)))
}

/// The rule of one spec: the patch's rule for each layer type it was registered for,
/// applied as one, all or nothing.
struct SpecRule {
    name: String,
    selector: Selector,
    /// Per layer type, in registration order: its `TypeId`, short name and rule.
    rules: Vec<(TypeId, String, Box<dyn AnyRule>)>,
}

impl SpecRule {
    /// The layer types, for messages: `Linear`, or `Conv2D or MyBlock`.
    fn slot_types(&self) -> String {
        let names: Vec<&str> = self
            .rules
            .iter()
            .map(|(_, name, _)| name.as_str())
            .collect();
        names.join(" or ")
    }

    /// Which of the rules have slots to patch. An error, before anything changes, if the
    /// selector picks no slot of a type the patch wraps ([`TreeError::NoMatch`]) or picks
    /// a slot of another type ([`PatchStringError::UnpatchableSlot`]).
    fn plan(&self, model: &dyn ModuleTree) -> Result<Vec<bool>> {
        let nodes = Nodes::of(model);
        let slots: Vec<(&str, &dyn AnySlot)> = nodes.slots().map(|s| (s.path, s.slot)).collect();
        let mut used = vec![false; self.rules.len()];
        let mut unpatchable = None;
        for &(path, slot) in &slots {
            if !self.selector.matches(path, slot) {
                continue;
            }
            match self
                .rules
                .iter()
                .position(|(type_id, ..)| *type_id == slot.root_type_id())
            {
                Some(index) => used[index] = true,
                None => {
                    unpatchable.get_or_insert((path, slot));
                }
            }
        }
        if !used.contains(&true) {
            let types: Vec<TypeId> = self.rules.iter().map(|(type_id, ..)| *type_id).collect();
            return Err(no_match_of(
                &self.name,
                &self.selector,
                &types,
                self.slot_types(),
                &slots,
            )
            .into());
        }
        if let Some((path, slot)) = unpatchable {
            return Err(PatchStringError::UnpatchableSlot {
                patch: self.name.clone(),
                path: path.to_owned(),
                slot_type: short_type_name(slot.root_type_name()),
                accepted: self.rules.iter().map(|(_, name, _)| name.clone()).collect(),
            }
            .into());
        }
        Ok(used)
    }
}

impl AnyRule for SpecRule {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "{} on `{}` slots picked by {}",
            self.name,
            self.slot_types(),
            self.selector
        )
    }

    fn apply_undoable(&self, model: &mut dyn ModuleTree) -> Result<(ApplyReport, Undo)> {
        let used = self.plan(model)?;
        let mut done: Vec<(usize, Undo)> = Vec::new();
        let mut patched = Vec::new();
        for (index, (_, _, rule)) in self.rules.iter().enumerate() {
            if !used[index] {
                continue;
            }
            match rule.apply_undoable(model) {
                Ok((report, tracked)) => {
                    // Both in the order of the rule's slots: pair each entry with its slot.
                    patched.extend(tracked.iter().map(|(slot, _)| *slot).zip(report.patched));
                    done.push((index, tracked));
                }
                Err(error) => {
                    for (earlier, tracked) in done.iter().rev() {
                        self.rules[*earlier].2.undo(model, tracked);
                    }
                    return Err(error);
                }
            }
        }
        patched.sort_by_key(|(slot, _)| *slot);
        let report = ApplyReport {
            rule: self.name.clone(),
            patched: patched.into_iter().map(|(_, entry)| entry).collect(),
        };
        Ok((
            report,
            done.into_iter().flat_map(|(_, tracked)| tracked).collect(),
        ))
    }

    /// Each layer type's rule undoes the slots of its type (the others it leaves alone).
    fn undo(&self, model: &mut dyn ModuleTree, tracked: &Undo) {
        for (_, _, rule) in self.rules.iter().rev() {
            rule.undo(model, tracked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patches::{Lora, LoraConfig};
    use tch::Device;

    #[test]
    fn a_layer_type_registered_twice_for_one_patch_is_refused() {
        const TWICE: &[SlotRule] = &[
            SlotRule::stacking::<LoraConfig, Lora<DynLayer<nn::Linear>>, nn::Linear>(),
            SlotRule::stacking::<LoraConfig, Lora<DynLayer<nn::Linear>>, nn::Linear>(),
        ];
        let mut registry = Registry::new();
        let error = registry
            .add_with_rules(LoraConfig::schema(), TWICE.iter().collect())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid schema of patch \"lora\": it is registered twice for `Linear` slots"
        );
        assert_eq!(registry.names().count(), 0, "the registry is unchanged");
        registry
            .add_with_rules(LoraConfig::schema(), TWICE[..1].iter().collect())
            .unwrap();
        assert_eq!(registry.slot_types("lora").unwrap(), ["Linear"]);
    }

    #[test]
    fn extra_slot_types_need_a_registered_patch_and_a_new_layer_type() {
        const LINEAR: &[SlotRule] = &[SlotRule::stacking::<
            LoraConfig,
            Lora<DynLayer<nn::Linear>>,
            nn::Linear,
        >()];
        let extra = super::super::ExtraSlotRules::new("lora", || "my_crate::Extra", LINEAR);
        let mut registry = Registry::new();
        let error = registry.add_extra_rules(&extra).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the registry of patches is invalid: `patch_over!` of `my_crate::Extra` adds slot types to \
             patch `lora`, which is not registered"
        );
        registry
            .add_with_rules(LoraConfig::schema(), LINEAR.iter().collect())
            .unwrap();
        let error = registry.add_extra_rules(&extra).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid schema of patch \"lora\": it is registered twice for `Linear` slots (the \
             second by `patch_over!` of `my_crate::Extra`)"
        );
        assert_eq!(
            registry.slot_types("lora").unwrap(),
            ["Linear"],
            "unchanged"
        );
    }

    #[test]
    fn a_spec_rule_describes_every_layer_type_it_patches() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = LoraConfig::default().to_spec("*.q").unwrap();
        let rule = Registry::global().unwrap().rule(&spec, &vs).unwrap();
        assert_eq!(
            rule.describe(),
            "lora on `Linear or Embedding` slots picked by glob `*.q`"
        );
        assert!(same_name("lora", "lora") && !same_name("lora", "lorb") && !same_name("a", "ab"));
    }
}
