//! `torch.func.functional_call`: run a module with some of its tensors replaced by given
//! ones, gradients flowing to the given tensors.
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::{named_tensors, Parameters, VisitorMut};
use crate::tensor_fit::{fit_problems, given_index, Fit};
use crate::tied::{tie_leaders, Agreement, TiedValues};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
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
///   come back at once in [`PatchError::InvalidTensors`]; the module is untouched.
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
    let handles = checked_handles(module, overrides, strictness)?;
    let mut guard = Restore {
        module,
        saved: handles,
    };
    exchange_by_position(guard.module, &mut guard.saved);
    Ok(f(guard.module))
}

/// A handle to put in place of the module's own: where the module's walk reaches the tensor
/// (its position and full name), and the handle.
struct Placed {
    position: usize,
    name: String,
    handle: Tensor,
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
    let named = named_tensors(module);
    let leaders = tie_leaders(&named)?;
    let index: HashMap<&str, usize> = named
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let fit = Fit {
        kind: true,
        device: true,
    };
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    // Tie leaders of every existing name given, fitting or not (those are not "missing").
    let mut attempted = HashSet::new();
    let mut chosen = TiedValues::new(Agreement::SameTensor);
    let lookup = |name: &str| index.get(name).copied();
    for (name, value) in overrides {
        let (name, value) = (name.as_ref(), value.borrow());
        let Some(i) = given_index(name, &mut seen, lookup, &mut problems) else {
            continue;
        };
        attempted.insert(leaders[i]);
        let misfits = fit_problems(name, value, &named[i].tensor, fit);
        if !misfits.is_empty() {
            problems.extend(misfits);
            continue;
        }
        problems.extend(chosen.offer(leaders[i], name, value)?);
    }
    if strictness == Strictness::Strict {
        for (i, tensor) in named.iter().enumerate() {
            if !attempted.contains(&leaders[i]) {
                problems.push(TensorProblem::Missing {
                    name: tensor.name.clone(),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(PatchError::InvalidTensors {
            operation: "functional_call".into(),
            problems,
        });
    }
    Ok(named
        .into_iter()
        .enumerate()
        .filter_map(|(position, tensor)| {
            let value = chosen.get(leaders[position])?;
            Some(Placed {
                position,
                name: tensor.name,
                handle: value.shallow_clone(),
            })
        })
        .collect())
}

/// Swaps each handle with the module's tensor at its position in the walk (the walk's
/// order is the one `named_tensors` saw: the module is borrowed all along). Positions
/// spare the walk a lookup by name per tensor of the model, twice per call; the name is
/// still compared, so a `Parameters` impl whose `visit` and `visit_mut` disagree leaves
/// the tensor alone instead of swapping the wrong one.
fn exchange_by_position<M: Parameters + ?Sized>(module: &mut M, placed: &mut [Placed]) {
    let mut pending = placed.iter_mut().peekable();
    let mut position = 0;
    let mut exchange = |name: &str, tensor: &mut Tensor, _| {
        if let Some(next) = pending.next_if(|p| p.position == position) {
            if next.name == name {
                std::mem::swap(tensor, &mut next.handle);
            }
        }
        position += 1;
    };
    module.visit_mut(&mut VisitorMut::new("", &mut exchange));
}

/// Puts the module's own handles back when dropped, so a panicking `f` restores them too.
struct Restore<'m, M: Parameters + ?Sized> {
    module: &'m mut M,
    saved: Vec<Placed>,
}

impl<M: Parameters + ?Sized> Drop for Restore<'_, M> {
    fn drop(&mut self) {
        exchange_by_position(self.module, &mut self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
