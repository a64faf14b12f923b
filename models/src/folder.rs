//! A transformers model folder: `config.json` and `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`.
use crate::error::ModelError;
use std::path::Path;
use tch::Kind;
use tch_patch::load::{LoadOptions, Skeleton};
use tch_patch::tree::ModuleTreeExt;
use tch_patch::Parameters;

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

/// Loads the weights of `dir` into `skeleton` (allocated in the target kind): every key of
/// every file checked from the headers before the first tensor is read, then each tensor
/// read straight into the model's memory (converted on the way with
/// [`LoadDtype::Convert`]), one shard at a time. An error drops the skeleton: no
/// half-loaded model is ever returned. Each shard must hold exactly the keys the index
/// gives it.
pub(crate) fn load_weights<M: Parameters>(
    skeleton: Skeleton<M>,
    dir: &Path,
    dtype: LoadDtype,
) -> Result<M, ModelError> {
    let options = LoadOptions::new().convert_dtype(matches!(dtype, LoadDtype::Convert(_)));
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(skeleton.load(&single, &options)?);
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
    Ok(skeleton.load_sharded(&index, &options)?)
}
