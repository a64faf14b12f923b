//! A transformers model folder: `config.json` and `model.safetensors`.
use crate::error::ModelError;
use std::path::{Path, PathBuf};

/// The config file of a transformers folder.
pub const CONFIG_FILE: &str = "config.json";
/// The single-file checkpoint of a transformers folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The checkpoint file of `dir`. A sharded checkpoint (only an index) is refused by name:
/// this crate does not read shards yet.
pub(crate) fn weights_file(dir: &Path) -> Result<PathBuf, ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(single);
    }
    let message = if dir.join(WEIGHTS_INDEX_FILE).is_file() {
        format!(
            "a sharded checkpoint ({WEIGHTS_INDEX_FILE}) is not supported yet; only {WEIGHTS_FILE}"
        )
    } else {
        format!("no {WEIGHTS_FILE} (pytorch_model.bin and other pickle files are never read)")
    };
    Err(ModelError::Checkpoint {
        path: dir.to_owned(),
        message,
    })
}
