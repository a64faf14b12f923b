//! `LinearLike`: what a patch of a linear layer needs from its parent, whatever the parent
//! is (`nn::Linear`, a boxed slot content, another patch of a linear layer).
use tch::{nn, nn::Module, Tensor};

/// A module that maps `[.., in_features]` to `[.., out_features]` with a weight of shape
/// `[out_features, in_features]`, like `nn::Linear`.
///
/// Object safe, so `Box<dyn LinearLike>` is one too (and implements it). Patches of a
/// linear-like module ([`Lora`](super::Lora), [`BiasOnly`](super::BiasOnly),
/// [`DropoutBefore`](super::DropoutBefore)) are linear-like again, so they stack.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::patches::LinearLike;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 3, 2, Default::default());
/// assert_eq!((linear.in_features(), linear.out_features()), (3, 2));
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
/// let ys = linear.forward_detached(&xs);
/// assert!(ys.equal(&linear.forward(&xs)));
/// ys.sum(Kind::Float).backward();
/// assert!(xs.grad().defined() && !linear.ws.grad().defined());
/// ```
pub trait LinearLike: Module {
    /// The weight, `[out_features, in_features]`: the module's own tensor (not a copy),
    /// so an in-place change through a shallow handle of it (merging) reaches the module.
    fn weight(&self) -> &Tensor;

    /// The forward with every parameter of the module detached: the same values as
    /// `forward`, but a backward pass reaches only `xs`, never the module's tensors. This
    /// is how a patch freezes its parent without touching the parent's tensors (their
    /// `requires_grad` and VarStore entries stay as they are) while gradients still flow to
    /// the layers before it.
    fn forward_detached(&self, xs: &Tensor) -> Tensor;

    /// The size of an input row: the weight's second dimension (0 if it is not 2-D).
    fn in_features(&self) -> i64 {
        self.weight().size().get(1).copied().unwrap_or(0)
    }

    /// The size of an output row: the weight's first dimension (0 if it is not 2-D).
    fn out_features(&self) -> i64 {
        self.weight().size().first().copied().unwrap_or(0)
    }
}

impl LinearLike for nn::Linear {
    fn weight(&self) -> &Tensor {
        &self.ws
    }

    fn forward_detached(&self, xs: &Tensor) -> Tensor {
        // `nn::Linear::forward` is `xs.linear(ws, bs)`: the same call on detached handles
        // gives the same values, bit for bit.
        xs.linear(&self.ws.detach(), self.bs.as_ref().map(Tensor::detach))
    }
}

impl Module for Box<dyn LinearLike> {
    fn forward(&self, xs: &Tensor) -> Tensor {
        (**self).forward(xs)
    }
}

impl LinearLike for Box<dyn LinearLike> {
    fn weight(&self) -> &Tensor {
        (**self).weight()
    }

    fn forward_detached(&self, xs: &Tensor) -> Tensor {
        (**self).forward_detached(xs)
    }

    fn in_features(&self) -> i64 {
        (**self).in_features()
    }

    fn out_features(&self) -> i64 {
        (**self).out_features()
    }
}
