//! An adapter manifest (`adapter.json`) as a value: parsed and checked from bytes on its
//! own (without the tensors file), and written back as pretty-printed JSON.
use super::args::args_to_json;
use super::entry::AdapterEntry;
use super::problem::AdapterProblem;
use super::read::check_patches;
use super::read_manifest::{
    read_manifest, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, LIBRARY_VERSION, MANIFEST_FILE,
};
use super::tensors::kind_name;
use super::AdapterError;
use crate::error::Result;
use crate::registry::{PatchSpec, Registry};
use serde::Serialize;

/// One tensor as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestTensor {
    /// Its full dotted name, the key in `adapter.safetensors` (`blocks.0.attn.q.lora_a`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its dtype, as safetensors names it (`F32`, `BF16`...).
    pub dtype: String,
}

/// One patch of a manifest: where, which patch with which checked arguments, and the
/// tensors it added.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestPatch {
    /// The patched path (`blocks.0.attn.q`).
    pub path: String,
    /// The patch's name, checked arguments and `targets` glob (which selects `path`).
    pub spec: PatchSpec,
    /// The tensors the patch added, each named `<path>.<local name>`.
    pub tensors: Vec<ManifestTensor>,
}

/// An adapter manifest (`adapter.json`, see [the module docs](super)), checked.
///
/// ```
/// use tch_patch::adapter::{AdapterError, AdapterManifest};
/// use tch_patch::PatchError;
///
/// let json = r#"{
///   "format": "tch-patch-adapter", "format_version": 1, "library_version": "0.1.0",
///   "patches": [{
///     "path": "fc", "patch": "lora", "args": { "rank": 2 },
///     "tensors": [{ "name": "fc.lora_a", "shape": [2, 4], "dtype": "F32" }]
///   }]
/// }"#;
/// let manifest = AdapterManifest::from_json(json.as_bytes())?;
/// assert_eq!(manifest.patches[0].spec.targets, "fc"); // the path, when not given
/// assert_eq!(AdapterManifest::from_json(&manifest.to_json()?)?, manifest);
///
/// let typo = json.replace("\"lora\"", "\"lorra\"");
/// let Err(PatchError::Adapter(AdapterError { problems, .. })) = AdapterManifest::from_json(typo.as_bytes()) else {
///     panic!()
/// };
/// assert!(problems[0].to_string().contains("did you mean \"lora\""));
/// # Ok::<(), PatchError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterManifest {
    /// The version of the library that wrote it.
    pub library_version: String,
    /// The id of the save that wrote it, also in `adapter.safetensors`' metadata: a
    /// manifest and a tensors file of two different saves (a save interrupted between its
    /// two files) are refused. `None` in manifests written before save ids (then, as when
    /// the tensors file has none, the pair is not compared).
    pub save_id: Option<String>,
    /// The patches, in the manifest's order.
    pub patches: Vec<ManifestPatch>,
}

impl AdapterManifest {
    /// Parses and checks a manifest, with the [global registry](Registry::global): every
    /// check [`read_adapter`](super::read_adapter) makes of `adapter.json` (JSON, format
    /// and version, every field present, of its type and known, paths, patches and their
    /// arguments, tensor names), none of those against `adapter.safetensors`. Any problem
    /// is [`AdapterError`](crate::adapter::AdapterError) listing them all.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        Ok(Self::from_json_with(bytes, Registry::global()?)?)
    }

    /// [`from_json`](Self::from_json) with the patches checked against `registry`.
    pub fn from_json_with(bytes: &[u8], registry: &Registry) -> Result<Self, AdapterError> {
        let mut problems = Vec::new();
        let manifest = read_manifest(bytes, &mut problems);
        let patches = manifest
            .as_ref()
            .map(|manifest| check_patches(registry, &manifest.patches, None, &mut problems));
        match (manifest, patches) {
            (Some(manifest), Some(patches)) if problems.is_empty() => Ok(AdapterManifest {
                library_version: manifest.library_version.unwrap_or_default(),
                save_id: manifest.save_id,
                patches,
            }),
            _ => Err(AdapterError {
                operation: "read an adapter manifest".into(),
                problems,
            }),
        }
    }

    /// The manifest of checked entries (tensors defined and of safetensors dtypes),
    /// written by this library's version in the save `save_id`.
    pub(crate) fn of_entries(entries: &[AdapterEntry], save_id: String) -> Self {
        let patches = entries
            .iter()
            .map(|entry| ManifestPatch {
                path: entry.path.clone(),
                spec: entry.spec.clone(),
                tensors: entry
                    .tensors
                    .iter()
                    .map(|(local, tensor)| ManifestTensor {
                        name: entry.full_name(local),
                        shape: tensor.size(),
                        dtype: kind_name(tensor.kind()).unwrap_or("?").to_owned(),
                    })
                    .collect(),
            })
            .collect();
        AdapterManifest {
            library_version: LIBRARY_VERSION.to_owned(),
            save_id: Some(save_id),
            patches,
        }
    }

    /// The manifest as pretty-printed JSON, as [`save_adapter`](super::save_adapter)
    /// writes it.
    pub fn to_json(&self) -> Result<Vec<u8>, AdapterError> {
        let manifest = ManifestOut {
            format: ADAPTER_FORMAT,
            format_version: ADAPTER_FORMAT_VERSION,
            library: "tch-patch",
            library_version: &self.library_version,
            save_id: self.save_id.as_deref(),
            patches: self.patches.iter().map(PatchOut::of).collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|error| AdapterError {
            operation: "write the adapter manifest".into(),
            problems: vec![AdapterProblem::Field {
                file: MANIFEST_FILE.into(),
                field: "(all)".into(),
                message: error.to_string(),
            }],
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    format: &'static str,
    format_version: u64,
    library: &'static str,
    library_version: &'a str,
    patches: Vec<PatchOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    save_id: Option<&'a str>,
}

#[derive(Serialize)]
struct PatchOut<'a> {
    path: &'a str,
    patch: &'a str,
    targets: &'a str,
    args: serde_json::Map<String, serde_json::Value>,
    tensors: &'a [ManifestTensor],
}

impl<'a> PatchOut<'a> {
    fn of(patch: &'a ManifestPatch) -> Self {
        PatchOut {
            path: &patch.path,
            patch: &patch.spec.name,
            targets: &patch.spec.targets,
            args: args_to_json(&patch.spec.args),
            tensors: &patch.tensors,
        }
    }
}
