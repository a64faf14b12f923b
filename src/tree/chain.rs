//! Several rules, of different layer types, applied as one: all or nothing.
use super::rule::{apply_tracked, undo, ApplyReport, Rule, Undo};
use super::slot::short_type_name;
use super::visit::ModuleTree;
use crate::error::Result;
use crate::params::Parameters;
use std::any::Any;

/// A [`Rule`] with its layer type erased, so rules for `nn::Linear`, `nn::Embedding`, ...
/// can be listed together (e.g. built by a registry from a patch string) and applied in a
/// chain with [`apply_chain`].
pub trait AnyRule {
    /// The rule's patch name.
    fn name(&self) -> &str;
    /// What the rule does, e.g. ``Scaled on `Linear` slots picked by glob `*.q` ``.
    fn describe(&self) -> String;
    /// Applies the rule; also returns what undoes it.
    #[doc(hidden)]
    fn apply_undoable(&self, model: &mut dyn ModuleTree) -> Result<(ApplyReport, Undo)>;
    /// Undoes an application of this rule.
    #[doc(hidden)]
    fn undo(&self, model: &mut dyn ModuleTree, undo: &Undo);
}

impl<T: Parameters + Any + Send> AnyRule for Rule<T> {
    fn name(&self) -> &str {
        Rule::name(self)
    }
    fn describe(&self) -> String {
        format!(
            "{} on `{}` slots picked by {}",
            self.name(),
            short_type_name(std::any::type_name::<T>()),
            self.selector()
        )
    }
    fn apply_undoable(&self, model: &mut dyn ModuleTree) -> Result<(ApplyReport, Undo)> {
        apply_tracked(model, self)
    }
    fn undo(&self, model: &mut dyn ModuleTree, tracked: &Undo) {
        undo(model, self, tracked);
    }
}

/// Applies `rules` in order, all or nothing: when one fails, the rules before it are undone
/// (latest first) and its error is returned, so the model is as it was. Later rules see
/// the patches of earlier ones (and may stack on them).
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{tree::apply_chain, patch, tree::AnyRule, Layer, ModuleTree, tree::ModuleTreeExt, tree::Rule, tree::Selector, Slot};
///
/// #[patch(from = L, module_t)]
/// struct Marked<L: Layer> {}
///
/// #[derive(ModuleTree)]
/// struct Lm { embed: Slot<nn::Embedding>, head: Slot<nn::Linear> }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut lm = Lm {
///     embed: Slot::new(nn::embedding(vs.root() / "embed", 8, 4, Default::default())),
///     head: Slot::new(nn::linear(vs.root() / "head", 4, 8, Default::default())),
/// };
/// let on_embed = Rule::<nn::Embedding>::wrap(Selector::glob("embed")?, "Marked", |_, base| Marked { base });
/// let on_head = Rule::<nn::Linear>::wrap(Selector::glob("hed")?, "Marked", |_, base| Marked { base });
/// // The second rule matches nothing: the first is undone.
/// assert!(apply_chain(&mut lm, &[&on_embed, &on_head]).is_err());
/// assert!(!lm.embed.is_patched());
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn apply_chain(model: &mut dyn ModuleTree, rules: &[&dyn AnyRule]) -> Result<Vec<ApplyReport>> {
    let mut applied: Vec<(usize, Undo)> = Vec::new();
    let mut reports = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        match rule.apply_undoable(model) {
            Ok((report, tracked)) => {
                reports.push(report);
                applied.push((index, tracked));
            }
            Err(error) => {
                for (earlier, tracked) in applied.iter().rev() {
                    rules[*earlier].undo(model, tracked);
                }
                return Err(error);
            }
        }
    }
    Ok(reports)
}
