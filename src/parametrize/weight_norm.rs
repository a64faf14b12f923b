//! Weight normalisation: a direction and a trainable gain.
use super::axes::{all_but, normalise, require_float};
use super::transform::Transform;
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use tch::Tensor;

/// Reparametrizes a weight as `g * v / ||v||` (Salimans & Kingma, 2016; PyTorch's
/// `weight_norm`): the original tensor is the direction `v`, and `g` is a new trainable
/// gain with one entry per index along `dim` (the norm is taken over every other
/// dimension), or a single entry for [`WeightNorm::whole`].
///
/// `g` starts at `||v||`, so the module computes exactly what it did before. It is a
/// parameter of the transform named `g`, listed as `{tensor}_g` (`weight_g`, PyTorch's old
/// name); add the transform with
/// [`Parametrized::push_registered`](crate::parametrize::Parametrized::push_registered) so that it is a
/// VarStore variable (`fc.weight_g`) that an optimizer built from the VarStore trains.
/// Gradients reach both `g` and `v`. There is no right inverse: a value cannot be assigned
/// without changing `g` as well.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::{parametrize::Parametrized, parametrize::WeightNorm};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "fc";
/// let linear = nn::linear(&path, 3, 2, Default::default());
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
/// let before = linear.forward(&xs);
/// let mut normed = Parametrized::new(linear);
/// normed.push_registered(&path, "weight", WeightNorm::new(0))?;
/// assert!(vs.variables().contains_key("fc.weight_g"));
/// assert!(normed.forward(&xs).allclose(&before, 1e-5, 1e-5, false));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug)]
pub struct WeightNorm {
    dim: Option<i64>,
    g: Option<Tensor>,
}

impl WeightNorm {
    /// One gain per index along `dim` (0: per output row of a Linear or Conv weight); a
    /// negative `dim` counts from the end. Checked against the tensor when added.
    pub fn new(dim: i64) -> Self {
        WeightNorm {
            dim: Some(dim),
            g: None,
        }
    }

    /// One gain for the whole tensor.
    pub fn whole() -> Self {
        WeightNorm { dim: None, g: None }
    }

    /// The gain `g`, once the transform has been added.
    pub fn g(&self) -> Option<&Tensor> {
        self.g.as_ref()
    }

    /// `||v||` with the kept dimension(s) of size 1 where reduced, so it broadcasts.
    fn norm(&self, v: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        let ndim = v.dim();
        let reduced = match self.dim {
            None => (0..ndim as i64).collect(),
            Some(dim) => all_but(ndim, if dim < 0 { dim + ndim as i64 } else { dim }),
        };
        if reduced.is_empty() && self.dim.is_some() {
            v.f_abs() // a 1-D tensor normalised per entry
        } else {
            v.f_norm_scalaropt_dim(2.0, reduced.as_slice(), true)
        }
    }
}

impl Transform for WeightNorm {
    fn name(&self) -> &str {
        "weight_norm"
    }

    fn prepare(&mut self, name: &str, input: &Tensor) -> Result<()> {
        require_float(name, input, "weight norm")?;
        if let Some(dim) = self.dim {
            normalise("weight norm dimension", dim, name, input)?;
        }
        let g = self
            .norm(input)
            .map_err(PatchError::torch(format!("computing the norm of `{name}`")))?;
        self.g = Some(g.detach());
        Ok(())
    }

    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        let Some(g) = &self.g else {
            return Err(PatchError::Empty {
                what: "the weight norm gain (the transform was not added to a module)",
            });
        };
        // `v * (g / ||v||)`: exactly `v` while `g == ||v||`.
        let scale = g
            .f_div(&self.norm(v).map_err(PatchError::torch("computing ||v||"))?)
            .map_err(PatchError::torch("computing g / ||v||"))?;
        v.f_mul(&scale)
            .map_err(PatchError::torch("computing g * v / ||v||"))
    }

    fn tensors(&self) -> Vec<(&'static str, &Tensor, TensorRole)> {
        self.g.iter().map(|g| ("g", g, TensorRole::Param)).collect()
    }

    fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor, TensorRole)> {
        self.g
            .iter_mut()
            .map(|g| ("g", g, TensorRole::Param))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parametrize::ParametrizeError;
    use tch::{Device, Kind};

    #[test]
    fn starts_as_the_identity_and_scales_rows_by_g() {
        let v = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let mut norm = WeightNorm::new(0);
        norm.prepare("w", &v).unwrap();
        assert_eq!(norm.g().unwrap().size(), [3, 1]);
        assert!(norm.apply(&v).unwrap().allclose(&v, 1e-6, 1e-6, false));
        let _ = norm.g.as_mut().unwrap().fill_(2.0);
        let rows = norm.apply(&v).unwrap().norm_scalaropt_dim(2.0, [1], false);
        assert!(rows.allclose(
            &Tensor::full([3], 2.0, (Kind::Float, Device::Cpu)),
            1e-5,
            1e-5,
            false
        ));
    }

    #[test]
    fn whole_has_one_gain_and_bad_dims_are_errors() {
        let v = Tensor::randn([2, 2, 3], (Kind::Float, Device::Cpu));
        let mut whole = WeightNorm::whole();
        whole.prepare("w", &v).unwrap();
        assert_eq!(whole.g().unwrap().numel(), 1);
        let error = WeightNorm::new(3).prepare("w", &v).unwrap_err();
        assert!(matches!(
            error,
            PatchError::Parametrize(ParametrizeError::AxisOutOfRange {
                axis: 3,
                ndim: 3,
                ..
            })
        ));
    }
}
