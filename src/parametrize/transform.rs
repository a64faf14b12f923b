//! The `Transform` trait: what a parametrization computes from the tensor it replaces.
use super::ParametrizeError;
use crate::error::Result;
use crate::params::TensorRole;
use tch::Tensor;

/// A function of a tensor that a module sees in place of it: `forward` of a
/// [`Parametrized`](crate::parametrize::Parametrized) module uses `apply(original)` wherever the module
/// uses the original tensor. PyTorch's `torch.nn.utils.parametrize` modules and qsparse's
/// `imitate` "things".
///
/// `apply` is differentiable as written: gradients reach the original (and the transform's
/// own trainable tensors) through the tch operations it uses. It must keep its input's
/// shape, kind and device; [`Parametrized::push`](crate::parametrize::Parametrized::push) checks this once
/// on the real tensor.
///
/// A closure `Fn(&Tensor) -> Tensor` is a transform named `"closure"`; [`FnTransform`] gives
/// one a name and an optional right inverse.
///
/// ```
/// use tch::Tensor;
/// use tch_patch::{PatchError, parametrize::Transform};
///
/// /// Clips every entry to [-limit, limit].
/// struct Clip(f64);
///
/// impl Transform for Clip {
///     fn name(&self) -> &str {
///         "clip"
///     }
///     fn apply(&self, input: &Tensor) -> Result<Tensor, PatchError> {
///         input.f_clamp(-self.0, self.0).map_err(PatchError::torch("clipping"))
///     }
/// }
///
/// let clipped = Clip(1.0).apply(&Tensor::from_slice(&[-3.0f32, 0.5, 2.0]))?;
/// assert_eq!(Vec::<f32>::try_from(&clipped).unwrap(), [-1.0, 0.5, 1.0]);
/// # Ok::<(), PatchError>(())
/// ```
pub trait Transform: Send + 'static {
    /// A short name for messages and `Debug` output, e.g. `"magnitude_prune"`.
    fn name(&self) -> &str;

    /// Called once, when the transform is added, with the tensor it will receive: the
    /// original for the first transform on a tensor, else the previous transform's output
    /// (under `no_grad`). `name` is the parametrized tensor's name. Check arguments against
    /// the tensor here (an axis, a kind) and compute any state derived from it (a mask).
    /// An error leaves the module as it was. The default does nothing.
    fn prepare(&mut self, name: &str, input: &Tensor) -> Result<()> {
        let _ = (name, input);
        Ok(())
    }

    /// The tensor the module sees in place of `input`.
    fn apply(&self, input: &Tensor) -> Result<Tensor>;

    /// A tensor `x` with `apply(x) == value`, used when a value is assigned to the
    /// parametrized tensor ([`Parametrized::assign`](crate::parametrize::Parametrized::assign)); it only
    /// needs to hold for values `apply` can produce. The default has none.
    fn right_inverse(&self, value: &Tensor) -> Result<Tensor> {
        let _ = value;
        Err(ParametrizeError::NoRightInverse {
            transform: self.name().to_owned(),
        }
        .into())
    }

    /// The transform's own tensors (a mask, a gain) with local names and roles. A
    /// [`Parametrized`](crate::parametrize::Parametrized) lists them after the module's tensors as
    /// `{tensor}_{local}` (e.g. `weight_mask`). The default has none.
    fn tensors(&self) -> Vec<(&'static str, &Tensor, TensorRole)> {
        Vec::new()
    }

    /// The tensors of [`Transform::tensors`], mutably and in the same order.
    fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor, TensorRole)> {
        Vec::new()
    }
}

impl<F> Transform for F
where
    F: Fn(&Tensor) -> Tensor + Send + 'static,
{
    fn name(&self) -> &str {
        "closure"
    }

    fn apply(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self(input))
    }
}

type TensorFn = dyn Fn(&Tensor) -> Tensor + Send;

/// A named transform made of closures, like qsparse's `imitate(module, "add1", lambda w: w + 1)`.
///
/// ```
/// use tch::Tensor;
/// use tch_patch::{parametrize::FnTransform, parametrize::Transform};
///
/// let add1 = FnTransform::new("add1", |w: &Tensor| w + 1).with_right_inverse(|v: &Tensor| v - 1);
/// assert_eq!(add1.name(), "add1");
/// let w = Tensor::from_slice(&[1.0f32, 2.0]);
/// assert!(add1.right_inverse(&add1.apply(&w)?)?.equal(&w));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct FnTransform {
    name: String,
    apply: Box<TensorFn>,
    right_inverse: Option<Box<TensorFn>>,
}

impl FnTransform {
    /// A transform called `name` that computes `apply(input)`.
    pub fn new(
        name: impl Into<String>,
        apply: impl Fn(&Tensor) -> Tensor + Send + 'static,
    ) -> Self {
        FnTransform {
            name: name.into(),
            apply: Box::new(apply),
            right_inverse: None,
        }
    }

    /// The same transform, with `inverse` as its right inverse.
    pub fn with_right_inverse(
        mut self,
        inverse: impl Fn(&Tensor) -> Tensor + Send + 'static,
    ) -> Self {
        self.right_inverse = Some(Box::new(inverse));
        self
    }
}

impl Transform for FnTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, input: &Tensor) -> Result<Tensor> {
        Ok((self.apply)(input))
    }

    fn right_inverse(&self, value: &Tensor) -> Result<Tensor> {
        match &self.right_inverse {
            Some(inverse) => Ok(inverse(value)),
            None => Err(ParametrizeError::NoRightInverse {
                transform: self.name.clone(),
            }
            .into()),
        }
    }
}

impl std::fmt::Debug for FnTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTransform")
            .field("name", &self.name)
            .field("right_inverse", &self.right_inverse.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PatchError;
    use crate::parametrize::ParametrizeError;

    #[test]
    fn a_closure_is_a_transform_without_inverse() {
        let double = |w: &Tensor| w * 2;
        assert_eq!(Transform::name(&double), "closure");
        let w = Tensor::from_slice(&[1.0f32, -2.0]);
        assert!(double.apply(&w).unwrap().equal(&(&w * 2)));
        assert!(matches!(
            double.right_inverse(&w),
            Err(PatchError::Parametrize(ParametrizeError::NoRightInverse { transform })) if transform == "closure"
        ));
    }
}
