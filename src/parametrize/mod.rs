//! Parametrizations: a module's forward sees a transform of some of its tensors, while the
//! originals stay where they were (`torch.nn.utils.parametrize`, qsparse's `imitate`).
//!
//! - [`Transform`]: what is computed from a tensor; closures are transforms too.
//! - [`Parametrized`]: the module wrapper; its forward sees the transformed tensors,
//!   [`with_transformed`](Parametrized::with_transformed) lends the module with them in
//!   place, [`cached`](Parametrized::cached) computes them once for a scope, and
//!   [`remove`](Parametrized::remove) bakes them into the originals in place or drops them.
//!   A `Parametrized` wrapped in another applies first, as a transform pushed earlier.
//! - Built-in transforms: [`MagnitudePrune`], [`FakeQuantInt8`], [`WeightNorm`].
mod axes;
mod error;
mod fake_quant;
mod forward;
mod nesting;
pub(crate) use nesting::{Inner, InnerMut};
mod parametrized;
mod prune;
mod registration;
mod removal;
mod traits;
mod transform;
mod weight_norm;

pub use error::ParametrizeError;
pub use fake_quant::{FakeQuantInt8, Granularity};
pub use parametrized::{parametrize, Parametrized};
pub use prune::{sparsity_of, MagnitudePrune};
pub use removal::Removal;
pub use transform::{FnTransform, Transform};
pub use weight_norm::WeightNorm;
