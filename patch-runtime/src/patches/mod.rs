//! Patches that come with the library.
mod mostly_frozen_embedding;

pub use mostly_frozen_embedding::MostlyFrozenEmbedding;
