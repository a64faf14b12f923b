//! Clones of symbolic models (PyGlove's `clone(deep=True)` and a structural clone): a
//! [`Node`] or a [`Sequential`] rebuilt into another VarStore path, with the tensors
//! copied or freshly initialized.
use super::node::{Node, NodeLayer};
use super::rebind::layer_hyperparameters;
use super::rebuild::{rebuilder, slot_patches, HyperArgs};
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
    /// Layers it rebuilds: every layer that implements [`Rebuild`](super::Rebuild) (tch's
    /// Linear, Embedding, LayerNorm and convolutions, this crate's
    /// [`layers`](crate::layers), a layer of yours declared with
    /// [`leaf_layer!(rebuild: YourType)`](crate::leaf_layer)), an unpatched
    /// [`Slot`](crate::Slot) of one, and sequences of those; anything else (a closure, a
    /// layer without `Rebuild`) is [`TreeError::CannotClone`], a slot holding patches
    /// [`TreeError::PatchedSlot`] (clone before patching, then apply the patches to both),
    /// a layer whose [`Rebuild::check`](super::Rebuild::check) refuses its own
    /// hyperparameters [`TreeError::RebuildFailed`], all found before any tensor is made.
    /// A name the VarStore already holds is [`PatchError::NameTaken`]. On error nothing was
    /// added (unless a layer's `rebuild` fails after its `check` passed, or makes tensors
    /// of other names or shapes than the original's: [`TreeError::RebuildFailed`], and the
    /// tensors made before stay in `root`'s VarStore).
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
    if let Some(patches) = slot_patches(layer) {
        return Err(TreeError::PatchedSlot {
            action: "clone",
            path: path.to_owned(),
            patches,
        });
    }
    let Some(rebuilder) = rebuilder(layer) else {
        return Err(TreeError::CannotClone {
            path: path.to_owned(),
            layer: short_type_name(layer.type_name()),
        });
    };
    let hyper = layer_hyperparameters(layer);
    rebuilder
        .check_dyn(&HyperArgs::new(&hyper))
        .map_err(|bad| TreeError::RebuildFailed {
            path: path.to_owned(),
            layer: short_type_name(layer.type_name()),
            name: bad.name,
            reason: bad.reason,
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
    let failed = |name: String, reason: String| TreeError::RebuildFailed {
        path: path.to_owned(),
        layer: short_type_name(layer.type_name()),
        name,
        reason,
    };
    let cloned = rebuilder(layer)
        .ok_or_else(|| TreeError::CannotClone {
            path: path.to_owned(),
            layer: short_type_name(layer.type_name()),
        })?
        .rebuild_dyn(root, &HyperArgs::new(&hyper))
        .map_err(|bad| failed(bad.name, bad.reason))?;
    let originals = named_tensors(layer);
    let made = named_tensors(&*cloned);
    // The rebuilt layer has the original's tensors, by name and shape.
    for to in &made {
        match originals.iter().find(|from| from.name == to.name) {
            Some(from) if from.tensor.size() == to.tensor.size() => {}
            _ => {
                return Err(failed(
                    to.name.clone(),
                    "the rebuilt layer has a tensor the original has not (by name and shape)"
                        .to_owned(),
                )
                .into())
            }
        }
    }
    if let Some(missing) = originals
        .iter()
        .find(|from| !made.iter().any(|to| to.name == from.name))
    {
        return Err(failed(
            missing.name.clone(),
            "the rebuilt layer lacks this tensor of the original".to_owned(),
        )
        .into());
    }
    if mode == CloneMode::Deep {
        let _no_grad = tch::no_grad_guard();
        for mut to in made {
            let from = originals
                .iter()
                .find(|from| from.name == to.name)
                .expect("checked above");
            to.tensor
                .f_copy_(&from.tensor)
                .map_err(PatchError::torch(format!(
                    "copying `{}`",
                    join_name(path, &to.name)
                )))?;
            if !from.tensor.requires_grad() {
                let _ = to.tensor.set_requires_grad(false);
            }
        }
    }
    Ok(cloned)
}
