//! Int8 weights for a linear layer: per-channel symmetric quantization into real int8
//! storage, multiplied by libtorch's int8 kernels.
use super::build::{BuildError, BuildPatch};
use crate::error::{PatchError, Result};
use crate::load::HookOutput;
use crate::params::{named_tensors, Parameters, TensorRole};
use crate::registry::PatchArgs;
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use std::collections::HashMap;
use tch::{nn, Kind, Tensor};

/// The largest magnitude of a symmetric int8 value: `[-127, 127]`, so that `-q` is one too.
const QMAX: f64 = 127.0;

/// The name of the scales beside a quantized weight.
const SCALE: &str = "weight_scale";

/// How an [`Int8Linear`] multiplies.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "int8", default, patch = Int8Linear)]
pub struct Int8Config {
    /// "dynamic": each input row quantized to int8 too, int8 GEMM (aten::_int_mm, oneDNN); "weight_only": float inputs times the int8 weight (aten::_weight_int8pack_mm)
    #[arg(default = "dynamic", choices("dynamic", "weight_only"))]
    pub activations: String,
}

/// The two ways of [`Int8Config::activations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activations {
    Dynamic,
    WeightOnly,
}

impl Activations {
    fn of(config: &Int8Config) -> Result<Self> {
        config.validate()?;
        Ok(if config.activations == "weight_only" {
            Activations::WeightOnly
        } else {
            Activations::Dynamic
        })
    }
}

/// An `nn::Linear` whose weight is held as int8 with one float32 scale per output row:
/// `weight ≈ weight_int8 * weight_scale[:, None]`, a quarter of float32's memory.
///
/// * **Storage**: the base's own weight tensor (the same object: the VarStore's `weight`,
///   any holder of it) is given int8 data, `[out, in]`, and the float data is freed
///   (nothing else holding it); `weight_scale` (`[out]`, float32) is a buffer registered
///   beside it. Per row `n`, `scale_n = max_k |w_nk| / 127` (`1` for a row of zeros) and
///   `q_nk = round(w_nk / scale_n)` (half to even), so `|w_nk − q_nk·scale_n| ≤ scale_n / 2`.
///   The bias stays as it was.
/// * **Forward, `activations = "dynamic"`** (the default, PyTorch's `quantize_dynamic`
///   scheme with per-channel weights): each input row `m` is quantized the same way
///   (`s_m = max_k |x_mk| / 127`), the product is libtorch's int8 GEMM `aten::_int_mm`
///   (oneDNN on x86; exact int32 sums), then scaled by `s_m · scale_n`. Every output
///   entry is within `s_m/2 · Σ_k |w_nk| + scale_n/2 · Σ_k |x_mk| + K · s_m · scale_n / 4`
///   of the float layer's (plus float32 rounding): tested in `tests/int8_linear.rs`,
///   where on random normal data (1024 → 4096) the largest error is 1.0% of the largest
///   output.
/// * **Forward, `activations = "weight_only"`**: inputs stay float, times the int8 weight
///   by `aten::_weight_int8pack_mm`; within `scale_n/2 · Σ_k |x_mk|` (plus rounding in the
///   input's dtype; 0.4% of the largest output on the same data). Its CPU kernel is fast
///   for bfloat16 inputs and about 8x slower than a float32 matmul for float32 ones
///   (`bench/RESULTS.md`); libtorch 2.13's bfloat16 kernel crashes or gives wrong values
///   when `in_features` is not a multiple of 16, so such inputs (and float16, float64)
///   go through the float32 kernel. `"dynamic"` is the fast choice for float32 models.
/// * **Kernels**: tch also exposes fbgemm's `fbgemm_linear_int8_weight_fp32_activation`,
///   not used here: it takes one scale for the whole weight (not one per row), keeps a
///   second, packed copy of the weight outside any tensor's storage, and libtorch 2.13
///   marks it deprecated.
/// * **Gradients**: none through the int8 product (libtorch has no derivative for it).
///   When the input requires grad (training what comes before this layer), forward
///   multiplies by the dequantized weight in float instead (a float copy of the weight
///   per call), so gradients reach the input exactly as through that float layer; the
///   bias gets its gradient either way. The int8 weight never trains.
/// * **Undo**: `into_base` (so `unpatch`, or undoing a slot) gives the `nn::Linear` back
///   with its weight dequantized into float32 in the same tensor object and its
///   `requires_grad` as before: quantization is lossy, so the weight is the rounded one.
///
/// Loads: [`load_hook`](Self::load_hook) quantizes a float checkpoint on its way into
/// int8 layers, one tensor at a time, so the model never exists in float (with
/// [`new_uninit`](Self::new_uninit) layers of a [`Skeleton`](crate::load::Skeleton) and
/// [`LoadMode::Assign`](crate::load::LoadMode)): 256 MiB of float32 weights load into
/// 72 MiB resident (64 MiB of int8 weights; 3.6x less than the float layers' 259 MiB),
/// peaking at 88 MiB (`tests/int8_linear.rs`, each in a process of its own). A saved int8
/// model (`weight` int8, `weight_scale`) loads back as it is.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::patches::{Int8Config, Int8Linear};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 64, 32, Default::default());
/// let xs = Tensor::randn([4, 64], (Kind::Float, Device::Cpu));
/// let float_out = linear.forward(&xs);
/// let int8 = Int8Linear::new(linear, &(vs.root() / "fc"), &Int8Config::default())?;
/// assert_eq!(vs.variables()["fc.weight"].kind(), Kind::Int8);
/// let error = (int8.forward(&xs) - &float_out).abs().max().double_value(&[]);
/// assert!(error < 0.05 * float_out.abs().max().double_value(&[]));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = nn::Linear, name = "int8", into_base = Int8Linear::dequantized)]
pub struct Int8Linear {
    /// One float32 scale per output row, `[out]`.
    #[buffer]
    weight_scale: Tensor,
    activations: Activations,
    /// The weight's `requires_grad` before it became int8, given back by undo.
    requires_grad: bool,
}

