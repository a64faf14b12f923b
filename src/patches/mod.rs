//! Patches that come with the library, each registered by name (see [`crate::registry`]):
//!
//! | name | patch | over | config |
//! |---|---|---|---|
//! | `lora` | [`Lora`] | any [`LinearLike`] | [`LoraConfig`] |
//! | `lora` | [`LoraEmbedding`] | `nn::Embedding` | [`LoraConfig`] |
//! | `dora` | [`Dora`] | any [`LinearLike`] | [`DoraConfig`] |
//! | `bias_only` | [`BiasOnly`] | any [`LinearLike`] | [`BiasOnlyConfig`] |
//! | `dropout_before` | [`DropoutBefore`] | any `nn::ModuleT` | [`DropoutBeforeConfig`] |
//! | `mostly_frozen_embedding` | [`MostlyFrozenEmbedding`] | `nn::Embedding` | [`MostlyFrozenEmbeddingConfig`] |
//! | `int8` | [`Int8Linear`] | `nn::Linear` | [`Int8Config`] |
//!
//! Each is built from its config with [`BuildPatch::build`] (which gives the parent back
//! on failure) or its own `new`.
//!
//! The train flag is tch's: the `train` argument of `nn::ModuleT::forward_t`. `Lora`,
//! `BiasOnly` and `DropoutBefore` are `nn::ModuleT` only, as tch's `nn::Dropout` is: their
//! `forward_t(xs, train)` applies dropout iff `train` and passes `train` on to their base,
//! so it reaches every layer of a stack (`Lora<DropoutBefore<..>>`, a slot's content).
//! There is no `forward(xs)` on them (calling one is a compile error), so no call can lose
//! the flag; eval is `forward_t(xs, false)`.
mod bias_only;
mod build;
mod dora;
#[cfg(test)]
mod dora_tests;
mod dropout_before;
mod dyn_linear;
mod int8_linear;
mod linear_like;
mod lora;
mod lora_embedding;
#[cfg(test)]
mod lora_embedding_tests;
mod lora_state;
mod mostly_frozen_embedding;
mod node_rewrites;

pub use bias_only::{BiasOnly, BiasOnlyConfig};
pub use build::{BuildError, BuildPatch};
pub use dora::{Dora, DoraConfig};
pub use dropout_before::{DropoutBefore, DropoutBeforeConfig};
pub use int8_linear::{Int8Config, Int8Linear};
pub use linear_like::LinearLike;
pub use lora::{Lora, LoraConfig};
pub use lora_embedding::LoraEmbedding;
pub use mostly_frozen_embedding::{MostlyFrozenEmbedding, MostlyFrozenEmbeddingConfig};
