//! LoRA (Hu et al. 2021, as PEFT implements it): a trainable low-rank update next to a
//! frozen linear-like module, mergeable into its weight in place.
use super::build::{BuildError, BuildPatch};
use super::linear_like::{self, Detached, LinearLike};
use super::lora_state::LoraState;
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use crate::registry::PatchArgs;
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use tch::{nn, Tensor};

/// LoRA: adds a trainable low-rank update `B @ A * scale` to a frozen linear layer
/// (`Lora`) or embedding (`LoraEmbedding`, where `dropout` has no effect, as in PEFT).
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "lora", default, patch = Lora<_>, over(nn::Linear))]
pub struct LoraConfig {
    /// rank r of the update B @ A
    #[arg(default = 8, range = 1..=4096)]
    pub rank: i64,
    /// scale numerator: the update is multiplied by alpha / rank (alpha / sqrt(rank) with use_rslora)
    #[arg(default = 16.0)]
    pub alpha: f64,
    /// dropout probability on the input of the update, in training mode only
    #[arg(default = 0.0, range = 0.0..=1.0)]
    pub dropout: f64,
    /// rank-stabilised scaling: alpha / sqrt(rank) instead of alpha / rank
    #[arg(default = false)]
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The factor of the update: `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

/// A linear-like module `L` plus a trainable low-rank update: the output is
/// `base(x) + dropout(x) @ Aᵀ @ Bᵀ * scale`, with `A: [rank, in]`, `B: [out, rank]`.
///
/// * **Parameters**: `lora_a` and `lora_b`, registered under the base's VarStore path
///   (`fc.lora_a`, `fc.lora_b`), so an optimizer built from the VarStore trains them. In
///   PEFT's layout they are `fc.lora_A.weight` and `fc.lora_B.weight`, same shapes.
///   Initialised as PEFT does: `A` Kaiming-uniform (`a = √5`, i.e. `U(±1/√in)`), `B`
///   zeros, so a fresh adapter's output equals the base's.
/// * **Frozen base**: the base runs through [`LinearLike::forward_detached`], so neither
///   its weight nor its bias gets a gradient, while the input does (layers before it
///   still train). The base's tensors, their `requires_grad` and VarStore entries are
///   left as they are.
/// * **Train flag**: an `nn::ModuleT` only, as tch's `nn::Dropout`. `forward_t(xs, train)`
///   passes `train` on to the base, and dropout (config `dropout`, `0 <= p <= 1`) applies
///   to the input of the update only, iff `train`. There is no `forward(xs)`, which could
///   only guess the flag: `lora.forward(&xs)` is a compile error (not the base's forward
///   through `Deref`).
/// * **Merge**: [`merge`](Self::merge) adds `B @ A * scale` into the base weight in place
///   (same tensor, same `data_ptr`), [`unmerge`](Self::unmerge) subtracts it back; while
///   merged, forward skips the update (never counted twice) and `A`, `B` get no gradient.
///   Unmerging subtracts the very delta that was added (`A` and `B` are copied at merge
///   time, `rank × (in + out)` numbers), so it is exact when the arithmetic is: a zero
///   update, or values that add without rounding. Otherwise each weight entry comes back
///   within one rounding of each operation: `|w' − w| ≤ 2⁻²³ (|w| + |Δ|)` in float32
///   (measured in `tests/lora.rs`).
/// * **Disable**: [`set_enabled(false)`](Self::set_enabled) gives exactly the base output
///   (unmerging first if merged).
/// * **Undo**: `into_base()` gives the base back with its own tensors. While merged, the
///   base keeps the merged weight (PEFT's `merge_and_unload`): call [`unload`](Self::unload)
///   to unmerge first.
///
/// ```
/// use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::patches::{Lora, LoraConfig};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "q";
/// let linear = nn::linear(&path, 8, 8, Default::default());
/// let mut lora = Lora::new(linear, &path, &LoraConfig { rank: 2, ..Default::default() })?;
/// assert!(vs.variables().contains_key("q.lora_a") && vs.variables().contains_key("q.lora_b"));
///
/// let xs = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
/// assert!(lora.forward_t(&xs, false).equal(&lora.base().forward(&xs))); // B starts at zero
/// let mut b = lora.lora_b().shallow_clone();
/// tch::no_grad(|| b.copy_(&Tensor::randn([8, 2], (Kind::Float, Device::Cpu))));
/// let unmerged = xs.apply_t(&lora, true); // `train`: dropout (0 here) on the update's input
/// let ptr = lora.ws.data_ptr();
/// lora.merge()?;
/// assert!(lora.forward_t(&xs, false).allclose(&unmerged, 1e-5, 1e-5, false));
/// assert_eq!(lora.ws.data_ptr(), ptr); // merged in place
/// lora.unmerge()?;
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = L, name = "lora", module_t)]
pub struct Lora<L: LinearLike> {
    /// `A`, `[rank, in_features]`.
    #[param]
    lora_a: Tensor,
    /// `B`, `[out_features, rank]`.
    #[param]
    lora_b: Tensor,
    state: LoraState,
}