impl Int8Linear {
    /// Quantizes `base`'s weight into int8 in place (same tensor object) and registers
    /// `weight_scale` at `path`, where `base` lives in its VarStore.
    ///
    /// Errors, with `base` dropped and nothing changed (use [`BuildPatch::build`] to get
    /// it back): a config outside its schema, a weight that is not 2-D floating point,
    /// `weight_scale` already taken at `path`.
    pub fn new(base: nn::Linear, path: &nn::Path, config: &Int8Config) -> Result<Self> {
        Self::build(base, path, config).map_err(|failed| failed.error)
    }

    /// Like [`new`](Self::new), for a layer a load fills: the weight is given int8 storage
    /// and `weight_scale` float32 storage, neither initialized nor touched, and the float
    /// weight is never read (it is freed, if nothing else holds it). For the layers of a
    /// [`Skeleton`](crate::load::Skeleton), loaded through [`load_hook`](Self::load_hook)
    /// (a float checkpoint) or as they are (an int8 one); the skeleton's load refuses to
    /// leave either tensor unwritten.
    pub fn new_uninit(base: nn::Linear, path: &nn::Path, config: &Int8Config) -> Result<Self> {
        let activations = Activations::of(config)?;
        let size = base.ws.size();
        let &[out, _] = size.as_slice() else {
            return Err(PatchError::ShapeMismatch {
                name: "weight".into(),
                actual: size,
                expected: "[out_features, in_features]".into(),
            });
        };
        let device = base.ws.device();
        let (q, scale) = (|| {
            Ok::<_, tch::TchError>((
                Tensor::f_empty(&size, (Kind::Int8, device))?,
                Tensor::f_empty([out], (Kind::Float, device))?,
            ))
        })()
        .map_err(PatchError::torch("allocating the int8 weight"))?;
        Self::install(base, path, activations, q, scale).map_err(|failed| failed.error)
    }

