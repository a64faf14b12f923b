//! `torch.func.functional_call`: run a module with some of its tensors replaced by given
//! ones, gradients flowing to the given tensors.
use crate::error::{Result, TensorProblem};
use crate::handles::{Placed, PlacedIn};
use crate::params::Parameters;
use crate::tensor_fit::{fit_problems, Fit};
use crate::tensor_plan::Planner;
use crate::tied::Agreement;
use std::borrow::Borrow;
use tch::Tensor;

/// Whether every tensor of the module must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// Every tensor of the module (parameters and buffers) must be given a value; one name
    /// of a tied tensor covers all of its names.
    #[default]
    Strict,
    /// Tensors that are not given keep their own value.
    Partial,
}

/// Runs `f` on `module` with the tensors named in `overrides` in place of the module's own,
/// then puts the module's own back, and returns what `f` returned.
///
/// This is `torch.func.functional_call`: the result's graph goes through the given tensors,
/// so a backward pass gives *them* gradients and none to the tensors they stood in for
/// (MAML inner loops, hypernetworks, ensembles over one module).
///
/// * Every override is checked before anything changes: a name the module lacks, a name
///   given twice, an undefined tensor, another shape, dtype or device, and (in
///   [`Strictness::Strict`]) every tensor of the module left without a value. All problems
///   come back at once in [`PatchError::InvalidTensors`](crate::PatchError::InvalidTensors); the module is untouched.
/// * Tied tensors (two names, one tensor, as `Tensor::is_set_to` sees it) get one value:
///   giving one of the names replaces it under all of them; giving two names different
///   tensors is a [`TensorProblem::TiedConflict`].
/// * Handles are exchanged, never copied: O(1) per tensor, whatever its size. The module's
///   own handles come back when `f` returns, and also when it panics (a drop guard).
///
/// `overrides` is anything that yields `(name, tensor)` pairs: an array
/// `[("weight", &w)]`, a `&HashMap<String, Tensor>`, a `Vec<(String, Tensor)>`...
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::{functional::functional_call, functional::Strictness};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
/// let w = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
/// let xs = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
///
/// let ys = functional_call(&mut linear, [("weight", &w)], Strictness::Partial, |m| {
///     m.forward(&xs)
/// })?;
/// ys.sum(Kind::Float).backward();
/// assert!(w.grad().defined()); // the replacement got the gradient
/// assert!(!linear.ws.grad().defined()); // the module's own weight got none
/// assert!(!linear.ws.is_set_to(&w)); // and it is back in place
///
/// let missing = functional_call(&mut linear, [("weight", &w)], Strictness::Strict, |_| ());
/// assert!(missing.unwrap_err().to_string().contains("`bias` is missing"));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn functional_call<M, I, K, T, F, R>(
    module: &mut M,
    overrides: I,
    strictness: Strictness,
    f: F,
) -> Result<R>
where
    M: Parameters + ?Sized,
    I: IntoIterator<Item = (K, T)>,
    K: AsRef<str>,
    T: Borrow<Tensor>,
    F: FnOnce(&M) -> R,
{
    let placed = checked_handles(module, overrides, strictness)?;
    let guard = PlacedIn::new(module, placed);
    Ok(f(guard.module()))
}

