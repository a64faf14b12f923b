//! Patches that come with the library, each registered by name (see [`crate::registry`]):
//!
//! | name | patch | over | config |
//! |---|---|---|---|
//! | `lora` | [`Lora`] | any [`LinearLike`] | [`LoraConfig`] |
//! | `bias_only` | [`BiasOnly`] | any [`LinearLike`] | [`BiasOnlyConfig`] |
//! | `dropout_before` | [`DropoutBefore`] | any `nn::Module` | [`DropoutBeforeConfig`] |
//! | `mostly_frozen_embedding` | [`MostlyFrozenEmbedding`] | `nn::Embedding` | [`MostlyFrozenEmbeddingConfig`] |
//!
//! Each is built from its config with [`BuildPatch::build`] (which gives the parent back
//! on failure) or its own `new`.
mod bias_only;
mod build;
mod dropout_before;
mod dyn_linear;
mod linear_like;
mod lora;
mod mostly_frozen_embedding;

pub use bias_only::{BiasOnly, BiasOnlyConfig};
pub use build::{BuildError, BuildPatch, TrainMode};
pub use dropout_before::{DropoutBefore, DropoutBeforeConfig};
pub use linear_like::LinearLike;
pub use lora::{Lora, LoraConfig};
pub use mostly_frozen_embedding::{MostlyFrozenEmbedding, MostlyFrozenEmbeddingConfig};
