//! Whole-model operations on [`Node`]s: find them by path and by what they hold, replace or
//! wrap every one that matches (all or nothing), undo.
use super::glob::Glob;
use super::node::{Node, NodeLayer};
use super::slot::short_type_name;
use super::visit::{ModuleTree, SlotVisitorMut};
use super::TreeError;
use crate::error::Result;
use std::any::Any;

/// Every node `pick(path, node)` accepts, with its path, in the model's order; a node it
/// refuses is entered, so the nodes inside it are offered too.
pub(super) fn nodes_mut<'a, M: ModuleTree + ?Sized>(
    model: &'a mut M,
    mut pick: impl FnMut(&str, &Node) -> bool,
) -> Vec<(String, &'a mut Node)> {
    let mut found = Vec::new();
    let mut keep = |path: &str, node: &'a mut Node| found.push((path.to_owned(), node));
    let mut pick = |path: &str, node: &Node| pick(path, node);
    model.visit_slots_mut(&mut SlotVisitorMut::for_nodes(&mut pick, &mut keep));
    found
}

/// The path and short type name of every node at any depth of `model`, in its order.
pub(super) fn every_node<M: ModuleTree + ?Sized>(model: &mut M) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    nodes_mut(model, |path, node| {
        seen.push((path.to_owned(), short_type_name(node.type_name())));
        false
    });
    seen
}

/// The node at `path`, or [`TreeError::NoSuchNode`] listing the node paths there are.
pub(super) fn node_mut<'a, M: ModuleTree + ?Sized>(
    model: &'a mut M,
    path: &str,
) -> Result<&'a mut Node, TreeError> {
    let known: Vec<String> = every_node(model).into_iter().map(|(p, _)| p).collect();
    if !known.iter().any(|p| p == path) {
        return Err(TreeError::NoSuchNode {
            path: path.to_owned(),
            known,
        });
    }
    let mut found = nodes_mut(model, |p, _| p == path);
    Ok(found.swap_remove(0).1)
}

/// The nodes holding an `L` at a path `glob` matches, or [`TreeError::NoNodeMatch`] when
/// there is none (a rule that matches nothing is a mistake, never silently nothing).
fn matching<'a, L: crate::params::Parameters + Any + Send, M: ModuleTree + ?Sized>(
    model: &'a mut M,
    glob: &Glob,
) -> Result<Vec<(String, &'a mut Node)>, TreeError> {
    let nodes = every_node(model);
    let picked = nodes_mut(model, |path, node| {
        node.layer::<L>().is_some() && glob.matches(path)
    });
    if picked.is_empty() {
        return Err(TreeError::NoNodeMatch {
            glob: glob.as_str().to_owned(),
            layer: short_type_name(std::any::type_name::<L>()),
            nodes,
        });
    }
    Ok(picked)
}

/// See [`ModuleTreeExt::replace_nodes`](super::ModuleTreeExt::replace_nodes).
pub(super) fn replace_nodes<L, M, F>(model: &mut M, glob: &Glob, make: F) -> Result<Vec<String>>
where
    L: crate::params::Parameters + Any + Send,
    M: ModuleTree + ?Sized,
    F: FnMut(&str, &L) -> Result<Box<dyn NodeLayer>>,
{
    change_nodes(model, glob, make, Node::replace_boxed)
}

/// See [`ModuleTreeExt::wrap_nodes`](super::ModuleTreeExt::wrap_nodes).
pub(super) fn wrap_nodes<L, M, F>(model: &mut M, glob: &Glob, make: F) -> Result<Vec<String>>
where
    L: crate::params::Parameters + Any + Send,
    M: ModuleTree + ?Sized,
    F: FnMut(&str, &L) -> Result<(Vec<Node>, Vec<Node>)>,
{
    change_nodes(model, glob, make, |node, (before, after)| {
        node.wrap(before, after)
    })
}

/// Changes every node holding an `L` at a path `glob` matches with `change(node,
/// make(path, &layer))`; every `make` runs first, so an error changes nothing.
fn change_nodes<L, M, T>(
    model: &mut M,
    glob: &Glob,
    mut make: impl FnMut(&str, &L) -> Result<T>,
    change: impl Fn(&mut Node, T),
) -> Result<Vec<String>>
where
    L: crate::params::Parameters + Any + Send,
    M: ModuleTree + ?Sized,
{
    let picked = matching::<L, M>(model, glob)?;
    let mut made = Vec::with_capacity(picked.len());
    for (path, node) in &picked {
        let old = node.layer::<L>().expect("picked by type");
        made.push(make(path, old)?);
    }
    Ok(picked
        .into_iter()
        .zip(made)
        .map(|((path, node), value)| {
            change(node, value);
            path
        })
        .collect())
}

/// See [`ModuleTreeExt::undo_nodes`](super::ModuleTreeExt::undo_nodes); with `vs`, the
/// tensors the undone layers held that the restored ones do not are taken out of it.
pub(super) fn undo_nodes<M: ModuleTree + ?Sized>(
    model: &mut M,
    vs: Option<&tch::nn::VarStore>,
) -> usize {
    let mut undone = 0;
    loop {
        // A changed node is not entered: the nodes inside what it holds now are not the
        // model's once it is undone; those inside what it held come up in the next pass.
        let changed = nodes_mut(model, |_, node| node.changes() > 0);
        if changed.is_empty() {
            return undone;
        }
        for (_, node) in changed {
            let before = crate::named_tensors(&*node);
            undone += node.undo_all();
            if let Some(vs) = vs {
                let after = crate::named_tensors(&*node);
                crate::varstore::forget_dropped(&vs.variables_, before, &after);
            }
        }
    }
}
