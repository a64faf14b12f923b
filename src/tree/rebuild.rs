//! Building a layer again from its hyperparameters, freshly initialized: what rebind and
//! clone do for each layer type they know (tch's Linear, Embedding and LayerNorm, bare or
//! in an unpatched `Slot`, and this crate's layers).
use super::hyper::{HyperList, HyperValue};
use super::node::NodeLayer;
use crate::layers::{Dropout, Gelu, GeluApproximation, Identity, PRelu, Relu, Sigmoid, Silu, Tanh};
use crate::Slot;
use tch::nn;

/// The layer `old` is, rebuilt from `hyper` at `root` (freshly initialized), for tch's
/// Linear, Embedding and LayerNorm and this crate's layers; `None` for any other type.
pub(super) fn rebuild(
    old: &dyn NodeLayer,
    root: &nn::Path,
    hyper: &HyperList,
) -> Option<Box<dyn NodeLayer>> {
    if let Some(layer) = rebuild_in_slot(old, root, hyper) {
        return Some(layer);
    }
    let int = |name: &str| match hyper.iter().find(|(n, _)| *n == name) {
        Some((_, HyperValue::Int(v))) => *v,
        _ => 0,
    };
    let flag = |name: &str| {
        matches!(
            hyper.iter().find(|(n, _)| *n == name),
            Some((_, HyperValue::Bool(true)))
        )
    };
    let float = |name: &str| match hyper.iter().find(|(n, _)| *n == name) {
        Some((_, HyperValue::Float(v))) => *v,
        _ => 0.0,
    };
    let any = old.as_any();
    Some(if any.is::<nn::Linear>() {
        let config = nn::LinearConfig {
            bias: flag("bias"),
            ..Default::default()
        };
        Box::new(nn::linear(
            root,
            int("in_features"),
            int("out_features"),
            config,
        ))
    } else if any.is::<nn::Embedding>() {
        let padding_idx = match hyper.iter().find(|(n, _)| *n == "padding_idx") {
            Some((_, HyperValue::Int(v))) => *v,
            _ => -1,
        };
        let config = nn::EmbeddingConfig {
            padding_idx,
            sparse: flag("sparse"),
            scale_grad_by_freq: flag("scale_grad_by_freq"),
            ..Default::default()
        };
        Box::new(nn::embedding(
            root,
            int("num_embeddings"),
            int("embedding_dim"),
            config,
        ))
    } else if any.is::<nn::LayerNorm>() {
        let shape = match hyper.iter().find(|(n, _)| *n == "normalized_shape") {
            Some((_, HyperValue::Ints(v))) => v.clone(),
            _ => return None,
        };
        let config = nn::LayerNormConfig {
            eps: float("eps"),
            elementwise_affine: flag("elementwise_affine"),
            ..Default::default()
        };
        Box::new(nn::layer_norm(root, shape, config))
    } else if any.is::<PRelu>() {
        Box::new(crate::layers::prelu(root, int("num_parameters")))
    } else if any.is::<Dropout>() {
        Box::new(crate::layers::dropout(float("p")))
    } else if any.is::<Gelu>() {
        let approximate = match hyper.iter().find(|(n, _)| *n == "approximate") {
            Some((_, HyperValue::Text(t))) if t == "tanh" => GeluApproximation::Tanh,
            _ => GeluApproximation::None,
        };
        Box::new(Gelu { approximate })
    } else if any.is::<Relu>() {
        Box::new(Relu)
    } else if any.is::<Silu>() {
        Box::new(Silu)
    } else if any.is::<Tanh>() {
        Box::new(Tanh)
    } else if any.is::<Sigmoid>() {
        Box::new(Sigmoid)
    } else if any.is::<Identity>() {
        Box::new(Identity)
    } else {
        return None;
    })
}

/// Whether [`rebuild`] knows `layer`'s type.
pub(super) fn can_rebuild(layer: &dyn NodeLayer) -> bool {
    use std::any::TypeId;
    let known = [
        TypeId::of::<nn::Linear>(),
        TypeId::of::<nn::Embedding>(),
        TypeId::of::<nn::LayerNorm>(),
        TypeId::of::<PRelu>(),
        TypeId::of::<Dropout>(),
        TypeId::of::<Gelu>(),
        TypeId::of::<Relu>(),
        TypeId::of::<Silu>(),
        TypeId::of::<Tanh>(),
        TypeId::of::<Sigmoid>(),
        TypeId::of::<Identity>(),
    ];
    known.contains(&layer.as_any().type_id()) || is_bare_known_slot(layer)
}

/// An unpatched `Slot<T>` of a layer type [`rebuild`] knows, rebuilt as a slot of the
/// rebuilt layer.
fn rebuild_in_slot(
    old: &dyn NodeLayer,
    root: &nn::Path,
    hyper: &HyperList,
) -> Option<Box<dyn NodeLayer>> {
    macro_rules! in_slot {
        ($($ty:ty),*) => {$(
            if let Some(slot) = old.as_any().downcast_ref::<Slot<$ty>>() {
                if slot.is_patched() {
                    return None;
                }
                let layer = rebuild(slot.root(), root, hyper)?;
                let layer = *layer.into_any().downcast::<$ty>().ok()?;
                return Some(Box::new(Slot::new(layer)));
            }
        )*};
    }
    in_slot!(nn::Linear, nn::Embedding, nn::LayerNorm);
    None
}

/// Whether `layer` is an unpatched `Slot` of a layer [`rebuild`] knows.
fn is_bare_known_slot(layer: &dyn NodeLayer) -> bool {
    let any = layer.as_any();
    let bare = |patched: Option<bool>| patched == Some(false);
    bare(any.downcast_ref::<Slot<nn::Linear>>().map(Slot::is_patched))
        || bare(
            any.downcast_ref::<Slot<nn::Embedding>>()
                .map(Slot::is_patched),
        )
        || bare(
            any.downcast_ref::<Slot<nn::LayerNorm>>()
                .map(Slot::is_patched),
        )
}
