//! From a patch string to a patched model: each registered patch name has a rule factory
//! (submitted with `inventory`, so user crates add their own without a central list), and
//! a chain of specs is applied all or nothing.
use super::{PatchSpec, Registry};
use crate::error::{PatchError, Result};
use crate::patch::Patch;
use crate::patches::{BiasOnly, BuildPatch, DropoutBefore, Lora, MostlyFrozenEmbedding};
use crate::tree::{
    apply_chain, path_in, AnyRule, ApplyReport, DynLayer, Layer, ModuleTree, Refused, Rule,
    Selector,
};
use std::any::Any;
use std::sync::{Arc, Mutex};
use tch::{nn, Device};

/// Makes the rule that applies one registered patch (by name) to a model.
pub struct RuleFactory {
    /// The patch name, as registered by its `#[derive(PatchArgs)]` config.
    pub name: &'static str,
    /// Builds the rule for a checked spec; the patch's tensors go into `vs`.
    pub make: fn(&PatchSpec, &nn::VarStore) -> Result<Box<dyn AnyRule>>,
}

inventory::collect!(RuleFactory);

inventory::submit! { RuleFactory { name: "lora", make: stacking_rule::<Lora<DynLayer<nn::Linear>>> } }
inventory::submit! { RuleFactory { name: "bias_only", make: stacking_rule::<BiasOnly<DynLayer<nn::Linear>>> } }
inventory::submit! { RuleFactory { name: "dropout_before", make: stacking_rule::<DropoutBefore<DynLayer<nn::Linear>>> } }
inventory::submit! { RuleFactory { name: "mostly_frozen_embedding", make: bare_rule::<nn::Embedding, MostlyFrozenEmbedding> } }

/// Parses `patches` (a `;`-separated chain such as
/// `lora(rank=8, alpha=16, targets="*.attn.{q,v}"); bias_only(targets="*.mlp.*")`), checks
/// every spec against the registry, then applies them in order to `model`, registering
/// what they add in `vs` under each slot's path. All or nothing: on any error (a bad
/// string, a glob that matches no slot, a slot already patched, a failing constructor)
/// every patch applied so far is undone and the error is returned.
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

/// The rule of one checked spec, from the patch's registered [`RuleFactory`].
pub fn rule_for(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>> {
    let factory = inventory::iter::<RuleFactory>()
        .find(|factory| factory.name == spec.name)
        .ok_or_else(|| PatchError::UnknownPatch {
            name: spec.name.clone(),
            column: None,
            known: inventory::iter::<RuleFactory>()
                .map(|f| f.name.to_owned())
                .collect(),
            nearest: None,
        })?;
    (factory.make)(spec, vs)
}

/// A VarStore that shares `vs`'s variables, for rule closures that outlive a borrow.
/// Its kind is the default (float): patches create their tensors from their base's kind.
struct SharedStore {
    variables: Arc<Mutex<nn::Variables>>,
    device: Device,
}

impl SharedStore {
    fn of(vs: &nn::VarStore) -> Self {
        SharedStore {
            variables: vs.variables_.clone(),
            device: vs.device(),
        }
    }

    fn store(&self) -> nn::VarStore {
        let mut store = nn::VarStore::new(self.device);
        store.variables_ = self.variables.clone();
        store
    }
}

/// A rule for a patch generic over what a slot holds: it wraps the slot's content as it
/// is (bare or already patched), so patches stack within a slot.
pub fn stacking_rule<P>(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>>
where
    P: BuildPatch<DynLayer<nn::Linear>> + Layer<Root = nn::Linear> + Patch,
{
    let config = spec.config::<P::Config>()?;
    let shared = SharedStore::of(vs);
    let rule = Rule::<nn::Linear>::new(
        Selector::glob(&spec.targets)?,
        P::NAME,
        move |path, content| {
            let store = shared.store();
            P::build(content, &path_in(&store.root(), path), &config)
                .map(Layer::into_content)
                .map_err(|failed| Refused::new(failed.error, failed.base))
        },
    );
    Ok(Box::new(rule.var_store(vs)))
}

/// A rule for a patch of one concrete parent type `T`: it needs the slot's bare `T` and
/// refuses a slot that is already patched.
pub fn bare_rule<T, P>(spec: &PatchSpec, vs: &nn::VarStore) -> Result<Box<dyn AnyRule>>
where
    T: Layer<Root = T> + crate::params::Parameters + Any + Send,
    P: BuildPatch<T> + Layer<Root = T> + Patch,
{
    let config = spec.config::<P::Config>()?;
    let shared = SharedStore::of(vs);
    let rule = Rule::<T>::new(
        Selector::glob(&spec.targets)?,
        P::NAME,
        move |path, content| {
            let base = content.into_root().map_err(|patched| {
                let error = PatchError::AlreadyPatched {
                    path: path.to_owned(),
                    patch: patched.patch_names().join(" over "),
                };
                Refused::new(error, patched)
            })?;
            let store = shared.store();
            P::build(base, &path_in(&store.root(), path), &config)
                .map(Layer::into_content)
                .map_err(|failed| Refused::new(failed.error, failed.base.into_content()))
        },
    );
    Ok(Box::new(rule.var_store(vs)))
}