impl<L: LinearLike> Lora<L> {
    /// Patches `base` with a fresh adapter; `path` is where `base` lives in its VarStore
    /// (`lora_a` and `lora_b` are registered there).
    ///
    /// Errors, with `base` dropped and the VarStore unchanged (use [`BuildPatch::build`]
    /// to get `base` back): a config outside its schema (`rank: 0`...), a weight that is
    /// not 2-D or not floating point, names already taken at `path`.
    pub fn new(base: L, path: &nn::Path, config: &LoraConfig) -> Result<Self> {
        Self::build(base, path, config).map_err(|failed| failed.error)
    }

    /// The config the adapter was built with.
    pub fn config(&self) -> &LoraConfig {
        &self.state.config
    }

    /// The factor of the update (see [`LoraConfig::scaling`]).
    pub fn scaling(&self) -> f64 {
        self.state.scaling
    }

    /// `A`, `[rank, in_features]`: the VarStore's tensor.
    pub fn lora_a(&self) -> &Tensor {
        &self.lora_a
    }

    /// `B`, `[out_features, rank]`: the VarStore's tensor.
    pub fn lora_b(&self) -> &Tensor {
        &self.lora_b
    }

    /// Whether the update is merged into the base weight.
    pub fn is_merged(&self) -> bool {
        self.state.is_merged()
    }

    /// Whether the adapter is enabled.
    pub fn is_enabled(&self) -> bool {
        self.state.is_enabled()
    }

    /// The update `B @ A * scale` in the base weight's layout (`[out, in]`, or transposed
    /// to `[in, out]` for a [`fan_in_fan_out`](LinearLike::fan_in_fan_out) base, as PEFT's
    /// `get_delta_weight`), as a new tensor with no graph.
    pub fn delta_weight(&self) -> Result<Tensor> {
        self.delta()(&self.lora_a, &self.lora_b)
    }

    /// How the update is computed from `A` and `B`, without borrowing `self`.
    fn delta(&self) -> impl Fn(&Tensor, &Tensor) -> Result<Tensor> {
        let (scaling, fan_in_fan_out) = (self.state.scaling, self.base.fan_in_fan_out());
        move |a, b| delta(a, b, scaling, fan_in_fan_out)
    }

    /// Adds the update into the base weight in place (the same tensor, same storage), so
    /// forward costs one matmul. Does nothing if already merged. An error, changing
    /// nothing, if the adapter is disabled.
    pub fn merge(&mut self) -> Result<()> {
        let delta = self.delta();
        let pair = (&self.lora_a, &self.lora_b);
        self.state.merge(self.base.weight(), pair, delta)
    }

    /// Subtracts the merged update from the base weight in place. Does nothing if not
    /// merged.
    pub fn unmerge(&mut self) -> Result<()> {
        let delta = self.delta();
        self.state.unmerge(self.base.weight(), delta)
    }

    /// Enables or disables the adapter without unpatching: disabled, forward is exactly
    /// the base's. Disabling a merged adapter unmerges it first.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        let delta = self.delta();
        self.state.set_enabled(enabled, self.base.weight(), delta)
    }

    /// Unmerges if merged, then gives the base back with its original weight.
    pub fn unload(mut self) -> Result<L> {
        self.unmerge()?;
        Ok(self.base)
    }

    /// Merges (if enabled and not yet merged), then gives the base back with the update in
    /// its weight: PEFT's `merge_and_unload`.
    pub fn merge_and_unload(mut self) -> Result<L> {
        if self.state.is_enabled() {
            self.merge()?;
        }
        Ok(self.base)
    }

    /// The update's output for `xs`, or `None` when it does not apply (disabled, merged);
    /// dropout on its input iff `train`.
    fn update(&self, xs: &Tensor, train: bool, detached: bool) -> Option<Tensor> {
        if !self.state.adds_update() {
            return None;
        }
        let input = dropped_input(xs, self.state.config.dropout, train);
        let (a, b) = if detached {
            (
                linear_like::detached(&self.lora_a),
                linear_like::detached(&self.lora_b),
            )
        } else {
            (Detached::Same(&self.lora_a), Detached::Same(&self.lora_b))
        };
        Some(
            input
                .linear::<&Tensor>(&a, None)
                .linear::<&Tensor>(&b, None)
                * self.state.scaling,
        )
    }
}

