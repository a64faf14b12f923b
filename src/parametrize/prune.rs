//! Magnitude pruning: a fixed mask that zeroes the smallest entries.
use super::axes::require_float;
use super::transform::Transform;
use super::ParametrizeError;
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use tch::{Kind, Tensor};

/// Zeroes the `sparsity` fraction of entries with the smallest magnitude: `w * mask`.
///
/// The mask is computed **once**, when the transform is added, from the tensor it
/// receives, and kept as a buffer (`{tensor}_mask`, e.g. `weight_mask`, as in PyTorch's
/// `torch.nn.utils.prune`): fine-tuning then trains the kept entries while the pruned ones
/// stay zero (their gradient is zero too). Exactly `round(sparsity × numel)` entries are
/// pruned; ties in magnitude are broken by position (the earlier entry is pruned first).
///
/// Its right inverse is the identity (a pruned value assigned is pruned again).
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{parametrize::parametrize, parametrize::MagnitudePrune};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 8, 4, Default::default());
/// let pruned = parametrize(linear, "weight", MagnitudePrune::new(0.75)?)?;
/// let zeros = pruned.transformed("weight")?.eq(0.0).sum(tch::Kind::Int64).int64_value(&[]);
/// assert_eq!(zeros, 24); // 75% of 32
/// assert!(tch_patch::named_tensors(&pruned).iter().any(|t| t.name == "weight_mask"));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug)]
pub struct MagnitudePrune {
    sparsity: f64,
    mask: Option<Tensor>,
}

impl MagnitudePrune {
    /// Prunes the `sparsity` fraction of entries, `0 <= sparsity < 1` (else an error).
    pub fn new(sparsity: f64) -> Result<Self, ParametrizeError> {
        if (0.0..1.0).contains(&sparsity) {
            Ok(MagnitudePrune {
                sparsity,
                mask: None,
            })
        } else {
            Err(ParametrizeError::SparsityOutOfRange { sparsity })
        }
    }

    /// The fraction of entries pruned.
    pub fn sparsity(&self) -> f64 {
        self.sparsity
    }

    /// The mask (1 where kept, 0 where pruned), once the transform has been added.
    pub fn mask(&self) -> Option<&Tensor> {
        self.mask.as_ref()
    }
}

/// The mask that keeps all but the `pruned` smallest-magnitude entries of `input`.
fn magnitude_mask(input: &Tensor, pruned: i64) -> std::result::Result<Tensor, tch::TchError> {
    let flat = input.f_abs()?.f_reshape([-1])?;
    let order = flat.f_argsort_stable(true, 0, false)?;
    let smallest = order.f_narrow(0, 0, pruned)?;
    flat.f_ones_like()?
        .f_index_fill(0, &smallest, 0.0)?
        .f_reshape(input.size())
}

impl Transform for MagnitudePrune {
    fn name(&self) -> &str {
        "magnitude_prune"
    }

    fn prepare(&mut self, name: &str, input: &Tensor) -> Result<()> {
        require_float(name, input, "magnitude pruning")?;
        let numel = input.numel() as f64;
        let pruned = (self.sparsity * numel).round() as i64;
        let mask = magnitude_mask(input, pruned).map_err(PatchError::torch(format!(
            "computing the pruning mask of `{name}`"
        )))?;
        self.mask = Some(mask);
        Ok(())
    }

    fn apply(&self, input: &Tensor) -> Result<Tensor> {
        match &self.mask {
            Some(mask) => input
                .f_mul(mask)
                .map_err(PatchError::torch("applying the pruning mask")),
            None => Err(PatchError::Empty {
                what: "the pruning mask (the transform was not added to a module)",
            }),
        }
    }

    fn right_inverse(&self, value: &Tensor) -> Result<Tensor> {
        Ok(value.shallow_clone())
    }

    fn tensors(&self) -> Vec<(&'static str, &Tensor, TensorRole)> {
        self.mask
            .iter()
            .map(|mask| ("mask", mask, TensorRole::Buffer))
            .collect()
    }

    fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor, TensorRole)> {
        self.mask
            .iter_mut()
            .map(|mask| ("mask", mask, TensorRole::Buffer))
            .collect()
    }
}

/// The fraction of entries of `tensor` that are exactly zero.
///
/// ```
/// let w = tch::Tensor::from_slice(&[0.0f32, 1.0, 0.0, 2.0]);
/// assert_eq!(tch_patch::parametrize::sparsity_of(&w), 0.5);
/// ```
pub fn sparsity_of(tensor: &Tensor) -> f64 {
    let numel = tensor.numel();
    if numel == 0 {
        return 0.0;
    }
    let zeros = tensor.eq(0.0).sum(Kind::Int64).int64_value(&[]);
    zeros as f64 / numel as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_largest_magnitudes() {
        let w = Tensor::from_slice(&[0.5f32, -3.0, 0.1, 2.0, -0.2, 1.0]).reshape([2, 3]);
        let mut prune = MagnitudePrune::new(0.5).unwrap();
        prune.prepare("w", &w).unwrap();
        let expected = Tensor::from_slice(&[0.0f32, -3.0, 0.0, 2.0, 0.0, 1.0]).reshape([2, 3]);
        assert!(prune.apply(&w).unwrap().equal(&expected));
        assert_eq!(sparsity_of(&prune.apply(&w).unwrap()), 0.5);
    }

    #[test]
    fn rejects_sparsity_outside_zero_one() {
        for bad in [-0.1, 1.0, 1.5, f64::NAN] {
            assert!(matches!(
                MagnitudePrune::new(bad),
                Err(ParametrizeError::SparsityOutOfRange { .. })
            ));
        }
        assert!(MagnitudePrune::new(0.0).is_ok());
    }

    #[test]
    fn zero_sparsity_keeps_everything() {
        let w = Tensor::randn([4, 4], (Kind::Float, tch::Device::Cpu));
        let mut prune = MagnitudePrune::new(0.0).unwrap();
        prune.prepare("w", &w).unwrap();
        assert!(prune.apply(&w).unwrap().equal(&w));
    }
}
