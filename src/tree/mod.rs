//! Whole-model surgery: module trees with paths, patch slots, queries, rules, printing and
//! diffs.
//!
//! * [`Slot<T>`](crate::Slot) is a model field holding a `T` or any stack of patches over a `T`.
//! * `#[derive(ModuleTree)]` gives a model struct paths (`blocks.3.attn.q`, the dotted
//!   names of [`Parameters`](crate::Parameters)) and walks its slots.
//! * [`Selector`] picks slots by [`Glob`], regex, type or predicate; a [`Rule`] patches
//!   every slot it picks, all or nothing ([`ModuleTreeExt::apply`]), refusing silent zero
//!   matches, double patching and half-patched tied weights.
//! * [`print_tree`] shows the model with its patches, shapes, ties and counts;
//!   [`diff`] compares two models.
mod chain;
mod clone;
mod diff;
mod error;
mod glob;
pub(crate) mod hyper;
pub(crate) mod layer;
mod node;
mod node_rule;
mod nodes;
mod print;
mod query;
mod rebind;
pub(crate) mod rebuild;
mod rule;
mod select;
pub(crate) mod slot;
mod tch_hyper;
mod ties;
pub(crate) mod visit;

pub use chain::{apply_chain, AnyRule};
pub use clone::CloneMode;
pub use diff::{diff, Change, TreeDiff};
pub use error::TreeError;
pub use glob::Glob;
pub use hyper::{HyperList, HyperValue, Hyperparameters};

pub use layer::SlotContent;
pub use node::{Node, NodeLayer};
pub use node_rule::{NodeChange, NodeRule};
pub use print::print_tree;
pub use query::{ModuleTreeExt, NodeRef, Nodes, SlotMut, SlotRef, UnpatchReport};
pub(crate) use rebind::rebind_rule;
pub use rebind::RebindReport;
pub use rebuild::{BadHyperparameter, HyperArgs, Rebuild};
pub use rule::path_in;
pub(crate) use rule::{no_match_of, Undo};
pub use rule::{ApplyReport, Rule, TiePolicy};
pub use select::Selector;
pub(crate) use slot::short_type_name;
pub use slot::{AnySlot, DynLayer, Refused};

pub use visit::{SlotVisitorMut, TreeNode, TreeVisitor};
