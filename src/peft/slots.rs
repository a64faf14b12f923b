//! Whether each module of a PEFT adapter is the kind of layer its LoRA is for, checked on
//! a whole model before anything is patched.
use super::kind::LoraKind;
use super::tokens::{table_problems, tokens_entry, tokens_key};
use super::{PeftAdapter, PEFT_KEY_PREFIX, PEFT_TENSORS_FILE};
use crate::adapter::{AdapterEntry, AdapterProblem};
use crate::params::named_tensors;
use crate::patches::LoraConfig;
use crate::tree::{short_type_name, AnySlot, ModuleTreeExt};
use crate::ModuleTree;
use tch::{nn, Tensor};

/// A problem for every entry that does not fit the slot at its path: an embedding's LoRA
/// on a slot that is not an `nn::Embedding`, a linear layer's on an `nn::Embedding`, an
/// embedding's `A` or `B` of another size than the table's; and for every saved base
/// weight that is not the slot's. A path with no slot is left to the apply, which names
/// it.
pub(crate) fn slot_problems(model: &dyn ModuleTree, adapter: &PeftAdapter) -> Vec<AdapterProblem> {
    let slots = model.slots();
    let mut problems = Vec::new();
    for (path, saved) in &adapter.base_weights {
        if let Some((_, slot)) = slots.iter().find(|(slot_path, _)| slot_path == path) {
            problems.extend(base_weight_problem(path, saved, *slot));
        }
    }
    for entry in &adapter.entries {
        let Some((_, slot)) = slots.iter().find(|(path, _)| *path == entry.path) else {
            continue;
        };
        let kind = LoraKind::of_entry(entry);
        let table = slot
            .downcast_ref::<nn::Embedding>()
            .map(|slot| slot.root().ws.size());
        match (kind, table) {
            (LoraKind::Embedding, Some(table)) => problems.extend(shape_problems(entry, &table)),
            (LoraKind::Linear, None) => {}
            _ => problems.push(kind_problem(entry, kind, *slot)),
        }
    }
    problems
}

/// A problem if `saved`, the base weight PEFT saved for module `path`, is not the slot's
/// weight: PEFT would load it into the model, and this library does not change base
/// weights.
fn base_weight_problem(path: &str, saved: &Tensor, slot: &dyn AnySlot) -> Option<AdapterProblem> {
    let name = format!("{PEFT_KEY_PREFIX}{path}.base_layer.weight");
    let found = named_tensors(slot.root_parameters())
        .into_iter()
        .find(|named| named.name == "weight");
    let Some(weight) = found.map(|named| named.tensor) else {
        return Some(AdapterProblem::UnexpectedTensor {
            name,
            file: PEFT_TENSORS_FILE.into(),
            reason: format!("module `{path}` has no `weight` for this base weight to be"),
        });
    };
    if saved.size() != weight.size() {
        return Some(AdapterProblem::Shape {
            name,
            found: saved.size(),
            expected: format!(
                "{:?}, the shape of `{path}.weight` (PEFT saves the base weight of a targeted embedding layer, `save_embedding_layers`)",
                weight.size()
            ),
        });
    }
    let same = saved
        .f_to_device(weight.device())
        .and_then(|saved| saved.f_to_kind(weight.kind()))
        .is_ok_and(|saved| saved.equal(&weight));
    (!same).then(|| AdapterProblem::Tensor {
        name,
        message: format!(
            "is the base weight of `{path}` that PEFT saved beside its LoRA (`save_embedding_layers`), and it differs from the model's: PEFT would load it into the model, and this library does not change base weights; load the adapter onto the model it was trained on"
        ),
    })
}

fn kind_problem(entry: &AdapterEntry, kind: LoraKind, slot: &dyn AnySlot) -> AdapterProblem {
    AdapterProblem::UnexpectedTensor {
        name: kind.key(&entry.path, 0),
        file: PEFT_TENSORS_FILE.into(),
        reason: format!(
            "it is {}, but module `{}` is of type `{}`",
            kind.describe(),
            entry.path,
            short_type_name(slot.root_type_name())
        ),
    }
}

/// The problems of an embedding's `A` `[r, num_embeddings]` and `B` `[embedding_dim, r]`
/// against the table's shape.
fn shape_problems(entry: &AdapterEntry, table: &[i64]) -> Vec<AdapterProblem> {
    let (Ok(config), &[rows, dim]) = (entry.spec.config::<LoraConfig>(), table) else {
        return Vec::new(); // checked when read; the apply reports it again
    };
    let rank = config.rank;
    let kind = LoraKind::Embedding;
    let path = &entry.path;
    let expected = [
        (
            [rank, rows],
            format!("[{rank}, {rows}] (r {rank}; `{path}` has {rows} embeddings)"),
        ),
        (
            [dim, rank],
            format!("[{dim}, {rank}] (r {rank}; `{path}` has embeddings of size {dim})"),
        ),
    ];
    let mut problems = Vec::new();
    for (which, (shape, text)) in expected.into_iter().enumerate() {
        let found = entry
            .tensor(kind.locals()[which])
            .map(tch::Tensor::size)
            .unwrap_or_default();
        if found != shape {
            problems.push(AdapterProblem::Shape {
                name: kind.key(path, which),
                found,
                expected: text,
            });
        }
    }
    problems
}

/// The `mostly_frozen_embedding` entry of each of `adapter`'s trainable tokens, its `delta`
/// the saved rows minus the model's (`tokens_entry`); a problem naming the key for a path
/// with no slot, a slot that is not an `nn::Embedding`, an id out of the table's range or
/// rows of another width.
pub(crate) fn token_entries(
    model: &dyn ModuleTree,
    adapter: &PeftAdapter,
    problems: &mut Vec<AdapterProblem>,
) -> Vec<AdapterEntry> {
    let slots = model.slots();
    let mut entries = Vec::new();
    for tokens in &adapter.trainable_tokens {
        let path = &tokens.path;
        let name = tokens_key(path);
        let Some((_, slot)) = slots.iter().find(|(slot_path, _)| slot_path == path) else {
            problems.push(AdapterProblem::UnexpectedTensor {
                name,
                file: PEFT_TENSORS_FILE.into(),
                reason: format!(
                    "it is the trainable tokens of `{path}`, and the model has no slot there"
                ),
            });
            continue;
        };
        let Some(embedding) = slot.downcast_ref::<nn::Embedding>() else {
            problems.push(AdapterProblem::UnexpectedTensor {
                name,
                file: PEFT_TENSORS_FILE.into(),
                reason: format!(
                    "it is trainable tokens (rows of an embedding table), but module `{path}` is of type `{}`",
                    short_type_name(slot.root_type_name())
                ),
            });
            continue;
        };
        let weight = &embedding.root().ws;
        let found = table_problems(path, &tokens.token_ids, &tokens.values, &weight.size());
        if !found.is_empty() {
            problems.extend(found);
            continue;
        }
        match tokens_entry(path, &tokens.token_ids, &tokens.values, weight) {
            Ok(entry) => entries.push(entry),
            Err(error) => problems.push(AdapterProblem::Tensor {
                name,
                message: format!("cannot be converted to a delta: {error}"),
            }),
        }
    }
    entries
}
