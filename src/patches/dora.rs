//! DoRA (Liu et al. 2024, "Weight-Decomposed Low-Rank Adaptation", as PEFT 0.21 computes
//! it for `LoraConfig(use_dora=True)`): LoRA whose adapted weight is renormalised, output
//! by output, to a trainable magnitude.
use super::build::{BuildError, BuildPatch};
use super::linear_like::{self, weight_product, Detached, LinearLike};
use super::lora::{delta, dropped_input, matrices};
use super::LoraConfig;
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use crate::registry::PatchArgs;
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use tch::{nn, Tensor};

/// DoRA: LoRA's update `B @ A * scale` plus a trainable magnitude per output (PEFT's
/// `LoraConfig(use_dora=True)`; the same four fields as [`LoraConfig`]).
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "dora", default, patch = Dora<_>, over(nn::Linear))]
pub struct DoraConfig {
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

impl DoraConfig {
    /// The LoRA part of the config: the same rank, alpha, dropout and rsLoRA.
    pub fn lora(&self) -> LoraConfig {
        LoraConfig {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            use_rslora: self.use_rslora,
        }
    }

    /// The factor of the update, as [`LoraConfig::scaling`].
    pub fn scaling(&self) -> f64 {
        self.lora().scaling()
    }
}

impl From<&LoraConfig> for DoraConfig {
    fn from(lora: &LoraConfig) -> Self {
        DoraConfig {
            rank: lora.rank,
            alpha: lora.alpha,
            dropout: lora.dropout,
            use_rslora: lora.use_rslora,
        }
    }
}

/// A linear-like module `L` with DoRA, as PEFT 0.21's `DoraLinearLayer`: with `W` the base
/// weight (`[out, in]`), `ΔW = B @ A * scale` LoRA's update and `m` the magnitude
/// (`[out]`), the output is
/// `base(x) + (m / ‖W + ΔW‖ − 1) ⊙ (x @ Wᵀ) + m / ‖W + ΔW‖ ⊙ (x @ Aᵀ @ Bᵀ * scale)`,
/// that is `x @ (m / ‖W + ΔW‖ ⊙ (W + ΔW))ᵀ + bias`: the bias is not rescaled.
/// `‖·‖` is the L2 norm of each output's row, **detached** (no gradient flows through
/// it: the DoRA paper's §4.3, as PEFT does).
///
/// Why a patch of its own (`dora(...)` in patch strings) rather than a flag of
/// [`Lora`](super::Lora): it has a third parameter, so its tensor names (in the VarStore,
/// in adapter entries, in `Parameters`) differ, and a type's tensor names are fixed. In
/// PEFT's layout it is `use_dora: true` ([`crate::peft`] reads and writes it both ways).
///
/// * **Parameters**: `lora_a` `[rank, in]`, `lora_b` `[out, rank]` and `lora_magnitude`
///   `[out]`, registered under the base's VarStore path (`fc.lora_magnitude`); in PEFT's
///   layout `fc.lora_A.weight`, `fc.lora_B.weight` and `fc.lora_magnitude_vector` (no
///   `.weight`). Initialised as PEFT does: `A` and `B` as [`Lora`](super::Lora)'s, `m` the
///   row norms `‖W + ΔW‖` (so `‖W‖`, as `B` is zero): a fresh adapter's output is the
///   base's (within rounding: `m / ‖W‖` is 1 up to one rounding).
/// * **Frozen base**: the base and `W` are used detached; gradients reach exactly `A`,
///   `B`, `m` (and the input).
/// * **Dropout** (training only, `p > 0`): as PEFT, the input of the update *and* of the
///   rescaled `x @ Wᵀ` term is `dropout(x)` (one matmul more), while `base(x)` takes `x`
///   itself. Without dropout `x @ Wᵀ` is the base's
///   [`weight_term`](LinearLike::weight_term): `base(x) − bias` for `nn::Linear` and
///   GPT-2's `Conv1D`, as PEFT does, and computed for a base that is itself a stack of
///   patches, so that another adapter's part of its output is not rescaled.
/// * **Merge**: [`merge`](Self::merge) writes `m / ‖W + ΔW‖ ⊙ (W + ΔW)` into the base
///   weight in place (same tensor, same `data_ptr`), PEFT's merge with DoRA;
///   [`unmerge`](Self::unmerge) inverts it, `W = W' / f − ΔW`, with the very `A`, `B` and
///   factor `f = m / ‖W + ΔW‖` of the merge (copied then: `rank × (in + out) + out`
///   numbers), so training in between does not change what is undone. Each weight entry
///   comes back within a few roundings: `|w' − w| ≤ 2⁻²¹ (|w| + |Δw|)` in float32
///   (measured in the unit tests). A factor that is zero or not finite could not be
///   undone, so merging it is an error that changes nothing. While merged, forward skips
///   the update and `A`, `B`, `m` get no gradient. In a stack, unmerge in the reverse order
///   of merging (as PEFT unmerges its merged adapters, last first).
/// * **Disable**: [`set_enabled(false)`](Self::set_enabled) gives exactly the base output
///   (unmerging first if merged). **Undo**: `into_base()` gives the base back with its own
///   tensors (while merged, with the merged weight: [`unload`](Self::unload) unmerges first).
///
/// ```
/// use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::patches::{Dora, DoraConfig};
/// use tch_patch::Patch;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "q";
/// let linear = nn::linear(&path, 8, 8, Default::default());
/// let mut dora = Dora::new(linear, &path, &DoraConfig { rank: 2, ..Default::default() })?;
/// assert_eq!(vs.variables()["q.lora_magnitude"].size(), [8]);
///
/// let xs = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
/// let base = dora.base().forward(&xs);
/// assert!(dora.forward_t(&xs, false).allclose(&base, 1e-6, 1e-6, false)); // m = ‖W‖, B = 0
/// tch::no_grad(|| dora.lora_b().shallow_clone().copy_(&Tensor::randn([8, 2], (Kind::Float, Device::Cpu))));
/// let unmerged = dora.forward_t(&xs, false);
/// dora.merge()?;
/// assert!(dora.forward_t(&xs, false).allclose(&unmerged, 1e-5, 1e-5, false));
/// dora.unmerge()?;
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = L, name = "dora", module_t)]
pub struct Dora<L: LinearLike> {
    /// `A`, `[rank, in_features]`.
    #[param]
    lora_a: Tensor,
    /// `B`, `[out_features, rank]`.
    #[param]
    lora_b: Tensor,
    /// `m`, `[out_features]`.
    #[param]
    lora_magnitude: Tensor,
    state: DoraState,
}

