//! LoRA on an embedding table, as PEFT's `lora.Embedding`: a trainable low-rank update of a
//! frozen `nn::Embedding`, mergeable into its table in place.
use super::build::{BuildError, BuildPatch};
use super::lora_state::LoraState;
use super::LoraConfig;
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use crate::registry::PatchArgs;
use crate::tree::{HyperValue, Hyperparameters};
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use tch::{nn, nn::Module, Tensor};

crate::patch_over!(LoraConfig, patch = LoraEmbedding);

/// An `nn::Embedding` plus a trainable low-rank update, PEFT's `lora.Embedding`: the output
/// is `base(x) + embedding(x, Aᵀ) @ Bᵀ * scale`, with `A: [rank, num_embeddings]` and
/// `B: [embedding_dim, rank]`. The patch string `lora(...)` puts it on `nn::Embedding`
/// slots (and [`Lora`](super::Lora) on linear ones), so `lora(targets="{embed,proj}")`
/// adapts both kinds, as PEFT's `target_modules=["embed", "proj"]` does.
///
/// * **Parameters**: `lora_embedding_a` and `lora_embedding_b`, registered under the
///   base's VarStore path (`emb.lora_embedding_a`); in PEFT's layout they are
///   `emb.lora_embedding_A` and `emb.lora_embedding_B` (no `.weight`), same shapes.
///   Initialised as PEFT does, the other way round from a linear LoRA: `A` zeros, `B`
///   standard normal, so a fresh adapter's output equals the base's.
/// * **Frozen base**: the table's lookup is the base's own forward, under `no_grad`, so the
///   table gets no gradient while its `requires_grad` and VarStore entry stay as they are.
/// * **The update's lookup** uses the base's `padding_idx`, `scale_grad_by_freq` and
///   `sparse` (read from the base, as PEFT's `_embed` passes them on): the padding
///   column of `A` gets no gradient.
/// * **Dropout**: none. PEFT builds `lora_dropout` for an embedding but never applies it
///   (its input is token ids); the config's `dropout` is accepted and has no effect here,
///   and forward does not depend on the train flag.
/// * **Merge**: [`merge`](Self::merge) adds `(B @ A)ᵀ * scale` into the table in place
///   (same tensor, same `data_ptr`), [`unmerge`](Self::unmerge) subtracts the very delta
///   it added (`A` and `B` are copied at merge time); while merged, forward skips the
///   update. Each table entry comes back within one rounding of each operation:
///   `|w' − w| ≤ 2⁻²³ (|w| + |Δ|)` in float32.
/// * **Disable**: [`set_enabled(false)`](Self::set_enabled) gives exactly the base output
///   (unmerging first if merged).
/// * **Undo**: `into_base()` gives the base back with its own tensors (while merged, with
///   the update in the table: PEFT's `merge_and_unload`; [`unload`](Self::unload)
///   unmerges first).
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::patches::{LoraConfig, LoraEmbedding};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "emb";
/// let emb = nn::embedding(&path, 32, 8, Default::default());
/// let mut lora = LoraEmbedding::new(emb, &path, &LoraConfig { rank: 4, ..Default::default() })?;
/// assert_eq!(lora.lora_embedding_a().size(), [4, 32]);
/// assert_eq!(lora.lora_embedding_b().size(), [8, 4]);
///
/// let ids = Tensor::from_slice(&[0i64, 5, 31]);
/// assert!(lora.forward(&ids).equal(&lora.base().forward(&ids))); // A starts at zero
/// let _ = tch::no_grad(|| lora.lora_embedding_a().shallow_clone().fill_(0.1));
/// let unmerged = lora.forward(&ids);
/// let ptr = lora.ws.data_ptr();
/// lora.merge()?;
/// assert!(lora.forward(&ids).allclose(&unmerged, 1e-5, 1e-5, false));
/// assert_eq!(lora.ws.data_ptr(), ptr); // merged in place
/// lora.unmerge()?;
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = nn::Embedding, name = "lora")]
pub struct LoraEmbedding {
    /// `A`, `[rank, num_embeddings]`.
    #[param]
    lora_embedding_a: Tensor,
    /// `B`, `[embedding_dim, rank]`.
    #[param]
    lora_embedding_b: Tensor,
    state: LoraState,
    lookup: Lookup,
}

/// The lookup options of the base that tch keeps private, read through its
/// [`Hyperparameters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lookup {
    padding_idx: i64,
    scale_grad_by_freq: bool,
    sparse: bool,
}

impl Lookup {
    fn of(base: &nn::Embedding) -> Self {
        let mut lookup = Lookup {
            padding_idx: -1,
            scale_grad_by_freq: false,
            sparse: false,
        };
        for (name, value) in base.hyperparameters() {
            match (name, value) {
                ("padding_idx", HyperValue::Int(index)) => lookup.padding_idx = index,
                ("scale_grad_by_freq", HyperValue::Bool(on)) => lookup.scale_grad_by_freq = on,
                ("sparse", HyperValue::Bool(on)) => lookup.sparse = on,
                _ => {}
            }
        }
        lookup
    }
}

impl LoraEmbedding {
    /// Patches `base` with a fresh adapter; `path` is where `base` lives in its VarStore
    /// (`lora_embedding_a` and `lora_embedding_b` are registered there).
    ///
    /// Errors, with `base` dropped and the VarStore unchanged (use [`BuildPatch::build`]
    /// to get `base` back): a config outside its schema (`rank: 0`...), a table that is
    /// not 2-D or not floating point, names already taken at `path`.
    pub fn new(base: nn::Embedding, path: &nn::Path, config: &LoraConfig) -> Result<Self> {
        Self::build(base, path, config).map_err(|failed| failed.error)
    }