    /// Gives `base`'s weight the int8 data `q` (the same tensor object, so every holder
    /// sees it) and registers `scale` as `weight_scale` at `path`; on failure the weight
    /// is as it was and `base` comes back.
    fn install(
        mut base: nn::Linear,
        path: &nn::Path,
        activations: Activations,
        q: Tensor,
        scale: Tensor,
    ) -> std::result::Result<Self, Box<BuildError<nn::Linear>>> {
        let requires_grad = base.ws.requires_grad();
        // int8 data cannot require grad.
        let original = base.ws.detach();
        base.ws = base.ws.set_requires_grad(false);
        let registered = base
            .ws
            .f_set_data(&q)
            .map_err(PatchError::torch("giving the weight its int8 data"))
            .and_then(|()| register_tensors(path, [(SCALE, scale, TensorRole::Buffer)]));
        match registered {
            Ok([weight_scale]) => Ok(Int8Linear {
                base,
                weight_scale,
                activations,
                requires_grad,
            }),
            Err(error) => {
                base.ws.set_data(&original);
                base.ws = base.ws.set_requires_grad(requires_grad);
                Err(Box::new(BuildError::new(error, base)))
            }
        }
    }

    /// How forward multiplies ([`Int8Config::activations`]).
    pub fn config(&self) -> Int8Config {
        let activations = match self.activations {
            Activations::Dynamic => "dynamic",
            Activations::WeightOnly => "weight_only",
        };
        Int8Config {
            activations: activations.into(),
        }
    }

    /// The scales, `[out]`: the VarStore's tensor.
    pub fn weight_scale(&self) -> &Tensor {
        &self.weight_scale
    }

    /// The weight as this layer computes with it, `q · scale` in float32, as a new tensor.
    pub fn dequantized_weight(&self) -> Tensor {
        dequantize(&self.base.ws, &self.weight_scale)
    }

    /// A load hook ([`load_safetensors_with`](crate::load::load_safetensors_with),
    /// [`Skeleton::load_with`](crate::load::Skeleton::load_with)) that quantizes every
    /// float `<path>.weight` of the file meant for an int8 layer of `model` (a `weight`
    /// held as int8 beside a `weight_scale`) into that weight and its scales, as
    /// [`Int8Linear::new`] does; an int8 weight and its scales (a checkpoint of int8
    /// layers) and every other tensor pass as they are. The scales take the dtype the
    /// model's `weight_scale` has. It holds the names only, so it outlives `model`.
    pub fn load_hook<M: Parameters + ?Sized>(
        model: &M,
    ) -> impl FnMut(&str, Tensor) -> Result<HookOutput> + 'static {
        let tensors = named_tensors(model);
        let kinds: HashMap<&str, Kind> = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.tensor.kind()))
            .collect();
        // Weight name -> its scales' name and dtype.
        let targets: HashMap<String, (String, Kind)> = tensors
            .iter()
            .filter(|t| t.tensor.kind() == Kind::Int8)
            .filter_map(|t| {
                let scale = scale_name(&t.name)?;
                let kind = *kinds.get(scale.as_str())?;
                Some((t.name.clone(), (scale, kind)))
            })
            .collect();
        move |name, tensor| match targets.get(name) {
            Some((scale_name, scale_kind)) if tensor.is_floating_point() => {
                let (q, scale) = quantize_owned(tensor, name)?;
                let scale = scale
                    .f_to_kind(*scale_kind)
                    .map_err(PatchError::torch(format!("casting the scales of `{name}`")))?;
                Ok(HookOutput::from(vec![
                    (name.to_owned(), q),
                    (scale_name.clone(), scale),
                ]))
            }
            _ => Ok(tensor.into()),
        }
    }

    /// `into_base`: the weight dequantized into float32 in the same tensor object.
    fn dequantized(self) -> nn::Linear {
        let Int8Linear {
            mut base,
            weight_scale,
            requires_grad,
            ..
        } = self;
        let float = dequantize(&base.ws, &weight_scale);
        base.ws.set_data(&float);
        if requires_grad {
            base.ws = base.ws.set_requires_grad(true);
        }
        base
    }

    /// The output through the int8 kernel, without autograd, before the bias, in `kind`
    /// (the input's).
    fn int8_product(&self, xs: &Tensor, kind: Kind) -> Tensor {
        let weight = &self.base.ws;
        let (outputs, inputs) = weight.size2().unwrap_or((0, 0));
        let mut shape = xs.size();
        let flat = shape.len() != 2;
        let rows = if flat {
            xs.reshape([-1, inputs])
        } else {
            xs.shallow_clone()
        };
        let out = tch::no_grad(|| match self.activations {
            Activations::Dynamic => {
                let rows = as_kind(rows, Kind::Float);
                let (q, row_scale) = quantize_rows(&rows);
                let product = q.internal_int_mm(&weight.tr()).to_kind(Kind::Float);
                product * row_scale * as_kind(self.weight_scale.shallow_clone(), Kind::Float)
            }
            Activations::WeightOnly => {
                // libtorch 2.13's bfloat16 kernel reads past the end of a row whose length
                // is not a multiple of 16: a crash or wrong values (found by
                // tests/int8_linear.rs). Its float32 kernel is exact, but slow.
                let kernel = if kind == Kind::BFloat16 && inputs % 16 == 0 {
                    Kind::BFloat16
                } else {
                    Kind::Float
                };
                let scale = as_kind(self.weight_scale.shallow_clone(), kernel);
                as_kind(rows, kernel).internal_weight_int8pack_mm(weight, &scale)
            }
        });
        let out = if flat {
            if let Some(last) = shape.last_mut() {
                *last = outputs;
            }
            out.reshape(shape)
        } else {
            out
        };
        as_kind(out, kind)
    }
}

