//! Tied tensors (several names, one tensor): which of a module's names are one tensor, and
//! the one value each tied tensor is given when values come by name.
use crate::error::TensorProblem;
use crate::params::NamedTensor;
use crate::tensor_fit::same_tensor;
use std::collections::HashMap;
use tch::Tensor;

/// Tensors bucketed by the address of their first element, so that the tensors tied to one
/// are found with a few `Tensor::is_set_to` calls (a dispatched libtorch op: comparing
/// every pair would cost a model of `n` tensors `n²/2` calls on every functional call, swap
/// or load). Tied tensors start at one address. The one tie detector of the crate: loads,
/// functional calls, swaps, `Mutable` and the tree's rules and printing all use it.
pub(crate) struct TieIndex {
    /// Address -> (index, shallow handle) of every defined tensor there, in index order.
    buckets: HashMap<Option<usize>, Vec<(usize, Tensor)>>,
    /// How many tensors were indexed (undefined ones included).
    len: usize,
}

impl TieIndex {
    /// Indexes `tensors` by position; undefined ones are tied to nothing.
    pub(crate) fn new<'t>(tensors: impl IntoIterator<Item = &'t Tensor>) -> Self {
        let mut buckets: HashMap<Option<usize>, Vec<(usize, Tensor)>> = HashMap::new();
        let mut len = 0;
        for (index, tensor) in tensors.into_iter().enumerate() {
            len += 1;
            if tensor.defined() {
                buckets
                    .entry(first_element_address(tensor))
                    .or_default()
                    .push((index, tensor.shallow_clone()));
            }
        }
        TieIndex { buckets, len }
    }

    /// The positions of the indexed tensors that are one tensor with `tensor` (the same
    /// storage, offset, shape and strides), in ascending order.
    pub(crate) fn tied_to<'s>(&'s self, tensor: &Tensor) -> impl Iterator<Item = usize> + 's {
        let bucket = match tensor.defined() {
            true => self.buckets.get(&first_element_address(tensor)),
            false => None,
        };
        let tensor = tensor.shallow_clone();
        bucket
            .into_iter()
            .flatten()
            .filter(move |(_, other)| same_tensor(other, &tensor))
            .map(|&(index, _)| index)
    }

    /// For each indexed tensor, the position of the first one it is tied to (itself if
    /// none): its tie leader.
    pub(crate) fn leaders(&self) -> Vec<usize> {
        let mut leaders: Vec<usize> = (0..self.len).collect();
        for bucket in self.buckets.values() {
            for (at, (index, tensor)) in bucket.iter().enumerate() {
                if let Some(&(first, _)) = bucket[..at].iter().find(|(_, o)| same_tensor(o, tensor))
                {
                    leaders[*index] = first;
                }
            }
        }
        leaders
    }
}

/// For each tensor, the index of the first tensor it is tied to (see [`TieIndex`]). A
/// tensor tied to none is its own leader.
pub(crate) fn tie_leaders(tensors: &[NamedTensor]) -> Vec<usize> {
    TieIndex::new(tensors.iter().map(|t| &t.tensor)).leaders()
}

/// The address of a strided tensor's first element; `None` for layouts without one (sparse,
/// MKL-DNN: tch's `data_ptr` would panic), which are all compared with each other. Tied
/// tensors have one address, so every tie detector buckets by it.
fn first_element_address(tensor: &Tensor) -> Option<usize> {
    if tensor.is_sparse() || tensor.is_mkldnn() {
        None
    } else {
        Some(tensor.data_ptr() as usize)
    }
}

/// When two values given under names of one tied tensor agree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Agreement {
    /// They are one tensor (handles passed by the caller).
    SameTensor,
    /// They hold equal values (tensors read from a file are never one tensor).
    EqualValues,
}

/// The value of each tied tensor, keyed by its tie leader (see [`tie_leaders`]): the first
/// value given under any of its names; a later name given a value that does not agree is a
/// [`TensorProblem::TiedConflict`].
pub(crate) struct TiedValues {
    agreement: Agreement,
    /// Tie leader -> (the name the value was given under, the value).
    chosen: HashMap<usize, (String, Tensor)>,
}

