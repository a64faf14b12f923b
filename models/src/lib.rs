//! Transformer architectures written in tch, with transformers' tensor names and every
//! linear layer and embedding a [`Slot`](tch_patch::Slot), so tch-patch's rules, patch
//! strings and adapters reach them; loading of transformers checkpoint folders.
//!
//! One file per architecture, a config struct read from `config.json` (every field read,
//! accepted as information or refused by name), names as in transformers.
#![warn(missing_docs)]

mod config;
mod error;
mod folder;
pub mod llama;

pub use error::ModelError;
pub use folder::{CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};

use std::path::Path;
use tch::nn;
use tch_patch::load::{load_safetensors, LoadOptions};

impl llama::LlamaForCausalLM {
    /// Builds the model of a transformers folder (`config.json`, `model.safetensors`) at the
    /// root of `vs` and loads its weights: every key, shape and dtype checked before any
    /// tensor is written; a key the model lacks or a tensor the file lacks is an error.
    pub fn from_folder(dir: impl AsRef<Path>, vs: &nn::VarStore) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        let config = llama::LlamaConfig::from_file(dir.join(CONFIG_FILE))?;
        let weights = folder::weights_file(dir)?;
        let mut model = llama::LlamaForCausalLM::new(&vs.root(), &config);
        load_safetensors(&mut model, &weights, &LoadOptions::new())?;
        Ok(model)
    }
}
