//! The one by-name tensor planner behind loads, functional calls and swaps: values given
//! by name are matched to the module's tensors (tied names included), checked, and every
//! problem collected before anything changes; then [`Plan::write_all`] applies the writes
//! with the crate's one rollback policy.
use crate::error::{PatchError, Result, TensorProblem};
use crate::handles::Placed;
use crate::params::{named_tensors, NamedTensor, Parameters};
use crate::tensor_fit::given_index;
use crate::tied::{tie_leaders, Agreement, TiedValues};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use tch::Tensor;

/// Values being matched to a module's tensors, with every problem found so far.
pub(crate) struct Planner {
    named: Vec<NamedTensor>,
    leaders: Vec<usize>,
    by_name: HashMap<String, usize>,
    /// Names given so far (a second value under one is a problem).
    seen: HashSet<String>,
    /// Tie leaders of every tensor given a value, usable or not (those are not missing).
    given: HashSet<usize>,
    values: TiedValues,
    problems: Vec<TensorProblem>,
}

impl Planner {
    /// A plan for `module`'s tensors, where two values under names of one tied tensor must
    /// agree as `agreement` says.
    pub(crate) fn new<M: Parameters + ?Sized>(module: &M, agreement: Agreement) -> Self {
        let named = named_tensors(module);
        let leaders = tie_leaders(&named);
        let by_name = named
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Planner {
            named,
            leaders,
            by_name,
            seen: HashSet::new(),
            given: HashSet::new(),
            values: TiedValues::new(agreement),
            problems: Vec::new(),
        }
    }

    /// The module's tensors, in walk order.
    pub(crate) fn tensors(&self) -> &[NamedTensor] {
        &self.named
    }

    /// The position of the module's tensor `name`, recording it as given; `None`, with the
    /// problem recorded, for a name given twice or one the module lacks.
    pub(crate) fn target(&mut self, name: &str) -> Option<usize> {
        let by_name = &self.by_name;
        let index = given_index(
            name,
            &mut self.seen,
            |name| by_name.get(name).copied(),
            &mut self.problems,
        )?;
        self.given.insert(self.leaders[index]);
        Some(index)
    }

    /// The position of the tensor that the tensor at `index` is tied to first (itself if
    /// it is tied to none before it).
    pub(crate) fn leader(&self, index: usize) -> usize {
        self.leaders[index]
    }

    /// Offers every `(name, value)` of `values`: each name is looked up as
    /// [`Planner::target`] does, `check(name, value, module_tensor)` returns what is wrong
    /// with the value, and a value with no problem is accepted.
    pub(crate) fn offer_all<I, K, T>(
        &mut self,
        values: I,
        mut check: impl FnMut(&str, &Tensor, &Tensor) -> Result<Vec<TensorProblem>>,
    ) -> Result<()>
    where
        I: IntoIterator<Item = (K, T)>,
        K: AsRef<str>,
        T: Borrow<Tensor>,
    {
        for (name, value) in values {
            let (name, value) = (name.as_ref(), value.borrow());
            let Some(i) = self.target(name) else {
                continue;
            };
            let problems = check(name, value, &self.named[i].tensor)?;
            if problems.is_empty() {
                self.accept(i, name, value);
            } else {
                self.reject(problems);
            }
        }
        Ok(())
    }

    /// Records problems found by the caller's own checks.
    pub(crate) fn reject(&mut self, problems: impl IntoIterator<Item = TensorProblem>) {
        self.problems.extend(problems);
    }

    /// Gives `value`, under `name`, to the tensor at `index` (and its tied names).
    pub(crate) fn accept(&mut self, index: usize, name: &str, value: &Tensor) {
        let conflict = self.values.offer(self.leaders[index], name, value);
        self.problems.extend(conflict);
    }

    /// The module's tensors that were given no value under any of their names.
    pub(crate) fn not_given(&self) -> impl Iterator<Item = &NamedTensor> {
        self.named
            .iter()
            .zip(&self.leaders)
            .filter(|(_, leader)| !self.given.contains(leader))
            .map(|(named, _)| named)
    }

    /// [`Planner::finish`], its problems in [`PatchError::InvalidTensors`] for `operation`.
    pub(crate) fn finish_for(self, operation: &str) -> Result<Plan> {
        self.finish()
            .map_err(|problems| PatchError::InvalidTensors {
                operation: operation.to_owned(),
                problems,
            })
    }

