//! Activation and dropout layers as values: named, visible in a tree, replaceable.
use crate::params::{Parameters, TensorRole, Visitor, VisitorMut};
use crate::tree::{BadHyperparameter, HyperArgs, HyperList, Hyperparameters, Rebuild};
use tch::{nn, Tensor};

/// Layers without tensors: no names to visit.
macro_rules! no_tensors {
    ($($ty:ty),* $(,)?) => {$(
        impl Parameters for $ty {
            fn visit<'a>(&'a self, _visitor: &mut Visitor<'a, '_>) {}
            fn visit_mut(&mut self, _visitor: &mut VisitorMut<'_>) {}
        }
    )*};
}

/// An activation computed by one tch method on the input.
macro_rules! elementwise {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl nn::Module for $name {
            fn forward(&self, xs: &Tensor) -> Tensor {
                xs.$method()
            }
        }
    )*};
}

elementwise! {
    /// `max(x, 0)`: PyTorch's `nn.ReLU`.
    Relu => relu;
    /// `x * sigmoid(x)`: PyTorch's `nn.SiLU`.
    Silu => silu;
    /// PyTorch's `nn.Tanh`.
    Tanh => tanh;
    /// PyTorch's `nn.Sigmoid`.
    Sigmoid => sigmoid;
}

/// The input itself: PyTorch's `nn.Identity` (a placeholder a rule can replace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity;

impl nn::Module for Identity {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.shallow_clone()
    }
}

/// How [`Gelu`] computes the Gaussian CDF (PyTorch's `approximate` argument).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GeluApproximation {
    /// The exact `erf` form (`approximate="none"`).
    #[default]
    None,
    /// The `tanh` approximation (`approximate="tanh"`, GPT-2's `gelu_new`).
    Tanh,
}

/// `x * Φ(x)`: PyTorch's `nn.GELU`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gelu {
    /// Exact or `tanh`-approximated.
    pub approximate: GeluApproximation,
}

impl GeluApproximation {
    /// PyTorch's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            GeluApproximation::None => "none",
            GeluApproximation::Tanh => "tanh",
        }
    }
}

impl nn::Module for Gelu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.gelu(self.approximate.as_str())
    }
}

/// Zeroes each element with probability `p` in training, scaling the others by
/// `1 / (1 - p)`; the identity in eval mode. PyTorch's `nn.Dropout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f64,
}

/// A [`Dropout`] with probability `p`.
pub fn dropout(p: f64) -> Dropout {
    Dropout { p }
}

impl nn::ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.dropout(self.p, train)
    }
}

/// `max(0, x) + weight * min(0, x)`, `weight` trained (one value, or one per channel):
/// PyTorch's `nn.PReLU`.
#[derive(Debug)]
pub struct PRelu {
    /// The slope of the negative part, `[num_parameters]`.
    pub weight: Tensor,
}

/// A [`PRelu`] with `num_parameters` slopes at `path / "weight"`, each 0.25 as in PyTorch.
pub fn prelu<'a, P: std::borrow::Borrow<nn::Path<'a>>>(path: P, num_parameters: i64) -> PRelu {
    let weight = path
        .borrow()
        .var("weight", &[num_parameters], nn::Init::Const(0.25));
    PRelu { weight }
}

impl nn::Module for PRelu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.prelu(&self.weight)
    }
}

impl Parameters for PRelu {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.tensor("weight", &self.weight, TensorRole::Param);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.tensor("weight", &mut self.weight, TensorRole::Param);
    }
}

no_tensors!(Relu, Silu, Tanh, Sigmoid, Identity, Gelu, Dropout);
crate::leaf_layer!(rebuild: Relu, Silu, Tanh, Sigmoid, Identity, Gelu, Dropout, PRelu);

/// Layers without constructor arguments.
macro_rules! no_hyperparameters {
    ($($ty:ty),*) => {$(
        impl Hyperparameters for $ty {
            fn hyperparameters(&self) -> HyperList {
                Vec::new()
            }
        }
    )*};
}

no_hyperparameters!(Relu, Silu, Tanh, Sigmoid, Identity);

/// Layers without constructor arguments rebuild as themselves.
macro_rules! rebuild_as_copy {
    ($($ty:ty),*) => {$(
        impl Rebuild for $ty {
            fn rebuild(&self, _root: &nn::Path, _hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
                Ok(*self)
            }
        }
    )*};
}

rebuild_as_copy!(Relu, Silu, Tanh, Sigmoid, Identity);

impl Rebuild for Gelu {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        self.rebuild_from(hyper).map(drop)
    }
    fn rebuild(&self, _root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        self.rebuild_from(hyper)
    }
}

impl Gelu {
    fn rebuild_from(&self, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        let approximate = match hyper.text("approximate")? {
            "none" => GeluApproximation::None,
            "tanh" => GeluApproximation::Tanh,
            _ => {
                return Err(BadHyperparameter::new(
                    "approximate",
                    "`approximate` is \"none\" or \"tanh\"",
                ))
            }
        };
        Ok(Gelu { approximate })
    }
}

impl Rebuild for Dropout {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        match hyper.float("p")? {
            p if (0.0..=1.0).contains(&p) => Ok(()),
            _ => Err(BadHyperparameter::new(
                "p",
                "a probability must be in [0, 1]",
            )),
        }
    }
    fn rebuild(&self, _root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        self.check(hyper)?;
        Ok(dropout(hyper.float("p")?))
    }
}

impl Rebuild for PRelu {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        hyper.size("num_parameters").map(drop)
    }
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        Ok(prelu(root, hyper.size("num_parameters")?))
    }
}

impl Hyperparameters for Gelu {
    fn hyperparameters(&self) -> HyperList {
        vec![("approximate", self.approximate.as_str().into())]
    }
}

impl Hyperparameters for Dropout {
    fn hyperparameters(&self) -> HyperList {
        vec![("p", self.p.into())]
    }
}

impl Hyperparameters for PRelu {
    fn hyperparameters(&self) -> HyperList {
        vec![("num_parameters", self.weight.size()[0].into())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, ModuleT};
    use tch::{Device, Kind};

    #[test]
    fn each_activation_is_pytorchs() {
        let xs = Tensor::from_slice(&[-2.0f32, -0.5, 0.0, 1.5]);
        assert!(Relu.forward(&xs).equal(&xs.relu()));
        assert!(Gelu::default().forward(&xs).equal(&xs.gelu("none")));
        let tanh_gelu = Gelu {
            approximate: GeluApproximation::Tanh,
        };
        assert!(tanh_gelu.forward(&xs).equal(&xs.gelu("tanh")));
        assert!(Identity.forward(&xs).equal(&xs));
        let vs = nn::VarStore::new(Device::Cpu);
        let prelu = prelu(vs.root(), 1);
        let expected = Tensor::from_slice(&[-0.5f32, -0.125, 0.0, 1.5]);
        assert!(prelu.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
        let ones = Tensor::ones([1000], (Kind::Float, Device::Cpu));
        assert!(dropout(0.5).forward_t(&ones, false).equal(&ones));
        let dropped = dropout(0.5).forward_t(&ones, true);
        assert!(dropped.eq(0.0).any().int64_value(&[]) == 1);
    }
}
