//! Whether each module of a PEFT adapter is the kind of layer its LoRA is for, checked on
//! a whole model before anything is patched.
use super::kind::LoraKind;
use super::PEFT_TENSORS_FILE;
use crate::adapter::{AdapterEntry, AdapterProblem};
use crate::patches::LoraConfig;
use crate::tree::{short_type_name, AnySlot, ModuleTreeExt};
use crate::ModuleTree;
use tch::nn;

/// A problem for every entry that does not fit the slot at its path: an embedding's LoRA
/// on a slot that is not an `nn::Embedding`, a linear layer's on an `nn::Embedding`, an
/// embedding's `A` or `B` of another size than the table's. A path with no slot is left
/// to the apply, which names it.
pub(crate) fn slot_problems(
    model: &dyn ModuleTree,
    entries: &[AdapterEntry],
) -> Vec<AdapterProblem> {
    let slots = model.slots();
    let mut problems = Vec::new();
    for entry in entries {
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
