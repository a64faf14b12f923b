//! Reading an adapter folder and checking every part of it before returning anything.
use super::args::check_spec;
use super::entry::{local_name_problem, path_problem, Adapter, AdapterEntry};
use super::io;
use super::manifest::{ManifestPatch, ManifestTensor};
use super::problem::AdapterProblem;
use super::read_manifest::{
    read_manifest, PatchIn, ADAPTER_FORMAT_VERSION, MANIFEST_FILE, SAVE_ID_KEY, TENSORS_FILE,
};
use super::tensors::{self, FileTensor};
use super::AdapterError;
use crate::error::Result;
use crate::names::shape_text;
use crate::registry::Registry;
use safetensors::tensor::SafeTensors;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Reads the adapter folder `dir` written by [`save_adapter`](super::save_adapter), and
/// checks it all, with the [global registry](Registry::global), before returning:
///
/// * both files readable, `adapter.safetensors` a valid safetensors file;
/// * `adapter.json` well-formed JSON of this format and a known format version (else
///   only that is reported: the rest may mean something else), every field present and
///   of its type, no unknown field;
/// * every patched path a dotted path, given once; every patch registered, its arguments
///   valid (checked as a patch string would be);
/// * every tensor the manifest lists named `<path>.<local>`, given once, in the
///   safetensors file with the manifest's shape and dtype; no other tensor in the file.
///
/// Any problem is [`AdapterError`](crate::adapter::AdapterError) listing them all
/// ([`AdapterProblem`](super::AdapterProblem) each).
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::adapter::{read_adapter, save_adapter, AdapterEntry, AdapterError, AdapterProblem};
/// use tch_patch::patches::{Lora, LoraConfig};
/// use tch_patch::PatchError;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "fc";
/// let lora = Lora::new(nn::linear(&path, 4, 4, Default::default()), &path, &LoraConfig::default())?;
/// let dir = std::env::temp_dir().join(format!("tch-patch-doc-read-{}", std::process::id()));
/// save_adapter(&dir, &[AdapterEntry::from_lora("fc", &lora)?])?;
///
/// // A manifest edited by hand: a misspelt patch name and a wrong shape.
/// let manifest = std::fs::read_to_string(dir.join("adapter.json")).unwrap();
/// let edited = manifest.replace("\"lora\"", "\"lorra\"").replace("[\n            8,\n            4\n          ]", "[9, 4]");
/// std::fs::write(dir.join("adapter.json"), edited).unwrap();
/// let Err(PatchError::Adapter(AdapterError { problems, .. })) = read_adapter(&dir) else { panic!() };
/// assert!(matches!(&problems[0], AdapterProblem::InvalidPatch { path, .. } if path == "fc"));
/// assert_eq!(problems[1].to_string(), "tensor `fc.lora_a` has shape [8, 4], expected [9, 4] (from the manifest)");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn read_adapter(dir: impl AsRef<Path>) -> Result<Adapter> {
    Ok(read_adapter_with(dir, Registry::global()?)?)
}

/// [`read_adapter`] with the patches checked against `registry`.
pub fn read_adapter_with(
    dir: impl AsRef<Path>,
    registry: &Registry,
) -> Result<Adapter, AdapterError> {
    let dir = dir.as_ref();
    let mut problems = Vec::new();
    let manifest_bytes = read(dir, MANIFEST_FILE, &mut problems);
    let tensor_bytes = read(dir, TENSORS_FILE, &mut problems);
    let manifest = manifest_bytes.and_then(|bytes| read_manifest(&bytes, &mut problems));
    let file = tensor_bytes
        .as_deref()
        .and_then(|bytes| match tensors::parse(bytes) {
            Ok(file) => Some(file),
            Err(message) => {
                problems.push(AdapterProblem::Read {
                    file: TENSORS_FILE.into(),
                    message,
                });
                None
            }
        });
    if let (Some(manifest), Some(bytes), true) = (&manifest, &tensor_bytes, file.is_some()) {
        if let Some(problem) = mixed_saves(manifest.save_id.as_deref(), bytes) {
            problems.push(problem);
        }
    }
    let described = file.as_ref().map(tensors::describe);
    let mut checked = Vec::new();
    if let Some(manifest) = &manifest {
        checked = check_patches(
            registry,
            &manifest.patches,
            described.as_ref(),
            &mut problems,
        );
    }
    let (Some(manifest), Some(file), true) = (manifest, file, problems.is_empty()) else {
        return Err(AdapterError {
            operation: format!("read adapter `{}`", dir.display()),
            problems,
        });
    };
    let mut entries = Vec::with_capacity(checked.len());
    for patch in checked {
        let tensors = patch
            .tensors
            .iter()
            .map(|tensor| {
                let local = tensor.name[patch.path.len() + 1..].to_owned();
                Ok((local, tensors::load(&file, &tensor.name)?))
            })
            .collect::<Result<Vec<_>, AdapterError>>()?;
        entries.push(AdapterEntry::new(patch.path, patch.spec, tensors));
    }
    Ok(Adapter {
        format_version: ADAPTER_FORMAT_VERSION,
        library_version: manifest.library_version.unwrap_or_default(),
        entries,
    })
}

