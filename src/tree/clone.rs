//! Clones of symbolic models (PyGlove's `clone(deep=True)` and a structural clone): a
//! [`Node`] or a [`Sequential`] rebuilt into another VarStore path, with the tensors
//! copied or freshly initialized.
use super::node::{Node, NodeLayer};
use super::rebind::layer_hyperparameters;
use super::rebuild::{can_rebuild, rebuild};
use super::slot::short_type_name;
use super::TreeError;
use crate::error::{PatchError, Result};
use crate::layers::Sequential;
use crate::params::{join_name, named_tensors};
use tch::nn;

/// What a clone keeps of the original's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    /// Every tensor copied (values, and whether it requires grad): an independent twin.
    Deep,
    /// The same layers and hyperparameters, every tensor freshly initialized.
    Structure,
}

impl Node {
    /// A copy of this node's layer, its tensors in `root`'s VarStore at `root / <its tensor
    /// names>` (so a clone of the whole model into an empty VarStore has the original's
    /// names). The clone holds no history: it is a new original.
    ///
    /// Layers it rebuilds: tch's Linear, Embedding and LayerNorm, this crate's
    /// [`layers`](crate::layers), and sequences of those; anything else (a slot, a closure,
    /// a user layer) is [`TreeError::CannotClone`], found before any tensor is made. A name
    /// the VarStore already holds is [`PatchError::NameTaken`]. On error nothing was added.
    ///
    /// ```
    /// use tch::{nn, Device};
    /// use tch_patch::{layers, tree::CloneMode, tree::Node};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let node = Node::new(layers::seq().add(nn::linear(vs.root() / 0, 4, 2, Default::default())).add(layers::Relu));
    /// let other = nn::VarStore::new(Device::Cpu);
    /// let twin = node.clone_into(&other.root(), CloneMode::Deep)?;
    /// assert!(other.variables()["0.weight"].equal(&vs.variables()["0.weight"]));
    /// assert_ne!(other.variables()["0.weight"].data_ptr(), vs.variables()["0.weight"].data_ptr());
    /// # let _ = twin;
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn clone_into(&self, root: &nn::Path, mode: CloneMode) -> Result<Node> {
        check_cloneable(self.content(), "")?;
        check_names_free(self.content(), root)?;
        Ok(Node::from_boxed(clone_layer(
            self.content(),
            root,
            "",
            mode,
        )?))
    }
}

impl Sequential {
    /// A copy of the sequence and every child, as [`Node::clone_into`] makes it.
    pub fn clone_into(&self, root: &nn::Path, mode: CloneMode) -> Result<Sequential> {
        check_cloneable(self, "")?;
        check_names_free(self, root)?;
        let cloned = clone_layer(self, root, "", mode)?;
        Ok(*cloned
            .into_any()
            .downcast::<Sequential>()
            .expect("a sequence clones to a sequence"))
    }
}

/// Every layer at and under `layer` is one a clone rebuilds.
fn check_cloneable(layer: &dyn NodeLayer, path: &str) -> Result<(), TreeError> {
    if let Some(sequence) = layer.as_any().downcast_ref::<Sequential>() {
        for (index, node) in sequence.nodes().iter().enumerate() {
            check_cloneable(node.content(), &join_name(path, &index.to_string()))?;
        }
        return Ok(());
    }
    if can_rebuild(layer) {
        return Ok(());
    }
    Err(TreeError::CannotClone {
        path: path.to_owned(),
        layer: short_type_name(layer.type_name()),
    })
}

/// No tensor name the clone will take is held by `root`'s VarStore already (tch would
/// rename it silently, and the clone would not load from the original's checkpoint).
fn check_names_free(layer: &dyn NodeLayer, root: &nn::Path) -> Result<()> {
    for named in named_tensors(layer) {
        let (prefix, last) = named.name.rsplit_once('.').unwrap_or(("", &named.name));
        let path = super::rule::path_in(root, prefix);
        if path.get(last).is_some() {
            return Err(PatchError::NameTaken {
                name: path.path(last),
            });
        }
    }
    Ok(())
}

fn clone_layer(
    layer: &dyn NodeLayer,
    root: &nn::Path,
    path: &str,
    mode: CloneMode,
) -> Result<Box<dyn NodeLayer>> {
    if let Some(sequence) = layer.as_any().downcast_ref::<Sequential>() {
        let mut nodes = Vec::with_capacity(sequence.len());
        for (index, node) in sequence.nodes().iter().enumerate() {
            let name = index.to_string();
            let child = clone_layer(
                node.content(),
                &(root / &name),
                &join_name(path, &name),
                mode,
            )?;
            nodes.push(Node::from_boxed(child));
        }
        return Ok(Box::new(Sequential::from_nodes(nodes)));
    }
    let hyper = layer_hyperparameters(layer);
    let cloned = rebuild(layer, root, &hyper).ok_or_else(|| TreeError::CannotClone {
        path: path.to_owned(),
        layer: short_type_name(layer.type_name()),
    })?;
    if mode == CloneMode::Deep {
        let _no_grad = tch::no_grad_guard();
        for (mut to, from) in named_tensors(&*cloned)
            .into_iter()
            .zip(named_tensors(layer))
            .map(|(to, from)| (to.tensor, from.tensor))
        {
            to.f_copy_(&from).map_err(PatchError::torch(format!(
                "copying `{}`",
                join_name(path, "…")
            )))?;
            if !from.requires_grad() {
                let _ = to.set_requires_grad(false);
            }
        }
    }
    Ok(cloned)
}
