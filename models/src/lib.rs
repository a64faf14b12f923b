//! Transformer architectures written in tch, with transformers' tensor names and every
//! linear layer and embedding a [`Slot`](tch_patch::Slot), so tch-patch's rules, patch
//! strings and adapters reach them; loading of transformers checkpoint folders.
//!
//! One file per architecture, a config struct read from `config.json` (every field read,
//! accepted as information or refused by name), names as in transformers.
#![warn(missing_docs)]

mod config;
pub mod decoding;
mod error;
mod folder;
pub mod gpt2;
pub mod llama;

pub use error::ModelError;
pub use folder::{LoadDtype, CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};

use std::path::Path;
use tch::nn;

macro_rules! from_folder {
    ($model:ty, $config:ty) => {
        impl $model {
            /// Builds the model of a transformers folder (`config.json`, and
            /// `model.safetensors` or the shards of `model.safetensors.index.json`) at the
            /// root of `vs`, in the dtype the weights are stored in, and loads them: every
            /// key, shape and dtype checked; a key the model lacks or a tensor no file holds
            /// is an error, and no model is returned. Every variable of `vs` takes that
            /// dtype: give the model a VarStore of its own.
            pub fn from_folder(
                dir: impl AsRef<Path>,
                vs: &mut nn::VarStore,
            ) -> Result<Self, ModelError> {
                Self::from_folder_with(dir, vs, LoadDtype::AsStored)
            }

            /// [`from_folder`](Self::from_folder) with the dtype chosen: as stored, or every
            /// weight converted to a floating kind.
            pub fn from_folder_with(
                dir: impl AsRef<Path>,
                vs: &mut nn::VarStore,
                dtype: LoadDtype,
            ) -> Result<Self, ModelError> {
                let dir = dir.as_ref();
                let config = <$config>::from_file(dir.join(CONFIG_FILE))?;
                let kind = folder::target_kind(dir, dtype, config.dtype)?;
                // The kind first, so that the skeleton is allocated in it.
                vs.set_kind(kind);
                let skeleton = <$model>::skeleton(vs, &config);
                folder::load_weights(skeleton, dir, dtype)
            }
        }
    };
}

from_folder!(llama::LlamaForCausalLM, llama::LlamaConfig);

impl llama::LlamaForCausalLM {
    /// Writes the model as a transformers folder (`config.json`, `model.safetensors`) that
    /// Python loads with `LlamaForCausalLM.from_pretrained(dir)`. A patched model is refused:
    /// save the base before patching, and the adapter with `tch_patch::peft::save_model_lora`.
    pub fn save_folder(&self, dir: impl AsRef<Path>) -> Result<(), ModelError> {
        folder::save_folder(dir.as_ref(), &self.config().to_json(), self)
    }
}
from_folder!(gpt2::Gpt2LmHeadModel, gpt2::Gpt2Config);