#[patch_forward]
impl<L: LinearLike> Lora<L> {
    /// The base's output (frozen, given `train`), plus the update unless disabled or
    /// merged (dropout on its input iff `train`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base.forward_detached(xs, train);
        match self.update(xs, train, false) {
            Some(update) => base + update,
            None => base,
        }
    }
}

/// `xs` with dropout `p` applied iff `train` and `p > 0`: the input of a LoRA update.
pub(super) fn dropped_input(xs: &Tensor, p: f64, train: bool) -> Detached<'_> {
    if train && p > 0.0 {
        Detached::Cut(xs.dropout(p, true))
    } else {
        Detached::Same(xs)
    }
}

/// `B @ A * scaling`, transposed first for a `fan_in_fan_out` weight (PEFT's order of
/// operations, so that merges agree with PEFT's bit for bit).
pub(super) fn delta(a: &Tensor, b: &Tensor, scaling: f64, fan_in_fan_out: bool) -> Result<Tensor> {
    tch::no_grad(|| {
        let product = b.f_matmul(a)?;
        let product = if fan_in_fan_out {
            product.f_transpose(0, 1)?
        } else {
            product
        };
        product.f_mul_scalar(scaling)
    })
    .map_err(PatchError::torch("computing the LoRA update B @ A"))
}

impl<L: LinearLike> BuildPatch<L> for Lora<L> {
    type Config = LoraConfig;

    fn build(base: L, path: &nn::Path, config: &LoraConfig) -> Result<Self, BuildError<L>> {
        match init(&base, path, config) {
            Ok([lora_a, lora_b]) => Ok(Lora {
                base,
                lora_a,
                lora_b,
                state: LoraState::new(config),
            }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

/// Checks everything, then makes and registers `A` and `B`.
fn init<L: LinearLike>(base: &L, path: &nn::Path, config: &LoraConfig) -> Result<[Tensor; 2]> {
    config.validate()?;
    let (a, b) = matrices(base, config)?;
    register_tensors(
        path,
        [
            ("lora_a", a, TensorRole::Param),
            ("lora_b", b, TensorRole::Param),
        ],
    )
}

/// Checks `base`'s weight (2-D, floating point), then makes `A` (Kaiming-uniform, as PEFT)
/// and `B` (zeros) of `config.rank` for it, not registered. `config` is valid.
pub(super) fn matrices<L: LinearLike>(base: &L, config: &LoraConfig) -> Result<(Tensor, Tensor)> {
    let weight = base.weight();
    let size = weight.size();
    if size.len() != 2 {
        return Err(PatchError::ShapeMismatch {
            name: "weight".into(),
            actual: size,
            expected: if base.fan_in_fan_out() {
                "[in_features, out_features]".into()
            } else {
                "[out_features, in_features]".into()
            },
        });
    }
    let (out, inp) = (base.out_features(), base.in_features());
    if !weight.is_floating_point() {
        return Err(PatchError::KindMismatch {
            name: "weight".into(),
            actual: weight.kind(),
            expected: "a floating-point dtype".into(),
        });
    }
    let options = (weight.kind(), weight.device());
    // PEFT: kaiming_uniform_(a=√5) on [rank, in], whose bound is 1/√in.
    let bound = 1.0 / (inp.max(1) as f64).sqrt();
    let (a, b) = tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
        let a = Tensor::f_empty([config.rank, inp], options)?.f_uniform_(-bound, bound)?;
        let b = Tensor::f_zeros([out, config.rank], options)?;
        Ok((a, b))
    })
    .map_err(PatchError::torch("allocating the LoRA matrices"))?;
    Ok((a, b))
}

impl<L: LinearLike> LinearLike for Lora<L> {
    fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    fn fan_in_fan_out(&self) -> bool {
        self.base.fan_in_fan_out()
    }

    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base.forward_detached(xs, train);
        match self.update(xs, train, true) {
            Some(update) => base + update,
            None => base,
        }
    }
}
