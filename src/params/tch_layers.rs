//! `Parameters` for tch's layers, with the names tch gives them in a VarStore (which are
//! PyTorch's names). tch's RNNs keep their weights private, so they are not covered.
use super::{Parameters, TensorRole, Visitor, VisitorMut};
use tch::nn;

/// Layers with a `weight` and an optional `bias`, stored as `ws` and `bs`.
macro_rules! weight_and_optional_bias {
    ($([$($generic:ident),*] $ty:ty),* $(,)?) => {$(
        impl<$($generic),*> Parameters for $ty {
            fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
                visitor.tensor("weight", &self.ws, TensorRole::Param);
                visitor.optional("bias", self.bs.as_ref(), TensorRole::Param);
            }
            fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
                visitor.tensor("weight", &mut self.ws, TensorRole::Param);
                visitor.optional("bias", self.bs.as_mut(), TensorRole::Param);
            }
        }
    )*};
}

/// Normalisation layers whose affine `weight` and `bias` are both optional.
macro_rules! optional_affine {
    ($($ty:ty),* $(,)?) => {$(
        impl Parameters for $ty {
            fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
                visitor.optional("weight", self.ws.as_ref(), TensorRole::Param);
                visitor.optional("bias", self.bs.as_ref(), TensorRole::Param);
            }
            fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
                visitor.optional("weight", self.ws.as_mut(), TensorRole::Param);
                visitor.optional("bias", self.bs.as_mut(), TensorRole::Param);
            }
        }
    )*};
}

weight_and_optional_bias!([] nn::Linear, [ND] nn::Conv<ND>, [ND] nn::ConvTransposeND<ND>);
optional_affine!(nn::LayerNorm, nn::GroupNorm);

impl Parameters for nn::Embedding {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.tensor("weight", &self.ws, TensorRole::Param);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.tensor("weight", &mut self.ws, TensorRole::Param);
    }
}

impl Parameters for nn::BatchNorm {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.optional("weight", self.ws.as_ref(), TensorRole::Param);
        visitor.optional("bias", self.bs.as_ref(), TensorRole::Param);
        visitor.tensor("running_mean", &self.running_mean, TensorRole::Buffer);
        visitor.tensor("running_var", &self.running_var, TensorRole::Buffer);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.optional("weight", self.ws.as_mut(), TensorRole::Param);
        visitor.optional("bias", self.bs.as_mut(), TensorRole::Param);
        visitor.tensor("running_mean", &mut self.running_mean, TensorRole::Buffer);
        visitor.tensor("running_var", &mut self.running_var, TensorRole::Buffer);
    }
}

#[cfg(test)]
mod tests {
    use crate::params::named_tensors_with_prefix;
    use std::collections::BTreeSet;
    use tch::{nn, Device};

    /// Our names equal the names tch registered in the VarStore, for every layer.
    #[test]
    fn names_match_the_var_store() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut ours = BTreeSet::new();
        let mut add = |names: Vec<crate::params::NamedTensor>| {
            ours.extend(names.into_iter().map(|t| t.name));
        };
        add(named_tensors_with_prefix(
            &nn::linear(&root / "lin", 3, 4, Default::default()),
            "lin",
        ));
        add(named_tensors_with_prefix(
            &nn::embedding(&root / "emb", 5, 2, Default::default()),
            "emb",
        ));
        add(named_tensors_with_prefix(
            &nn::conv1d(&root / "c1", 2, 3, 3, Default::default()),
            "c1",
        ));
        add(named_tensors_with_prefix(
            &nn::conv2d(&root / "c2", 2, 3, 3, Default::default()),
            "c2",
        ));
        add(named_tensors_with_prefix(
            &nn::conv3d(&root / "c3", 2, 3, 3, Default::default()),
            "c3",
        ));
        add(named_tensors_with_prefix(
            &nn::conv_transpose2d(&root / "ct", 2, 3, 3, Default::default()),
            "ct",
        ));
        add(named_tensors_with_prefix(
            &nn::layer_norm(&root / "ln", vec![4], Default::default()),
            "ln",
        ));
        add(named_tensors_with_prefix(
            &nn::group_norm(&root / "gn", 2, 4, Default::default()),
            "gn",
        ));
        add(named_tensors_with_prefix(
            &nn::batch_norm2d(&root / "bn", 4, Default::default()),
            "bn",
        ));
        let theirs: BTreeSet<String> = vs.variables().into_keys().collect();
        assert_eq!(ours, theirs);
    }
}