/// A problem if the manifest and the tensors file carry different save ids. A file without
/// one (written before save ids, or rewritten by another tool) is not compared.
fn mixed_saves(manifest_id: Option<&str>, tensor_bytes: &[u8]) -> Option<AdapterProblem> {
    let (_, header) = SafeTensors::read_metadata(tensor_bytes).ok()?;
    let tensors_id = header
        .metadata()
        .as_ref()
        .and_then(|metadata| metadata.get(SAVE_ID_KEY))
        .map(String::as_str);
    let (manifest_id, tensors_id) = (manifest_id?, tensors_id?);
    (manifest_id != tensors_id).then(|| AdapterProblem::MixedSaves {
        manifest: MANIFEST_FILE.into(),
        tensors: TENSORS_FILE.into(),
        manifest_id: manifest_id.into(),
        tensors_id: tensors_id.into(),
    })
}

fn read(dir: &Path, name: &str, problems: &mut Vec<AdapterProblem>) -> Option<Vec<u8>> {
    io::read_file(&dir.join(name), io::kind_of(name))
        .map_err(|message| {
            problems.push(AdapterProblem::Read {
                file: name.into(),
                message,
            })
        })
        .ok()
}

/// Checks the manifest's patches against the registry and the tensors file (`None` if
/// unreadable or not given); the checked patches (each tensor named `<path>.<local>`),
/// complete if no problem was recorded.
pub(super) fn check_patches(
    registry: &Registry,
    patches: &[PatchIn],
    file: Option<&HashMap<String, FileTensor>>,
    problems: &mut Vec<AdapterProblem>,
) -> Vec<ManifestPatch> {
    let mut checked = Vec::new();
    let mut paths = HashSet::new();
    let mut listed = HashSet::new();
    let mut all_names_read = true;
    for patch in patches {
        let path = patch.path.as_deref();
        let path_ok = match path {
            Some(path) => match path_problem(path) {
                Some(problem) => {
                    problems.push(problem);
                    false
                }
                None if !paths.insert(path) => {
                    problems.push(AdapterProblem::DuplicatePath { path: path.into() });
                    false
                }
                None => true,
            },
            None => false,
        };
        let spec = match (path, &patch.patch, &patch.args) {
            (Some(path), Some(name), Some(args)) => {
                let targets = patch.targets.clone().unwrap_or_else(|| path.to_owned());
                check_spec(registry, path, name, args.clone(), targets)
                    .map_err(|problem| problems.push(problem))
                    .ok()
            }
            _ => None,
        };
        let mut names = Vec::new();
        for tensor in &patch.tensors {
            let Some(full) = &tensor.name else {
                all_names_read = false;
                continue;
            };
            if !listed.insert(full.clone()) {
                problems.push(AdapterProblem::Tensor {
                    name: full.clone(),
                    message: "is listed more than once in the manifest".into(),
                });
                continue;
            }
            if let Some(path) = path.filter(|_| path_ok) {
                match full
                    .strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix('.'))
                {
                    Some(local) => match local_name_problem(path, local) {
                        Some(problem) => problems.push(problem),
                        None => names.push(ManifestTensor {
                            name: full.clone(),
                            shape: tensor.shape.clone().unwrap_or_default(),
                            dtype: tensor.dtype.clone().unwrap_or_default(),
                        }),
                    },
                    None => problems.push(AdapterProblem::Tensor {
                        name: full.clone(),
                        message: format!("is not named `{path}.<name>` after its patched path"),
                    }),
                }
            }
            let Some(file) = file else { continue };
            match file.get(full) {
                None => problems.push(AdapterProblem::MissingTensor {
                    name: full.clone(),
                    file: TENSORS_FILE.into(),
                    reason: "the manifest lists it".into(),
                }),
                Some(found) => {
                    if let Some(shape) = tensor.shape.as_ref().filter(|s| **s != found.shape) {
                        problems.push(AdapterProblem::Shape {
                            name: full.clone(),
                            found: found.shape.clone(),
                            expected: format!("{} (from the manifest)", shape_text(shape)),
                        });
                    }
                    if let Some(dtype) = tensor.dtype.as_ref().filter(|d| **d != found.dtype) {
                        problems.push(AdapterProblem::Dtype {
                            name: full.clone(),
                            found: found.dtype.clone(),
                            expected: format!("{dtype} (from the manifest)"),
                        });
                    }
                }
            }
        }
        if let (Some(path), Some(spec)) = (path, spec) {
            checked.push(ManifestPatch {
                path: path.to_owned(),
                spec,
                tensors: names,
            });
        }
    }
    if let (Some(file), true) = (file, all_names_read) {
        let mut extra: Vec<&String> = file.keys().filter(|key| !listed.contains(*key)).collect();
        extra.sort();
        problems.extend(
            extra
                .into_iter()
                .map(|name| AdapterProblem::UnexpectedTensor {
                    name: name.clone(),
                    file: TENSORS_FILE.into(),
                    reason: "the manifest does not list it".into(),
                }),
        );
    }
    checked
}
