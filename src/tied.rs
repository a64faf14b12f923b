//! Tied tensors (several names, one tensor): which of a module's names are one tensor, and
//! the one value each tied tensor is given when values come by name.
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::NamedTensor;
use crate::tensor_fit::same_tensor;
use std::collections::HashMap;
use tch::Tensor;

/// For each tensor, the index of the first tensor it is tied to: the same storage, offset,
/// shape and strides (`Tensor::is_set_to`). A tensor tied to none is its own leader.
///
/// `is_set_to` is a dispatched libtorch op, so comparing every pair would cost a model of
/// `n` tensors `n²/2` calls on every functional call, swap or load. Tied tensors start at
/// one address, so a tensor is compared only with the earlier leaders at its address.
pub(crate) fn tie_leaders(tensors: &[NamedTensor]) -> Result<Vec<usize>> {
    let mut leaders: Vec<usize> = Vec::with_capacity(tensors.len());
    // The first leader at each address; further leaders at an address already taken (views
    // of one storage with other shapes) are rare and kept aside.
    let mut first_at: HashMap<Option<usize>, usize> = HashMap::with_capacity(tensors.len());
    let mut more_at: Vec<(Option<usize>, usize)> = Vec::new();
    for (index, named) in tensors.iter().enumerate() {
        let mut leader = index;
        if named.tensor.defined() {
            let address = first_element_address(&named.tensor);
            let first = first_at.get(&address).copied();
            let more = more_at.iter().filter(|(at, _)| *at == address);
            for earlier in first.into_iter().chain(more.map(|&(_, i)| i)) {
                let other = &tensors[earlier];
                let tied = named.tensor.f_is_set_to(&other.tensor).map_err(|source| {
                    let context = format!("comparing `{}` with `{}`", named.name, other.name);
                    PatchError::torch(context)(source)
                })?;
                if tied {
                    leader = earlier;
                    break;
                }
            }
            if leader == index {
                match first {
                    None => {
                        first_at.insert(address, index);
                    }
                    Some(_) => more_at.push((address, index)),
                }
            }
        }
        leaders.push(leader);
    }
    Ok(leaders)
}

/// The address of a strided tensor's first element; `None` for layouts without one (sparse,
/// MKL-DNN: tch's `data_ptr` would panic), which are all compared with each other. Tied
/// tensors have one address, so every tie detector buckets by it.
pub(crate) fn first_element_address(tensor: &Tensor) -> Option<usize> {
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
    /// If it has one, returns the conflict when the two do not agree.
    pub(crate) fn offer(
        &mut self,
        leader: usize,
        name: &str,
        value: &Tensor,
    ) -> Result<Option<TensorProblem>> {
        let Some((tied_to, earlier)) = self.chosen.get(&leader) else {
            self.chosen
                .insert(leader, (name.to_owned(), value.shallow_clone()));
            return Ok(None);
        };
        let agree = match self.agreement {
            Agreement::SameTensor => same_tensor(earlier, value),
            Agreement::EqualValues => earlier
                .f_equal(value)
                .map_err(PatchError::torch(format!("comparing `{name}`")))?,
        };
        Ok((!agree).then(|| TensorProblem::TiedConflict {
            name: name.to_owned(),
            tied_to: tied_to.clone(),
        }))
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
        assert_eq!(tie_leaders(&tensors).unwrap(), [0, 1, 0]);
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
        assert_eq!(tie_leaders(&tensors).unwrap(), [0, 1, 0, 1, 4, 5, 6]);
    }

    #[test]
    fn one_tensor_under_two_names_agrees_and_another_conflicts() {
        let (value, other) = (ones(), ones());
        let mut ties = TiedValues::new(Agreement::SameTensor);
        assert!(ties.offer(0, "emb", &value).unwrap().is_none());
        assert!(ties
            .offer(0, "head", &value.shallow_clone())
            .unwrap()
            .is_none());
        let conflict = ties.offer(0, "lm", &other).unwrap();
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
        assert!(ties.offer(3, "emb", &ones()).unwrap().is_none());
        assert!(ties.offer(3, "head", &ones()).unwrap().is_none());
        assert!(ties.offer(3, "lm", &ones().zeros_like()).unwrap().is_some());
        let values: Vec<_> = ties.into_values().collect();
        assert!(matches!(&values[..], [(3, name, _)] if name == "emb"));
    }
}