/// Validates the overrides and returns, for every module name that gets one, the handle
/// to put in its place (tied names included), in walk order.
fn checked_handles<M, I, K, T>(
    module: &M,
    overrides: I,
    strictness: Strictness,
) -> Result<Vec<Placed>>
where
    M: Parameters + ?Sized,
    I: IntoIterator<Item = (K, T)>,
    K: AsRef<str>,
    T: Borrow<Tensor>,
{
    let mut planner = Planner::new(module, Agreement::SameTensor);
    let fit = Fit {
        kind: true,
        device: true,
    };
    planner.offer_all(overrides, |name, value, target| {
        Ok(fit_problems(name, value, target, fit))
    })?;
    if strictness == Strictness::Strict {
        let missing: Vec<TensorProblem> = planner
            .not_given()
            .map(|tensor| TensorProblem::Missing {
                name: tensor.name.clone(),
            })
            .collect();
        planner.reject(missing);
    }
    Ok(planner.finish_for("functional_call")?.placements())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PatchError;
    use crate::params::VisitorMut;
    use tch::{nn, Device, Kind};

    fn linear() -> (nn::VarStore, nn::Linear) {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 3, 2, Default::default());
        (vs, linear)
    }

    /// Names its tensor `a` when read and `b` when written: a broken `Parameters` impl.
    #[derive(Debug)]
    struct Inconsistent(Tensor);

    impl Parameters for Inconsistent {
        fn visit<'a>(&'a self, visitor: &mut crate::params::Visitor<'a, '_>) {
            visitor.tensor("a", &self.0, crate::params::TensorRole::Param);
        }
        fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
            visitor.tensor("b", &mut self.0, crate::params::TensorRole::Param);
        }
    }

    #[test]
    fn handles_are_swapped_at_their_position_in_the_walk_and_back() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut layers: Vec<nn::Linear> = (0..5)
            .map(|i| nn::linear(vs.root() / i, 2, 2, Default::default()))
            .collect();
        let own = layers[3].ws.shallow_clone();
        let given = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let seen = functional_call(
            &mut layers,
            [("3.weight", &given)],
            Strictness::Partial,
            |m| {
                (
                    m[3].ws.is_set_to(&given),
                    m.iter().filter(|l| l.ws.is_set_to(&given)).count(),
                )
            },
        )
        .unwrap();
        assert_eq!(seen, (true, 1));
        assert!(layers[3].ws.is_set_to(&own));
    }

    #[test]
    fn a_walk_that_names_tensors_otherwise_when_writing_swaps_nothing() {
        let own = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let mut module = Inconsistent(own.shallow_clone());
        let given = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let swapped = functional_call(&mut module, [("a", &given)], Strictness::Strict, |m| {
            m.0.is_set_to(&given)
        })
        .unwrap();
        assert!(!swapped, "never the wrong tensor");
        assert!(module.0.is_set_to(&own));
    }

    #[test]
    fn unknown_duplicate_and_misfit_names_are_all_reported() {
        let (_vs, mut linear) = linear();
        let w = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let bad = Tensor::zeros([3], (Kind::Double, Device::Cpu));
        let err = functional_call(
            &mut linear,
            [
                ("weight", &w),
                ("weight", &w),
                ("wieght", &w),
                ("bias", &bad),
            ],
            Strictness::Partial,
            |_| (),
        )
        .unwrap_err();
        let PatchError::InvalidTensors { problems, .. } = err else {
            panic!("unexpected error {err}");
        };
        assert!(matches!(&problems[0], TensorProblem::Duplicate { name } if name == "weight"));
        assert!(matches!(&problems[1], TensorProblem::Unexpected { name } if name == "wieght"));
        assert!(matches!(&problems[2], TensorProblem::Shape { name, .. } if name == "bias"));
        assert!(matches!(&problems[3], TensorProblem::Kind { name, .. } if name == "bias"));
        assert_eq!(problems.len(), 4);
    }

    #[test]
    fn an_undefined_override_is_an_error_not_a_panic() {
        let (_vs, mut linear) = linear();
        let err = functional_call(
            &mut linear,
            [("bias", Tensor::new())],
            Strictness::Partial,
            |_| (),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`bias` is an undefined tensor"));
    }

    #[test]
    fn handles_are_restored_after_the_call() {
        let (_vs, mut linear) = linear();
        let (w, b) = (
            linear.ws.shallow_clone(),
            linear.bs.as_ref().unwrap().shallow_clone(),
        );
        let w2 = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let b2 = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let inside = functional_call(
            &mut linear,
            [("weight", &w2), ("bias", &b2)],
            Strictness::Strict,
            |m| m.ws.is_set_to(&w2) && m.bs.as_ref().unwrap().is_set_to(&b2),
        )
        .unwrap();
        assert!(inside);
        assert!(linear.ws.is_set_to(&w));
        assert!(linear.bs.as_ref().unwrap().is_set_to(&b));
    }
}
