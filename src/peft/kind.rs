//! The two kinds of LoRA module in PEFT's layout: a linear layer's and an embedding's, each
//! with its own keys, and the local tensor names of the patch that holds it here.
use super::PEFT_KEY_PREFIX;
use crate::adapter::AdapterEntry;

/// PEFT's key suffix of a DoRA module's magnitude `[out]` (no `.weight`).
pub(crate) const MAGNITUDE_SUFFIX: &str = "lora_magnitude_vector";
/// The magnitude's local name in [`Dora`](crate::patches::Dora) (and adapter entries).
pub(crate) const MAGNITUDE_LOCAL: &str = "lora_magnitude";

/// PEFT's key of the magnitude of DoRA module `path`.
pub(crate) fn magnitude_key(path: &str) -> String {
    format!("{PEFT_KEY_PREFIX}{path}.{MAGNITUDE_SUFFIX}")
}

/// Which LoRA a module holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoraKind {
    /// PEFT's `lora.Linear` (and `Conv1D`): keys `lora_A.weight`, `lora_B.weight`;
    /// [`Lora`](crate::patches::Lora)'s `lora_a`, `lora_b`.
    Linear,
    /// PEFT's `lora.Embedding`: keys `lora_embedding_A`, `lora_embedding_B` (no `.weight`);
    /// [`LoraEmbedding`](crate::patches::LoraEmbedding)'s `lora_embedding_a`,
    /// `lora_embedding_b`.
    Embedding,
}

impl LoraKind {
    pub(crate) const ALL: [LoraKind; 2] = [LoraKind::Linear, LoraKind::Embedding];

    /// PEFT's key suffixes of `A` and `B`.
    pub(crate) fn suffixes(self) -> [&'static str; 2] {
        match self {
            LoraKind::Linear => ["lora_A.weight", "lora_B.weight"],
            LoraKind::Embedding => ["lora_embedding_A", "lora_embedding_B"],
        }
    }

    /// The local tensor names of `A` and `B` in the patch (and in adapter entries).
    pub(crate) fn locals(self) -> [&'static str; 2] {
        match self {
            LoraKind::Linear => ["lora_a", "lora_b"],
            LoraKind::Embedding => ["lora_embedding_a", "lora_embedding_b"],
        }
    }

    /// What `A`'s columns and `B`'s rows count, in words.
    pub(crate) fn dims(self) -> [&'static str; 2] {
        match self {
            LoraKind::Linear => ["in_features", "out_features"],
            LoraKind::Embedding => ["num_embeddings", "embedding_dim"],
        }
    }

    /// PEFT's key of `A` (`which` 0) or `B` (1) of module `path`.
    pub(crate) fn key(self, path: &str, which: usize) -> String {
        format!("{PEFT_KEY_PREFIX}{path}.{}", self.suffixes()[which])
    }

    /// The kind of an entry: an embedding's if it holds either of its tensors.
    pub(crate) fn of_entry(entry: &AdapterEntry) -> Self {
        let embedding = LoraKind::Embedding.locals();
        if entry
            .tensors
            .iter()
            .any(|(local, _)| embedding.contains(&local.as_str()))
        {
            LoraKind::Embedding
        } else {
            LoraKind::Linear
        }
    }

    /// The `A` (0) or `B` (1) key of `rest` (a key without [`PEFT_KEY_PREFIX`]): its module
    /// path, kind and which.
    pub(crate) fn parse(rest: &str) -> Option<(&str, LoraKind, usize)> {
        LoraKind::ALL.into_iter().find_map(|kind| {
            kind.suffixes()
                .into_iter()
                .enumerate()
                .find_map(|(which, suffix)| {
                    let path = rest.strip_suffix(suffix)?.strip_suffix('.')?;
                    Some((path, kind, which))
                })
        })
    }

    /// The patch of this kind, for messages.
    pub(crate) fn patch_words(self) -> &'static str {
        match self {
            LoraKind::Linear => "a LoRA of a linear layer",
            LoraKind::Embedding => "a LoRA of an embedding",
        }
    }

    /// The module kind in PEFT's words, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            LoraKind::Linear => "a linear layer's LoRA (lora_A.weight, lora_B.weight)",
            LoraKind::Embedding => "an embedding's LoRA (lora_embedding_A, lora_embedding_B)",
        }
    }
}
