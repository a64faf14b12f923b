//! The plain data of an adapter: per patched path, which patch with which arguments, and
//! the tensors the patch added.
use super::problem::AdapterProblem;
use crate::error::Result;
use crate::params::join_name;
use crate::patch_trait::Patch;
use crate::patches::{Dora, LinearLike, Lora, LoraEmbedding};
use crate::registry::{PatchArgs, PatchSpec};
use std::path::PathBuf;
use tch::Tensor;

/// What one patch added at one path: the patch (name, checked arguments, targets glob)
/// and its own tensors, by their local names (`lora_a`). In files they are keyed by
/// their full dotted names, `<path>.<local name>` (`blocks.0.attn.q.lora_a`).
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::adapter::AdapterEntry;
/// use tch_patch::patches::{Lora, LoraConfig};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "blocks" / 0 / "q";
/// let lora = Lora::new(nn::linear(&path, 8, 8, Default::default()), &path, &LoraConfig::default())?;
/// let entry = AdapterEntry::from_lora("blocks.0.q", &lora)?;
/// assert_eq!(entry.spec.name, "lora");
/// assert_eq!(entry.full_names(), ["blocks.0.q.lora_a", "blocks.0.q.lora_b"]);
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug)]
pub struct AdapterEntry {
    /// The dotted path of the patched module (`blocks.0.attn.q`).
    pub path: String,
    /// The patch: its registered name and arguments. `targets` is kept in the manifest
    /// as written (the glob the patch was applied with); it is the path if unknown.
    pub spec: PatchSpec,
    /// The patch's own tensors, by local name, in the patch's order. Shallow handles:
    /// the patch's very tensors when saving.
    pub tensors: Vec<(String, Tensor)>,
}

impl AdapterEntry {
    /// An entry from its parts.
    pub fn new(path: impl Into<String>, spec: PatchSpec, tensors: Vec<(String, Tensor)>) -> Self {
        AdapterEntry {
            path: path.into(),
            spec,
            tensors,
        }
    }

    /// The entry of a patch at `path`: `spec` and the patch's own tensors
    /// ([`Patch::added_tensors`], shallow handles).
    pub fn from_patch<P: Patch>(path: impl Into<String>, spec: PatchSpec, patch: &P) -> Self {
        let tensors = patch
            .added_tensors()
            .into_iter()
            .map(|(name, tensor, _)| (name.to_owned(), tensor.shallow_clone()))
            .collect();
        Self::new(path, spec, tensors)
    }

    /// The entry of a LoRA patch at `path`: its config as a `lora` spec (targets: the
    /// path) and its tensors `lora_a`, `lora_b`. An error if the config breaks its schema.
    pub fn from_lora<L: LinearLike>(path: impl Into<String>, lora: &Lora<L>) -> Result<Self> {
        let path = path.into();
        let spec = lora.config().to_spec(path.clone())?;
        Ok(Self::from_patch(path, spec, lora))
    }

    /// The entry of a DoRA patch at `path`: its config as a `dora` spec (targets: the
    /// path) and its tensors `lora_a`, `lora_b`, `lora_magnitude`. An error if the config
    /// breaks its schema.
    pub fn from_dora<L: LinearLike>(path: impl Into<String>, dora: &Dora<L>) -> Result<Self> {
        let path = path.into();
        let spec = dora.config().to_spec(path.clone())?;
        Ok(Self::from_patch(path, spec, dora))
    }

    /// The entry of a LoRA on an embedding at `path`: its config as a `lora` spec (targets:
    /// the path) and its tensors `lora_embedding_a`, `lora_embedding_b`. An error if the
    /// config breaks its schema.
    pub fn from_lora_embedding(path: impl Into<String>, lora: &LoraEmbedding) -> Result<Self> {
        let path = path.into();
        let spec = lora.config().to_spec(path.clone())?;
        Ok(Self::from_patch(path, spec, lora))
    }

    /// The full dotted name of a local tensor name of this entry.
    pub fn full_name(&self, local: &str) -> String {
        join_name(&self.path, local)
    }

    /// The full dotted names of the entry's tensors, in order.
    pub fn full_names(&self) -> Vec<String> {
        self.tensors
            .iter()
            .map(|(name, _)| self.full_name(name))
            .collect()
    }

    /// The tensor with local name `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors
            .iter()
            .find(|(local, _)| local == name)
            .map(|(_, tensor)| tensor)
    }

    /// [`tensor`](Self::tensor), or `None` with a problem naming it in `problems`.
    pub(crate) fn required_tensor(
        &self,
        name: &str,
        problems: &mut Vec<super::AdapterProblem>,
    ) -> Option<&Tensor> {
        let tensor = self.tensor(name);
        if tensor.is_none() {
            problems.push(super::AdapterProblem::Tensor {
                name: self.full_name(name),
                message: "is missing from the entry".into(),
            });
        }
        tensor
    }
}

/// An adapter read from files and checked: its entries, each with its tensors (new CPU
/// tensors holding the file's values).
#[derive(Debug)]
pub struct Adapter {
    /// The format version of the manifest read.
    pub format_version: u64,
    /// The version of the library that wrote it (for PEFT's layout: `"peft"`).
    pub library_version: String,
    /// One entry per patched path, in the manifest's order.
    pub entries: Vec<AdapterEntry>,
}

impl Adapter {
    /// The entry of patched path `path`.
    pub fn entry(&self, path: &str) -> Option<&AdapterEntry> {
        self.entries.iter().find(|entry| entry.path == path)
    }

    /// The patched paths, in order.
    pub fn paths(&self) -> Vec<&str> {
        self.entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect()
    }
}

/// What a save wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The JSON file written (`adapter.json`, or PEFT's `adapter_config.json`).
    pub manifest_file: PathBuf,
    /// The safetensors file written.
    pub tensors_file: PathBuf,
    /// Bytes of the JSON file.
    pub manifest_bytes: u64,
    /// Bytes of the safetensors file.
    pub tensors_bytes: u64,
    /// Number of tensors saved.
    pub tensors: usize,
    /// Number of values saved (the sum of the tensors' element counts).
    pub values: i64,
}

impl AdapterSummary {
    /// Bytes of both files.
    pub fn total_bytes(&self) -> u64 {
        self.manifest_bytes + self.tensors_bytes
    }
}

/// A problem if `path` is not a dotted module path: non-empty segments of letters,
/// digits, `_` and `-`.
pub(crate) fn path_problem(path: &str) -> Option<AdapterProblem> {
    let reason = if path.is_empty() {
        "it is empty".to_owned()
    } else if let Some(index) = path.split('.').position(str::is_empty) {
        format!("segment {} is empty", index + 1)
    } else if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.'))
    {
        format!("it holds {c:?}; segments are made of letters, digits, `_` and `-`")
    } else {
        return None;
    };
    Some(AdapterProblem::InvalidPath {
        path: path.to_owned(),
        reason,
    })
}

/// A problem if `local` is not a valid local tensor name (one segment, no dot).
pub(crate) fn local_name_problem(entry_path: &str, local: &str) -> Option<AdapterProblem> {
    let valid = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (!valid).then(|| AdapterProblem::Tensor {
        name: join_name(entry_path, local),
        message: format!(
            "has local name {local:?}, which is not one segment of letters, digits, `_` and `-`"
        ),
    })
}
