//! Tied tensors (several names, one tensor): which of a module's names are one tensor, and
//! the one value each tied tensor is given when values come by name.
use crate::checks::same_tensor;
use crate::error::{PatchError, Result, TensorProblem};
use crate::params::NamedTensor;
use std::collections::HashMap;
use tch::Tensor;

/// For each tensor, the index of the first tensor it is tied to: the same storage, offset,
/// shape and strides (`Tensor::is_set_to`). A tensor tied to none is its own leader.
pub(crate) fn tie_leaders(tensors: &[NamedTensor]) -> Result<Vec<usize>> {
    let mut leaders: Vec<usize> = Vec::with_capacity(tensors.len());
    for (index, named) in tensors.iter().enumerate() {
        let mut leader = index;
        if named.tensor.defined() {
            for (earlier, other) in tensors[..index].iter().enumerate() {
                if leaders[earlier] != earlier || !other.tensor.defined() {
                    continue;
                }
                let tied = named
                    .tensor
                    .f_is_set_to(&other.tensor)
                    .map_err(PatchError::torch(format!(
                        "comparing `{}` with `{}`",
                        named.name, other.name
                    )))?;
                if tied {
                    leader = earlier;
                    break;
                }
            }
        }
        leaders.push(leader);
    }
    Ok(leaders)
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