    /// The config the adapter was built with (its `dropout` has no effect here).
    pub fn config(&self) -> &LoraConfig {
        &self.state.config
    }

    /// The factor of the update (see [`LoraConfig::scaling`]).
    pub fn scaling(&self) -> f64 {
        self.state.scaling
    }

    /// `A`, `[rank, num_embeddings]`: the VarStore's tensor.
    pub fn lora_embedding_a(&self) -> &Tensor {
        &self.lora_embedding_a
    }

    /// `B`, `[embedding_dim, rank]`: the VarStore's tensor.
    pub fn lora_embedding_b(&self) -> &Tensor {
        &self.lora_embedding_b
    }

    /// Whether the update is merged into the table.
    pub fn is_merged(&self) -> bool {
        self.state.is_merged()
    }

    /// Whether the adapter is enabled.
    pub fn is_enabled(&self) -> bool {
        self.state.is_enabled()
    }

    /// The update `(B @ A)ᵀ * scale` in the table's layout, `[num_embeddings,
    /// embedding_dim]` (PEFT's `get_delta_weight`), as a new tensor with no graph.
    pub fn delta_weight(&self) -> Result<Tensor> {
        self.delta()(&self.lora_embedding_a, &self.lora_embedding_b)
    }

    /// How the update is computed from `A` and `B`, without borrowing `self`.
    fn delta(&self) -> impl Fn(&Tensor, &Tensor) -> Result<Tensor> {
        let scaling = self.state.scaling;
        move |a, b| {
            tch::no_grad(|| b.f_matmul(a)?.f_transpose(0, 1)?.f_mul_scalar(scaling))
                .map_err(PatchError::torch("computing the LoRA update (B @ A)ᵀ"))
        }
    }

    /// Adds the update into the table in place (the same tensor, same storage), so forward
    /// is one lookup. Does nothing if already merged. An error, changing nothing, if the
    /// adapter is disabled.
    pub fn merge(&mut self) -> Result<()> {
        let delta = self.delta();
        let pair = (&self.lora_embedding_a, &self.lora_embedding_b);
        self.state.merge(&self.base.ws, pair, delta)
    }

    /// Subtracts the merged update from the table in place. Does nothing if not merged.
    pub fn unmerge(&mut self) -> Result<()> {
        let delta = self.delta();
        self.state.unmerge(&self.base.ws, delta)
    }

    /// Enables or disables the adapter without unpatching: disabled, forward is exactly
    /// the base's. Disabling a merged adapter unmerges it first.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        let delta = self.delta();
        self.state.set_enabled(enabled, &self.base.ws, delta)
    }

    /// Unmerges if merged, then gives the base back with its original table.
    pub fn unload(mut self) -> Result<nn::Embedding> {
        self.unmerge()?;
        Ok(self.base)
    }

    /// Merges (if enabled and not yet merged), then gives the base back with the update in
    /// its table: PEFT's `merge_and_unload`.
    pub fn merge_and_unload(mut self) -> Result<nn::Embedding> {
        if self.state.is_enabled() {
            self.merge()?;
        }
        Ok(self.base)
    }
}

#[patch_forward]
impl LoraEmbedding {
    /// The base's lookup (frozen), plus `embedding(xs, Aᵀ) @ Bᵀ * scale` unless disabled
    /// or merged.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let base = tch::no_grad(|| self.base.forward(xs));
        if !self.state.adds_update() {
            return base;
        }
        let Lookup {
            padding_idx,
            scale_grad_by_freq,
            sparse,
        } = self.lookup;
        let after_a = Tensor::embedding(
            &self.lora_embedding_a.tr(),
            xs,
            padding_idx,
            scale_grad_by_freq,
            sparse,
        );
        base + after_a.matmul(&self.lora_embedding_b.tr()) * self.state.scaling
    }
}

impl BuildPatch<nn::Embedding> for LoraEmbedding {
    type Config = LoraConfig;

    fn build(
        base: nn::Embedding,
        path: &nn::Path,
        config: &LoraConfig,
    ) -> Result<Self, BuildError<nn::Embedding>> {
        match init(&base, path, config) {
            Ok([lora_embedding_a, lora_embedding_b]) => Ok(LoraEmbedding {
                lookup: Lookup::of(&base),
                base,
                lora_embedding_a,
                lora_embedding_b,
                state: LoraState::new(config),
            }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

/// Checks everything, then makes and registers `A` (zeros) and `B` (standard normal).
fn init(base: &nn::Embedding, path: &nn::Path, config: &LoraConfig) -> Result<[Tensor; 2]> {
    config.validate()?;
    let table = &base.ws;
    let size = table.size();
    let &[rows, dim] = size.as_slice() else {
        return Err(PatchError::ShapeMismatch {
            name: "weight".into(),
            actual: size,
            expected: "[num_embeddings, embedding_dim]".into(),
        });
    };
    if !table.is_floating_point() {
        return Err(PatchError::KindMismatch {
            name: "weight".into(),
            actual: table.kind(),
            expected: "a floating-point dtype".into(),
        });
    }
    let options = (table.kind(), table.device());
    let (a, b) = tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
        let a = Tensor::f_zeros([config.rank, rows], options)?;
        let b = Tensor::f_empty([dim, config.rank], options)?.f_normal_(0.0, 1.0)?;
        Ok((a, b))
    })
    .map_err(PatchError::torch("allocating the LoRA matrices"))?;
    register_tensors(
        path,
        [
            ("lora_embedding_a", a, TensorRole::Param),
            ("lora_embedding_b", b, TensorRole::Param),
        ],
    )
}