/// `t` in `kind`, without a call into libtorch when it is already.
fn as_kind(t: Tensor, kind: Kind) -> Tensor {
    if t.kind() == kind {
        t
    } else {
        t.to_kind(kind)
    }
}

#[patch_forward]
impl Int8Linear {
    /// `xs @ Wᵀ + b` with the int8 weight (see the type's docs for the error bound).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        let product = if xs.requires_grad() {
            xs.matmul(&as_kind(self.dequantized_weight(), kind).tr())
        } else {
            self.int8_product(xs, kind)
        };
        match &self.base.bs {
            Some(bias) => product + as_kind(bias.shallow_clone(), kind),
            None => product,
        }
    }
}

impl BuildPatch<nn::Linear> for Int8Linear {
    type Config = Int8Config;

    fn build(
        base: nn::Linear,
        path: &nn::Path,
        config: &Int8Config,
    ) -> std::result::Result<Self, BuildError<nn::Linear>> {
        let prepared = Activations::of(config)
            .and_then(|activations| Ok((activations, quantize(&base.ws, "weight")?)));
        match prepared {
            Ok((activations, (q, scale))) => {
                Self::install(base, path, activations, q, scale).map_err(|failed| *failed)
            }
            Err(error) => Err(BuildError::new(error, base)),
        }
    }
}

/// `<path>.weight_scale` for `<path>.weight` (`weight_scale` for `weight`).
fn scale_name(weight: &str) -> Option<String> {
    match weight.strip_suffix("weight")? {
        "" => Some(SCALE.to_owned()),
        path if path.ends_with('.') => Some(format!("{path}{SCALE}")),
        _ => None,
    }
}

/// Per-row symmetric int8 of a 2-D float weight: `(q, scale)`, scale float32 `[rows]`.
/// One float32 temporary of the weight's size.
fn quantize(weight: &Tensor, name: &str) -> Result<(Tensor, Tensor)> {
    quantize_with(weight, name, |w, scale| {
        w.f_to_kind(Kind::Float)?.f_div(scale)
    })
}

/// [`quantize`] of a tensor nobody else holds (a load's): a float32 one is divided in
/// place, so no temporary of its size is made (a load would otherwise allocate and free
/// two per tensor, and the allocator keep the holes).
fn quantize_owned(weight: Tensor, name: &str) -> Result<(Tensor, Tensor)> {
    quantize_with(&weight, name, |w, scale| {
        if w.kind() == Kind::Float && w.is_contiguous() {
            w.shallow_clone().f_div_(scale)
        } else {
            w.f_to_kind(Kind::Float)?.f_div(scale)
        }
    })
}