/// A DoRA's state beside its tensors.
#[derive(Debug)]
struct DoraState {
    config: DoraConfig,
    scaling: f64,
    enabled: bool,
    /// While merged: copies of `A`, `B` and the factor `m / ‖W + ΔW‖` as merged.
    merged: Option<Merged>,
}

#[derive(Debug)]
struct Merged {
    a: Tensor,
    b: Tensor,
    factor: Tensor,
}

impl<L: LinearLike> Dora<L> {
    /// Patches `base` with a fresh DoRA; `path` is where `base` lives in its VarStore
    /// (`lora_a`, `lora_b` and `lora_magnitude` are registered there).
    ///
    /// Errors, with `base` dropped and the VarStore unchanged (use [`BuildPatch::build`]
    /// to get `base` back): a config outside its schema, a weight that is not 2-D or not
    /// floating point, names already taken at `path`.
    pub fn new(base: L, path: &nn::Path, config: &DoraConfig) -> Result<Self> {
        Self::build(base, path, config).map_err(|failed| failed.error)
    }

    /// The config the adapter was built with.
    pub fn config(&self) -> &DoraConfig {
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

    /// The magnitude `m`, `[out_features]`: the VarStore's tensor.
    pub fn magnitude(&self) -> &Tensor {
        &self.lora_magnitude
    }

    /// Whether the adapter is merged into the base weight.
    pub fn is_merged(&self) -> bool {
        self.state.merged.is_some()
    }

    /// Whether the adapter is enabled.
    pub fn is_enabled(&self) -> bool {
        self.state.enabled
    }

    /// LoRA's update `B @ A * scale` in the base weight's layout, as a new tensor with no
    /// graph (see [`Lora::delta_weight`](super::Lora::delta_weight)).
    pub fn delta_weight(&self) -> Result<Tensor> {
        delta(
            &self.lora_a,
            &self.lora_b,
            self.state.scaling,
            self.base.fan_in_fan_out(),
        )
    }

    /// `‖W + B @ A * scale‖`, the L2 norm of each output's row (`[out_features]`), with no
    /// graph: what forward divides the magnitude by. While merged, `W` is the merged weight.
    pub fn weight_norm(&self) -> Result<Tensor> {
        let delta = self.delta_weight()?;
        row_norms(self.base.weight(), &delta, self.base.fan_in_fan_out())
    }

    /// Writes `m / ‖W + ΔW‖ ⊙ (W + ΔW)` into the base weight in place (same tensor, same
    /// storage), so forward costs one matmul. Does nothing if already merged. An error,
    /// changing nothing, if the adapter is disabled or the factor `m / ‖W + ΔW‖` is zero or
    /// not finite for some output (the merge could not be undone).
    pub fn merge(&mut self) -> Result<()> {
        if self.state.merged.is_some() {
            return Ok(());
        }
        if !self.state.enabled {
            return Err(merge_state(
                "cannot merge a disabled DoRA adapter: enable it first",
            ));
        }
        let fan_in_fan_out = self.base.fan_in_fan_out();
        let weight = self.base.weight();
        let torch = PatchError::torch("merging the DoRA update into the base weight");
        let (a, b, m) = tch::no_grad(|| {
            (
                self.lora_a.detach().copy(),
                self.lora_b.detach().copy(),
                self.lora_magnitude.detach().copy(),
            )
        });
        let delta = delta(&a, &b, self.state.scaling, fan_in_fan_out)?;
        let norm = row_norms(weight, &delta, fan_in_fan_out)?;
        let (factor, merged) = tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
            let factor = m.f_to_device(weight.device())?.f_div(&norm)?;
            let usable = factor.f_isfinite()?.f_logical_and(&factor.f_ne(0.0)?)?;
            let usable = usable.f_all()?.f_int64_value(&[])? == 1;
            let merged = weight
                .f_add(&delta)?
                .f_mul(&factor_in_layout(&factor, fan_in_fan_out)?)?;
            Ok((factor, usable.then_some(merged)))
        })
        .map_err(torch)?;
        let Some(merged) = merged else {
            return Err(merge_state(
                "cannot merge this DoRA adapter: its magnitude over the weight norm (m / ‖W + ΔW‖) is zero or not finite for some output, so the merge could not be undone",
            ));
        };
        tch::no_grad(|| weight.shallow_clone().f_copy_(&merged))
            .map_err(PatchError::torch("writing the merged DoRA weight"))?;
        self.state.merged = Some(Merged { a, b, factor });
        Ok(())
    }

    /// Inverts the merge in place: `W = W' / f − ΔW` with the `A`, `B` and factor `f` of
    /// the merge. Does nothing if not merged.
    pub fn unmerge(&mut self) -> Result<()> {
        let Some(merged) = &self.state.merged else {
            return Ok(());
        };
        let fan_in_fan_out = self.base.fan_in_fan_out();
        let weight = self.base.weight();
        let delta = delta(&merged.a, &merged.b, self.state.scaling, fan_in_fan_out)?;
        tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
            let device = weight.device();
            let factor = factor_in_layout(&merged.factor.f_to_device(device)?, fan_in_fan_out)?;
            let unmerged = weight.f_div(&factor)?.f_sub(&delta.f_to_device(device)?)?;
            weight.shallow_clone().f_copy_(&unmerged)
        })
        .map_err(PatchError::torch(
            "unmerging the DoRA update from the base weight",
        ))?;
        self.state.merged = None;
        Ok(())
    }

    /// Enables or disables the adapter without unpatching: disabled, forward is exactly
    /// the base's. Disabling a merged adapter unmerges it first.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        if !enabled {
            self.unmerge()?;
        }
        self.state.enabled = enabled;
        Ok(())
    }

    /// Unmerges if merged, then gives the base back with its original weight (within the
    /// bound of [`unmerge`](Self::unmerge)).
    pub fn unload(mut self) -> Result<L> {
        self.unmerge()?;
        Ok(self.base)
    }

    /// Merges (if enabled and not yet merged), then gives the base back with the merged
    /// weight: PEFT's `merge_and_unload`.
    pub fn merge_and_unload(mut self) -> Result<L> {
        if self.state.enabled {
            self.merge()?;
        }
        Ok(self.base)
    }

    /// What forward adds to the base's output, or `None` when it adds nothing (disabled,
    /// merged); dropout on its input iff `train`.
    /// `base` is the base's output for `xs`.
    fn update(&self, xs: &Tensor, base: &Tensor, train: bool, detached: bool) -> Option<Tensor> {
        if !self.state.enabled || self.state.merged.is_some() {
            return None;
        }
        let input = dropped_input(xs, self.state.config.dropout, train);
        let [a, b, m] = [&self.lora_a, &self.lora_b, &self.lora_magnitude].map(|tensor| {
            if detached {
                linear_like::detached(tensor)
            } else {
                Detached::Same(tensor)
            }
        });
        let fan_in_fan_out = self.base.fan_in_fan_out();
        let weight = linear_like::detached(self.base.weight());
        let norm = tch::no_grad(|| {
            let lora_weight = b.matmul(&a) * self.state.scaling;
            let oriented = if fan_in_fan_out {
                weight.transpose(0, 1)
            } else {
                weight.shallow_clone()
            };
            (oriented + lora_weight).norm_scalaropt_dim(2, [1i64], false)
        });
        let scale = &*m / norm;
        let lora = input
            .linear::<&Tensor>(&a, None)
            .linear::<&Tensor>(&b, None);
        // PEFT: `base(x) − bias` without dropout, `dropout(x) @ Wᵀ` with it.
        let linear = match input {
            Detached::Same(_) => self.base.weight_term(xs, base),
            Detached::Cut(ref dropped) => weight_product(dropped, &weight, fan_in_fan_out),
        };
        Some((&scale - 1.0) * linear + &scale * lora * self.state.scaling)
    }
}