    /// The checked plan, or every problem found (nothing was changed).
    pub(crate) fn finish(self) -> std::result::Result<Plan, Vec<TensorProblem>> {
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        Ok(Plan {
            named: self.named,
            leaders: self.leaders,
            values: self.values,
        })
    }
}

/// Checked values for a module's tensors, none written yet.
pub(crate) struct Plan {
    named: Vec<NamedTensor>,
    leaders: Vec<usize>,
    values: TiedValues,
}

impl Plan {
    /// Whether the tensor at `index` (or a name tied to it) was given a value.
    pub(crate) fn has_value(&self, index: usize) -> bool {
        self.values.get(self.leaders[index]).is_some()
    }

    /// The module's tensors, in walk order.
    pub(crate) fn tensors(&self) -> &[NamedTensor] {
        &self.named
    }

    /// A handle for every name of the module whose tensor was given a value (tied names
    /// included), in walk order: what a functional call puts in place.
    pub(crate) fn placements(self) -> Vec<Placed> {
        let Plan {
            named,
            leaders,
            values,
        } = self;
        named
            .into_iter()
            .enumerate()
            .filter_map(|(position, tensor)| {
                let value = values.get(leaders[position])?;
                Some(Placed {
                    position,
                    name: tensor.name,
                    handle: value.shallow_clone(),
                })
            })
            .collect()
    }

    /// Writes each value into its tensor, once per tied tensor: `write(target, name,
    /// value)` gets a shallow handle to the module's tensor (the same tensor object) and
    /// returns what `undo` needs to take the write back. The rollback policy of the crate:
    /// if a write fails, the writes done so far are undone, newest first, and its error is
    /// returned, so the module is as it was. (A write that cannot be undone without a copy
    /// of the old value, `copy_` in a load, returns no undo; it is only attempted after
    /// every shape, dtype, device and overlap check, so libtorch has no reason left to
    /// refuse it.)
    pub(crate) fn write_all<U, E>(
        self,
        mut write: impl FnMut(Tensor, &str, &Tensor) -> std::result::Result<U, E>,
        mut undo: impl FnMut(U),
    ) -> std::result::Result<(), E> {
        let mut done = Vec::new();
        for (leader, name, value) in self.values.into_values() {
            match write(self.named[leader].tensor.shallow_clone(), &name, &value) {
                Ok(undo_record) => done.push(undo_record),
                Err(error) => {
                    done.into_iter().rev().for_each(&mut undo);
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn tied_names_share_one_value_and_a_failed_write_undoes_the_others() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 2, 2, Default::default());
        let module = vec![
            linear.ws.shallow_clone(),
            linear.ws.shallow_clone(),
            linear.bs.as_ref().unwrap().shallow_clone(),
        ];
        let mut planner = Planner::new(&module, Agreement::SameTensor);
        let (w, b) = (
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        );
        let i = planner.target("0").unwrap();
        planner.accept(i, "0", &w);
        let j = planner.target("2").unwrap();
        planner.accept(j, "2", &b);
        assert_eq!(planner.not_given().count(), 0, "`1` is tied to `0`");
        let plan = planner.finish().ok().unwrap();
        assert!(plan.has_value(1));
        let (mut writes, mut undone) = (0, 0);
        let result = plan.write_all(
            |_, name, _| {
                writes += 1;
                match writes {
                    1 => Ok(name.to_owned()),
                    _ => Err(PatchError::Empty { what: "test" }),
                }
            },
            |_| undone += 1,
        );
        assert!(result.is_err());
        assert_eq!((writes, undone), (2, 1));
    }

    #[test]
    fn twice_given_and_unknown_names_are_problems() {
        let module = vec![Tensor::zeros([1], (Kind::Float, Device::Cpu))];
        let mut planner = Planner::new(&module, Agreement::SameTensor);
        assert!(planner.target("0").is_some());
        assert!(planner.target("0").is_none());
        assert!(planner.target("1").is_none());
        let err = planner.finish_for("test").err().unwrap();
        assert!(matches!(err, PatchError::InvalidTensors { problems, .. } if problems.len() == 2));
    }
}