/// `w / scale[:, None]` as float32, by `divide`; rounded, clamped and cast to int8 here.
fn quantize_with(
    weight: &Tensor,
    name: &str,
    divide: impl FnOnce(&Tensor, &Tensor) -> std::result::Result<Tensor, tch::TchError>,
) -> Result<(Tensor, Tensor)> {
    let size = weight.size();
    if size.len() != 2 {
        return Err(PatchError::ShapeMismatch {
            name: name.into(),
            actual: size,
            expected: "[out_features, in_features]".into(),
        });
    }
    if !weight.is_floating_point() {
        return Err(PatchError::KindMismatch {
            name: name.into(),
            actual: weight.kind(),
            expected: "a floating-point dtype".into(),
        });
    }
    tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
        // max |w| from max and min: no temporary the size of the weight.
        let high = weight.f_amax([1], false)?;
        let low = weight.f_amin([1], false)?.f_neg()?;
        let absmax = high.f_maximum(&low)?.f_to_kind(Kind::Float)?;
        let scale = absmax.f_div_scalar(QMAX)?;
        let scale = scale.f_where_scalarother(&scale.f_gt(0.0)?, 1.0)?;
        let mut scaled = divide(weight, &scale.f_unsqueeze(1)?)?;
        let q = scaled
            .f_round_()?
            .f_clamp_(-QMAX, QMAX)?
            .f_to_kind(Kind::Int8)?;
        Ok((q, scale))
    })
    .map_err(PatchError::torch(format!("quantizing `{name}` to int8")))
}

/// Per-row symmetric int8 of float32 input rows `[m, k]`: `(q, scale [m, 1])`.
fn quantize_rows(rows: &Tensor) -> (Tensor, Tensor) {
    let high = rows.amax([1], true);
    let low = -rows.amin([1], true);
    let scale = high.maximum(&low) / QMAX;
    let scale = scale.where_scalarother(&scale.gt(0.0), 1.0);
    let q = (rows / &scale)
        .round_()
        .clamp_(-QMAX, QMAX)
        .to_kind(Kind::Int8);
    (q, scale)
}

fn dequantize(q: &Tensor, scale: &Tensor) -> Tensor {
    tch::no_grad(|| q.to_kind(Kind::Float) * scale.to_kind(Kind::Float).unsqueeze(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::Module, Device};

    #[test]
    fn scale_names_sit_beside_their_weight() {
        assert_eq!(scale_name("weight").as_deref(), Some("weight_scale"));
        assert_eq!(
            scale_name("layers.0.q_proj.weight").as_deref(),
            Some("layers.0.q_proj.weight_scale")
        );
        assert_eq!(scale_name("layers.0.norm_weight"), None);
        assert_eq!(scale_name("bias"), None);
    }

    #[test]
    fn rows_of_zeros_quantize_to_zero_with_scale_one() {
        let w = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let (q, scale) = quantize(&w, "weight").unwrap();
        assert!(q.eq(0).all().int64_value(&[]) == 1);
        assert_eq!(Vec::<f32>::try_from(scale).unwrap(), [1.0, 1.0]);
        let rows = Tensor::zeros([1, 3], (Kind::Float, Device::Cpu));
        let (q, scale) = quantize_rows(&rows);
        assert_eq!(q.kind(), Kind::Int8);
        assert_eq!(scale.double_value(&[0, 0]), 1.0);
    }

    #[test]
    fn a_bad_weight_is_refused_and_the_parent_comes_back_as_it_was() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root() / "fc", 4, 2, Default::default());
        let ptr = linear.ws.data_ptr();
        let config = Int8Config {
            activations: "int4".into(),
        };
        let failed = Int8Linear::build(linear, &(vs.root() / "fc"), &config).unwrap_err();
        assert!(
            failed.error.to_string().contains("int4"),
            "{}",
            failed.error
        );
        assert_eq!(failed.base.ws.data_ptr(), ptr);
        assert_eq!(failed.base.ws.kind(), Kind::Float);
        assert_eq!(vs.variables().len(), 2);
        let _ = failed
            .base
            .forward(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu)));
    }
}