#[patch_forward]
impl<L: LinearLike> Dora<L> {
    /// The base's output (frozen, given `train`), plus DoRA's rescaling and update unless
    /// disabled or merged (dropout on their input iff `train`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base.forward_detached(xs, train);
        match self.update(xs, &base, train, false) {
            Some(update) => base + update,
            None => base,
        }
    }
}

fn merge_state(message: &str) -> PatchError {
    PatchError::MergeState {
        message: message.into(),
    }
}

/// The L2 norm of each output's row of `weight + delta` (both in the weight's layout,
/// `[in, out]` when `fan_in_fan_out`), with no graph: PEFT's `get_weight_norm`.
fn row_norms(weight: &Tensor, delta: &Tensor, fan_in_fan_out: bool) -> Result<Tensor> {
    tch::no_grad(|| {
        let sum = weight.detach().f_add(delta)?;
        let sum = if fan_in_fan_out {
            sum.f_transpose(0, 1)?
        } else {
            sum
        };
        sum.f_norm_scalaropt_dim(2, [1i64], false)
    })
    .map_err(PatchError::torch("computing the DoRA weight norm"))
}

/// A per-output factor `[out]` shaped to multiply the weight: `[out, 1]`, or `[1, out]`
/// for a `fan_in_fan_out` weight.
fn factor_in_layout(
    factor: &Tensor,
    fan_in_fan_out: bool,
) -> std::result::Result<Tensor, tch::TchError> {
    if fan_in_fan_out {
        factor.f_view([1, -1])
    } else {
        factor.f_view([-1, 1])
    }
}