impl TiedValues {
    /// No value chosen yet.
    pub(crate) fn new(agreement: Agreement) -> Self {
        TiedValues {
            agreement,
            chosen: HashMap::new(),
        }
    }

    /// Gives `value`, named `name`, to the tensor led by `leader` if it has no value yet.
    /// If it has one, returns the conflict when the two do not agree (values libtorch
    /// cannot compare do not agree).
    pub(crate) fn offer(
        &mut self,
        leader: usize,
        name: &str,
        value: &Tensor,
    ) -> Option<TensorProblem> {
        let Some((tied_to, earlier)) = self.chosen.get(&leader) else {
            self.chosen
                .insert(leader, (name.to_owned(), value.shallow_clone()));
            return None;
        };
        let agree = match self.agreement {
            Agreement::SameTensor => same_tensor(earlier, value),
            Agreement::EqualValues => earlier.f_equal(value).unwrap_or(false),
        };
        (!agree).then(|| TensorProblem::TiedConflict {
            name: name.to_owned(),
            tied_to: tied_to.clone(),
        })
    }

    /// The value of the tensor led by `leader`, if it was given one.
    pub(crate) fn get(&self, leader: usize) -> Option<&Tensor> {
        self.chosen.get(&leader).map(|(_, value)| value)
    }

    /// `(leader, name, value)` for each tensor given a value, in no particular order.
    pub(crate) fn into_values(self) -> impl Iterator<Item = (usize, String, Tensor)> {
        self.chosen
            .into_iter()
            .map(|(leader, (name, value))| (leader, name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn ones() -> Tensor {
        Tensor::ones([2], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn tied_names_share_the_first_leader() {
        let (a, b) = (ones(), ones());
        let named = |name: &str, tensor: &Tensor| NamedTensor {
            name: name.to_owned(),
            tensor: tensor.shallow_clone(),
            role: crate::params::TensorRole::Param,
        };
        let tensors = [named("a", &a), named("b", &b), named("a2", &a)];
        assert_eq!(tie_leaders(&tensors), [0, 1, 0]);
    }

    #[test]
    fn views_at_one_address_are_tied_only_when_they_are_the_same_view() {
        let base = Tensor::arange(6, (Kind::Float, Device::Cpu));
        let named = |name: &str, tensor: Tensor| NamedTensor {
            name: name.to_owned(),
            tensor,
            role: crate::params::TensorRole::Param,
        };
        let empty = || Tensor::zeros([0], (Kind::Float, Device::Cpu));
        let tensors = [
            named("flat", base.shallow_clone()),
            named("matrix", base.view([2, 3])), // same address, other shape: not tied
            named("flat2", base.shallow_clone()),
            named("matrix2", base.view([2, 3])),
            named("sparse", base.to_sparse_sparse_dim(1)),
            named("empty", empty()), // zero elements, no address of their own
            named("empty2", empty()),
        ];
        assert_eq!(tie_leaders(&tensors), [0, 1, 0, 1, 4, 5, 6]);
    }

    #[test]
    fn one_tensor_under_two_names_agrees_and_another_conflicts() {
        let (value, other) = (ones(), ones());
        let mut ties = TiedValues::new(Agreement::SameTensor);
        assert!(ties.offer(0, "emb", &value).is_none());
        assert!(ties.offer(0, "head", &value.shallow_clone()).is_none());
        let conflict = ties.offer(0, "lm", &other);
        assert!(
            matches!(conflict, Some(TensorProblem::TiedConflict { name, tied_to })
            if name == "lm" && tied_to == "emb")
        );
        assert!(ties.get(0).unwrap().is_set_to(&value));
        assert!(ties.get(1).is_none());
    }

    #[test]
    fn equal_values_agree_when_values_are_compared() {
        let mut ties = TiedValues::new(Agreement::EqualValues);
        assert!(ties.offer(3, "emb", &ones()).is_none());
        assert!(ties.offer(3, "head", &ones()).is_none());
        assert!(ties.offer(3, "lm", &ones().zeros_like()).is_some());
        let values: Vec<_> = ties.into_values().collect();
        assert!(matches!(&values[..], [(3, name, _)] if name == "emb"));
    }
}
