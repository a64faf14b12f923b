//! A transformers model folder: `config.json` and `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`.
use crate::error::ModelError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::Kind;
use tch_patch::load::{load_safetensors_with, LoadOptions};
use tch_patch::tree::ModuleTreeExt;
use tch_patch::{named_tensors, Parameters, PatchError};

/// The config file of a transformers folder.
pub const CONFIG_FILE: &str = "config.json";
/// The single-file checkpoint of a transformers folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The dtype a model is loaded in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadDtype {
    /// The dtype the config says the weights are stored in (`dtype`, or the older
    /// `torch_dtype`; float32 when neither is set). A tensor stored in another dtype is an
    /// error naming it, never a silent cast.
    #[default]
    AsStored,
    /// Every weight converted to this floating kind on the way in.
    Convert(Kind),
}

/// Where the weights of a folder are.
enum Weights {
    Single(PathBuf),
    /// Shard files (sorted, deduplicated) and which shard holds each key.
    Sharded {
        shards: Vec<PathBuf>,
        weight_map: BTreeMap<String, String>,
    },
}

fn weights(dir: &Path) -> Result<Weights, ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(Weights::Single(single));
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if !index.is_file() {
        return Err(ModelError::Checkpoint {
            path: dir.to_owned(),
            message: format!(
                "neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} (pickle files such as pytorch_model.bin are never read)"
            ),
        });
    }
    let invalid = |message: String| ModelError::Checkpoint {
        path: index.clone(),
        message,
    };
    let object = crate::config::read_object(&index)?;
    let map = match object.get("weight_map") {
        Some(serde_json::Value::Object(map)) => map,
        _ => return Err(invalid("no `weight_map` object".into())),
    };
    let mut weight_map = BTreeMap::new();
    for (key, file) in map {
        let Some(file) = file.as_str() else {
            return Err(invalid(format!("`weight_map.{key}` is not a file name")));
        };
        // A shard is a file of this folder: no path separators, no `..`.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(invalid(format!(
                "`weight_map.{key}` = {file:?} is not a file of the folder"
            )));
        }
        weight_map.insert(key.clone(), file.to_owned());
    }
    let shards: BTreeSet<&String> = weight_map.values().collect();
    let shards = shards.into_iter().map(|file| dir.join(file)).collect();
    Ok(Weights::Sharded { shards, weight_map })
}

/// The kind a model is loaded in: the stored one, or a floating kind asked for.
pub(crate) fn target_kind(dir: &Path, dtype: LoadDtype, stored: Kind) -> Result<Kind, ModelError> {
    match dtype {
        LoadDtype::AsStored => Ok(stored),
        LoadDtype::Convert(kind @ (Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)) => {
            Ok(kind)
        }
        LoadDtype::Convert(kind) => Err(ModelError::Checkpoint {
            path: dir.to_owned(),
            message: format!("cannot load the weights as {kind:?}: not a floating kind"),
        }),
    }
}

/// The config name of a floating kind (the inverse of [`stored_kind`]).
pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

/// Writes `config` and every tensor of `model` as a transformers folder. A patched model
/// is refused (its patches' tensors are no part of the base): save its adapter with
/// `tch_patch::peft::save_model_lora`, the base before patching it.
pub(crate) fn save_folder<M: Parameters + tch_patch::ModuleTree>(
    dir: &Path,
    config: &serde_json::Value,
    model: &M,
) -> Result<(), ModelError> {
    if let Some((path, slot)) = model
        .slots()
        .into_iter()
        .find(|(_, slot)| slot.is_patched())
    {
        return Err(ModelError::Checkpoint {
            path: dir.to_owned(),
            message: format!(
                "slot `{path}` holds {:?}: a transformers folder holds a base model; save the adapter with peft::save_model_lora",
                slot.patch_names()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let text = serde_json::to_string_pretty(config).expect("a JSON value prints");
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, text).map_err(|source| ModelError::Io {
        path: config_path,
        source,
    })?;
    tch_patch::save::save_module(model, dir.join(WEIGHTS_FILE), "")?;
    Ok(())
}

/// The kind named by a config's `dtype` (or `torch_dtype`) field.
pub(crate) fn stored_kind(config: &Path, name: Option<&str>) -> Result<Kind, ModelError> {
    match name.unwrap_or("float32") {
        "float32" => Ok(Kind::Float),
        "bfloat16" => Ok(Kind::BFloat16),
        "float16" => Ok(Kind::Half),
        other => Err(ModelError::UnsupportedField {
            path: config.to_owned(),
            field: "dtype".into(),
            value: format!("{other:?}"),
            supported: "\"float32\", \"bfloat16\", \"float16\"".into(),
        }),
    }
}

/// Loads the weights of `dir` into `model` (whose tensors are already in the target kind),
/// every key of every file checked. A sharded checkpoint is loaded shard by shard into a
/// model nobody else holds yet, so an error drops the model: no half-loaded model is ever
/// returned. Each shard must hold exactly the keys the index gives it.
pub(crate) fn load_weights<M: Parameters>(
    model: &mut M,
    dir: &Path,
    dtype: LoadDtype,
) -> Result<(), ModelError> {
    let cast = |_: &str, tensor: tch::Tensor| match dtype {
        LoadDtype::AsStored => Ok(tensor),
        LoadDtype::Convert(kind) => tensor
            .f_to_kind(kind)
            .map_err(PatchError::torch("converting a weight")),
    };
    match weights(dir)? {
        Weights::Single(path) => {
            load_safetensors_with(model, &path, &LoadOptions::new(), cast)?;
        }
        Weights::Sharded { shards, weight_map } => {
            let mut loaded = BTreeSet::new();
            for shard in &shards {
                let report = load_safetensors_with(
                    model,
                    shard,
                    &LoadOptions::new().allow_missing(true),
                    cast,
                )?;
                let file = shard
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default();
                for name in report.loaded {
                    if weight_map.get(&name).map(String::as_str) != Some(file) {
                        return Err(ModelError::Checkpoint {
                            path: shard.clone(),
                            message: format!(
                                "holds `{name}`, which {WEIGHTS_INDEX_FILE} does not place in it"
                            ),
                        });
                    }
                    loaded.insert(name);
                }
            }
            let unplaced: Vec<&String> = weight_map
                .keys()
                .filter(|key| !loaded.contains(*key))
                .collect();
            if let Some(key) = unplaced.first() {
                return Err(ModelError::Checkpoint {
                    path: dir.join(&weight_map[*key]),
                    message: format!("lacks `{key}`, which {WEIGHTS_INDEX_FILE} places in it"),
                });
            }
            let missing: Vec<String> = named_tensors(&*model)
                .into_iter()
                .map(|t| t.name)
                .filter(|name| !loaded.contains(name))
                .collect();
            if !missing.is_empty() {
                return Err(ModelError::Checkpoint {
                    path: dir.to_owned(),
                    message: format!("no shard holds {}", missing.join(", ")),
                });
            }
        }
    }
    Ok(())
}