impl<L: LinearLike> BuildPatch<L> for Dora<L> {
    type Config = DoraConfig;

    fn build(base: L, path: &nn::Path, config: &DoraConfig) -> Result<Self, BuildError<L>> {
        match init(&base, path, config) {
            Ok([lora_a, lora_b, lora_magnitude]) => Ok(Dora {
                base,
                lora_a,
                lora_b,
                lora_magnitude,
                state: DoraState {
                    config: config.clone(),
                    scaling: config.scaling(),
                    enabled: true,
                    merged: None,
                },
            }),
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

/// Checks everything, then makes and registers `A`, `B` and `m = ‖W + ΔW‖`.
fn init<L: LinearLike>(base: &L, path: &nn::Path, config: &DoraConfig) -> Result<[Tensor; 3]> {
    config.validate()?;
    let (a, b) = matrices(base, &config.lora())?;
    let fan_in_fan_out = base.fan_in_fan_out();
    let delta = delta(&a, &b, config.scaling(), fan_in_fan_out)?;
    let magnitude = row_norms(base.weight(), &delta, fan_in_fan_out)?;
    register_tensors(
        path,
        [
            ("lora_a", a, TensorRole::Param),
            ("lora_b", b, TensorRole::Param),
            ("lora_magnitude", magnitude, TensorRole::Param),
        ],
    )
}

impl<L: LinearLike> LinearLike for Dora<L> {
    fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    fn fan_in_fan_out(&self) -> bool {
        self.base.fan_in_fan_out()
    }

    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base.forward_detached(xs, train);
        match self.update(xs, &base, train, true) {
            Some(update) => base + update,
            None => base,
        }
    }
}
