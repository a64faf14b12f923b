//! The slot API: `unpatch` of an unpatched slot, lookups by path, `replace_with` refused
//! by the patch it builds, and operations a patch in a slot refuses.
use crate::case;
use crate::cases::rules::lora_rule;
use crate::fixture::{Fixture, TREE};
use crate::Case;
use tch::{nn, Kind, Tensor};
use tch_patch::patches::{BuildPatch, Lora, LoraConfig};
use tch_patch::registry::PatchStringError;
use tch_patch::tree::TreeError;
use tch_patch::{
    params::TensorRole, register_tensors, tree::path_in, tree::ModuleTreeExt, tree::Refused, Layer,
    PatchError, Slot,
};

/// Replaces the content of the tree's slot `path` (a bare linear) by a LoRA built with
/// `config`; a failed build hands the linear back.
fn replace_with_lora(fx: &mut Fixture, path: &str, config: LoraConfig) -> Result<(), PatchError> {
    let Fixture { vs, tree, .. } = fx;
    let at = path_in(&(vs.root() / TREE), path);
    let slot: &mut Slot<nn::Linear> = tree.as_mut().expect("made in setup").slot_mut(path)?;
    slot.replace_with(|content| {
        let base = content.into_root().map_err(|content| {
            Refused::new(
                PatchError::Empty {
                    what: "a bare slot",
                },
                content,
            )
        })?;
        match Lora::build(base, &at, &config) {
            Ok(lora) => Ok(lora.into_content()),
            Err(failed) => Err(Refused::new(failed.error, failed.base.into_content())),
        }
    })
}

fn lora_at<'a>(fx: &'a mut Fixture, path: &str) -> Result<&'a mut Lora<nn::Linear>, PatchError> {
    let slot: &mut Slot<nn::Linear> = fx.tree().slot_mut(path)?;
    Ok(slot
        .find_mut::<Lora<nn::Linear>>()
        .expect("the setup put a LoRA there"))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "slot: unpatch of an unpatched slot",
            setup: |fx| fx.with_tree(),
            |fx| fx.tree().blocks[0].q.unpatch(),
            PatchError::Tree(TreeError::NotPatched { slot }) if slot.contains("Linear")
        ),
        case!(
            "slot: unpatch_from of an unpatched slot",
            setup: |fx| fx.with_tree(),
            |fx| {
                let Fixture { vs, tree, .. } = fx;
                tree.as_mut().expect("made in setup").emb.unpatch_from(vs)
            },
            PatchError::Tree(TreeError::NotPatched { slot }) if slot.contains("Embedding")
        ),
        case!(
            "slot: unpatch of the unpatched slot of a patched model",
            setup: |fx| {
                let rule = lora_rule(&fx.vs, "blocks.*.q");
                fx.with_tree().apply(&rule).unwrap();
            },
            |fx| fx.tree().slot_mut::<nn::Linear>("blocks.1.v")?.unpatch(),
            PatchError::Tree(TreeError::NotPatched { .. })
        ),
        case!(
            "slot: no slot at a path",
            setup: |fx| fx.with_tree(),
            |fx| fx.tree().slot_mut::<nn::Linear>("blocks.3.q").map(drop),
            PatchError::Tree(TreeError::NoSuchSlot { path, nearest }) if path == "blocks.3.q" && nearest.len() == 5
        ),
        case!(
            "slot: a path holding another layer type",
            setup: |fx| fx.with_tree(),
            |fx| fx.tree().slot::<nn::Embedding>("head").map(drop),
            PatchError::Tree(TreeError::WrongSlotType { path, expected, actual })
                if path == "head" && expected == "Embedding" && actual == "Linear"
        ),
        case!(
            "slot: replace_with a LoRA of rank 0 (the slot keeps its linear)",
            setup: |fx| fx.with_tree(),
            |fx| replace_with_lora(fx, "blocks.0.v", LoraConfig { rank: 0, ..Default::default() }),
            PatchError::PatchString(PatchStringError::ArgumentOutOfRange { patch, name, .. }) if patch == "lora" && name == "rank"
        ),
        case!(
            "slot: replace_with a LoRA whose names are taken",
            setup: |fx| {
                fx.with_tree();
                let taken = Tensor::zeros([1], (Kind::Float, fx.vs.device()));
                let at = path_in(&(fx.vs.root() / TREE), "blocks.2.v");
                let [_b] = register_tensors(&at, [("lora_b", taken, TensorRole::Buffer)]).unwrap();
            },
            |fx| replace_with_lora(fx, "blocks.2.v", LoraConfig::default()),
            PatchError::NameTaken { name } if name == "tree.blocks.2.v.lora_b"
        ),
        case!(
            "slot: merging a disabled LoRA",
            setup: |fx| {
                let rule = lora_rule(&fx.vs, "blocks.1.q");
                fx.with_tree().apply(&rule).unwrap();
                lora_at(fx, "blocks.1.q").unwrap().set_enabled(false).unwrap();
            },
            |fx| lora_at(fx, "blocks.1.q")?.merge(),
            PatchError::MergeState { message } if message.contains("disabled")
        ),
    ]
}
