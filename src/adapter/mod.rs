//! Adapter files: save only what patches added, load it onto a fresh copy of the base
//! model; PEFT's layout for LoRA; TorchScript export of a patched model.
//!
//! The API is over plain data, [`AdapterEntry`]: a patched path, the patch's spec (name
//! and checked arguments, from [`PatchArgs::to_spec`](crate::registry::PatchArgs::to_spec)
//! or a patch string) and the tensors the patch added.
//!
//! * [`save_adapter`] / [`read_adapter`]: this library's adapter folder, two files:
//!   `adapter.safetensors` (only the patches' tensors, keyed by full dotted name) and
//!   `adapter.json`, the manifest. Reading checks everything (JSON, format version,
//!   patches through the registry, every tensor's presence, shape and dtype) and
//!   reports every problem in one [`AdapterError`].
//! * [`AdapterManifest::from_json`] / [`AdapterManifest::to_json`]: the manifest alone,
//!   parsed and checked from bytes (what `read_adapter` checks of it), and written back.
//! * [`apply_lora_adapter`]: re-creates LoRA patches from entries onto linear modules
//!   given by path, with the saved values.
//! * [`save_peft_lora`](crate::peft::save_peft_lora) / [`read_peft_lora`](crate::peft::read_peft_lora): PEFT's layout (`adapter_config.json`,
//!   `adapter_model.safetensors`), so LoRA adapters move between Python PEFT and Rust.
//! * [`trace_module`](crate::export::trace_module) / [`trace`](crate::export::trace), [`save_torchscript`](crate::export::save_torchscript), [`load_torchscript`](crate::export::load_torchscript): a patched
//!   model as TorchScript, for `torch.jit.load` in Python.
//!
//! A manifest (`adapter.json`, pretty-printed; arrays shown on one line here) of one
//! LoRA patch:
//!
//! ```json
//! {
//!   "format": "tch-patch-adapter",
//!   "format_version": 1,
//!   "library": "tch-patch",
//!   "library_version": "0.1.0",
//!   "patches": [
//!     {
//!       "path": "blocks.0.attn.q",
//!       "patch": "lora",
//!       "targets": "*.attn.q",
//!       "args": { "alpha": 16.0, "dropout": 0.0, "rank": 4, "use_rslora": false },
//!       "tensors": [
//!         { "name": "blocks.0.attn.q.lora_a", "shape": [4, 64], "dtype": "F32" },
//!         { "name": "blocks.0.attn.q.lora_b", "shape": [64, 4], "dtype": "F32" }
//!       ]
//!     }
//!   ],
//!   "save_id": "187d5c1e9a3b2f40-1a2b-0"
//! }
//! ```
//!
//! `save_id` is also in `adapter.safetensors`' metadata: each file is written atomically,
//! but the pair cannot be, so a save interrupted between its two files leaves two ids, and
//! reading refuses the pair ([`AdapterProblem::MixedSaves`]) instead of pairing a manifest
//! with the tensors of another save.
//!
//! Every file is written through one private function, after every check passed.
mod apply;
mod args;
pub(crate) mod check_entries;
mod dtype;
pub(crate) mod entry;
mod error;
pub(crate) mod io;
pub(crate) mod json;
pub(crate) mod load_model;
#[cfg(test)]
mod load_model_tests;
mod manifest;
mod model;
pub(crate) mod problem;
mod read;
mod read_manifest;
pub(crate) mod save;
pub(crate) mod tensors;

pub use apply::{apply_lora_adapter, apply_lora_adapter_with};
pub use dtype::AdapterDtype;
pub use entry::{Adapter, AdapterEntry, AdapterSummary};
pub use error::AdapterError;
pub use load_model::{load_model_adapter, load_model_adapter_with};
pub use manifest::{AdapterManifest, ManifestPatch, ManifestTensor};
pub use model::{model_adapter_entries, save_model_adapter};
pub use problem::AdapterProblem;
pub use read::{read_adapter, read_adapter_with};
pub use read_manifest::{
    ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, LIBRARY_VERSION, MANIFEST_FILE, TENSORS_FILE,
};
pub use save::{save_adapter, save_adapter_with};
