//! Symmetric int8 fake quantization with a straight-through gradient.
use super::axes::{all_but, normalise, require_float};
use super::transform::Transform;
use crate::error::{PatchError, Result};
use tch::Tensor;

/// The largest int8 level used: the symmetric range is `[-127, 127]`, so that zero is
/// exact and the range is the same on both sides (-128 is not used).
const LEVELS: f64 = 127.0;

/// Which entries share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per index along `axis` (0 is a Linear's or a Conv's output channel);
    /// a negative axis counts from the end.
    PerChannel {
        /// The channel dimension.
        axis: i64,
    },
}

/// Rounds each entry to the nearest of 255 evenly spaced levels, symmetric around zero:
/// `q(w) = clamp(round(w / s), -127, 127) * s` with `s = max|w| / 127` over the tensor or
/// over each channel. The scale follows the tensor: it is recomputed at every application
/// from the values received (no calibration state).
///
/// Gradient: the straight-through estimator. The output's value is exactly `q(w)` while
/// its gradient with respect to `w` is the identity (computed as `q(w) + (w - w.detach())`,
/// which PyTorch writes `w + (q(w) - w).detach()`); rounding has zero gradient almost
/// everywhere, so the training signal would otherwise vanish. Its right inverse is the
/// identity.
///
/// ```
/// use tch::Tensor;
/// use tch_patch::{parametrize::FakeQuantInt8, parametrize::Transform};
///
/// let w = Tensor::from_slice(&[1.27f32, -0.5, 0.004]);
/// let q = FakeQuantInt8::per_tensor().apply(&w)?;
/// let expected = Tensor::from_slice(&[1.27f32, -0.5, 0.0]);
/// assert!(q.allclose(&expected, 1e-6, 1e-6, false));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeQuantInt8 {
    granularity: Granularity,
}

impl FakeQuantInt8 {
    /// One scale for the whole tensor.
    pub fn per_tensor() -> Self {
        FakeQuantInt8 {
            granularity: Granularity::PerTensor,
        }
    }

    /// One scale per index along `axis`; checked against the tensor when added (an axis
    /// out of range is an error then).
    pub fn per_channel(axis: i64) -> Self {
        FakeQuantInt8 {
            granularity: Granularity::PerChannel { axis },
        }
    }

    /// The granularity of the scales.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// `max|w|`, reduced over the tensor or over all dimensions but the channel axis.
    fn max_magnitude(&self, input: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        let magnitude = input.f_abs()?;
        match self.granularity {
            Granularity::PerTensor => magnitude.f_max(),
            Granularity::PerChannel { axis } => {
                let axis = if axis < 0 {
                    axis + input.dim() as i64
                } else {
                    axis
                };
                let others = all_but(input.dim(), axis);
                if others.is_empty() {
                    Ok(magnitude) // a 1-D tensor: each entry is its own channel
                } else {
                    magnitude.f_amax(others.as_slice(), true)
                }
            }
        }
    }

    fn quantize(&self, input: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        let quantized = tch::no_grad(|| -> std::result::Result<Tensor, tch::TchError> {
            let scale = self
                .max_magnitude(input)?
                .f_div_scalar(LEVELS)?
                .f_clamp_min(f64::from(f32::MIN_POSITIVE))?;
            input
                .f_div(&scale)?
                .f_round()?
                .f_clamp(-LEVELS, LEVELS)?
                .f_mul(&scale)
        })?;
        // Exactly `quantized` in value (x - x is 0), the identity in gradient.
        quantized.f_add(&input.f_sub(&input.detach())?)
    }
}

impl Transform for FakeQuantInt8 {
    fn name(&self) -> &str {
        match self.granularity {
            Granularity::PerTensor => "fake_quant_int8_per_tensor",
            Granularity::PerChannel { .. } => "fake_quant_int8_per_channel",
        }
    }

    fn prepare(&mut self, name: &str, input: &Tensor) -> Result<()> {
        require_float(name, input, "int8 fake quantization")?;
        if let Granularity::PerChannel { axis } = self.granularity {
            normalise("per-channel quantization axis", axis, name, input)?;
        }
        Ok(())
    }

    fn apply(&self, input: &Tensor) -> Result<Tensor> {
        self.quantize(input)
            .map_err(PatchError::torch("fake-quantizing to int8"))
    }

    fn right_inverse(&self, value: &Tensor) -> Result<Tensor> {
        Ok(value.shallow_clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parametrize::ParametrizeError;
    use tch::{Device, Kind};

    /// Per channel: every row lands on its own grid of 255 levels and its largest
    /// magnitude is kept exactly.
    #[test]
    fn per_channel_rows_use_their_own_scale() {
        let w = Tensor::from_slice(&[1.0f32, 0.3, -0.01, 100.0, -25.0, 0.3]).reshape([2, 3]);
        let q = FakeQuantInt8::per_channel(0).apply(&w).unwrap();
        let scales = Tensor::from_slice(&[1.0f32 / 127.0, 100.0 / 127.0]).reshape([2, 1]);
        let levels = &q / &scales;
        assert!(levels.allclose(&levels.round(), 1e-4, 1e-4, false));
        assert!((q.double_value(&[0, 0]) - 1.0).abs() < 1e-6);
        assert!((q.double_value(&[1, 0]) - 100.0).abs() < 1e-4);
        // Row 0 keeps 0.3 closely; in row 1 (scale ~0.79) it rounds to 0.
        assert!((q.double_value(&[0, 1]) - 0.3).abs() < 0.5 / 127.0);
        assert_eq!(q.double_value(&[1, 2]), 0.0);
    }

    #[test]
    fn gradient_is_straight_through() {
        let w = Tensor::randn([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let q = FakeQuantInt8::per_tensor().apply(&w).unwrap();
        (&q * 3.0).sum(Kind::Float).backward();
        assert!(w
            .grad()
            .equal(&Tensor::full([3, 4], 3.0, (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn an_all_zero_tensor_stays_zero() {
        let w = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let q = FakeQuantInt8::per_channel(1).apply(&w).unwrap();
        assert!(q.equal(&w));
    }

    #[test]
    fn rejects_an_axis_out_of_range_and_integer_tensors() {
        let w = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        assert!(FakeQuantInt8::per_channel(-2).prepare("w", &w).is_ok());
        let error = FakeQuantInt8::per_channel(2).prepare("w", &w).unwrap_err();
        assert!(matches!(
            error,
            PatchError::Parametrize(ParametrizeError::AxisOutOfRange {
                axis: 2,
                ndim: 2,
                ..
            })
        ));
        let ints = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        let error = FakeQuantInt8::per_tensor().prepare("w", &ints).unwrap_err();
        assert!(matches!(error, PatchError::KindMismatch { .. }));
    }
}
