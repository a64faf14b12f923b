//! `LinearLike`: what a patch of a linear layer needs from its parent, whatever the parent
//! is (`nn::Linear`, a boxed slot content, another patch of a linear layer).
use std::ops::Deref;
use tch::{nn, nn::ModuleT, Tensor};

/// A module that maps `[.., in_features]` to `[.., out_features]` with a weight of shape
/// `[out_features, in_features]`, like `nn::Linear`, or stored transposed,
/// `[in_features, out_features]`, like transformers' `Conv1D` (GPT-2): see
/// [`fan_in_fan_out`](Self::fan_in_fan_out).
///
/// Object safe, so `Box<dyn LinearLike>` is one too (and implements it). Patches of a
/// linear-like module ([`Lora`](super::Lora), [`BiasOnly`](super::BiasOnly),
/// [`DropoutBefore`](super::DropoutBefore)) are linear-like again, so they stack.
///
/// The forward is `nn::ModuleT` (every `nn::Module` is one too): a stack may hold dropout,
/// so the train flag goes down to every layer of it, in `forward_t` and
/// [`forward_detached`](Self::forward_detached) alike.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::patches::LinearLike;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 3, 2, Default::default());
/// assert_eq!((linear.in_features(), linear.out_features()), (3, 2));
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
/// let ys = linear.forward_detached(&xs, true);
/// assert!(ys.equal(&linear.forward(&xs)));
/// ys.sum(Kind::Float).backward();
/// assert!(xs.grad().defined() && !linear.ws.grad().defined());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a linear-like layer, which this patch needs",
    label = "`LinearLike` is not implemented for `{Self}`",
    note = "implement `tch_patch::patches::LinearLike` for it (its weight, whether the weight is stored `[in, out]`, a forward with its tensors detached), as for `nn::Linear`"
)]
pub trait LinearLike: ModuleT {
    /// The weight, `[out_features, in_features]` (`[in_features, out_features]` when
    /// [`fan_in_fan_out`](Self::fan_in_fan_out)): the module's own tensor (not a copy),
    /// so an in-place change through a shallow handle of it (merging) reaches the module.
    fn weight(&self) -> &Tensor;

    /// Whether the weight is stored `[in_features, out_features]`, as transformers'
    /// `Conv1D` stores it (`y = x @ W + b`): PEFT's `fan_in_fan_out`. A LoRA update of
    /// such a layer is the same `A: [rank, in]`, `B: [out, rank]`, merged transposed.
    /// `false` unless the layer says otherwise.
    fn fan_in_fan_out(&self) -> bool {
        false
    }

    /// The forward with every parameter of the module detached: the same values as
    /// `forward_t(xs, train)`, but a backward pass reaches only `xs`, never the module's
    /// tensors. This is how a patch freezes its parent without touching the parent's
    /// tensors (their `requires_grad` and VarStore entries stay as they are) while
    /// gradients still flow to the layers before it. `train` is the caller's train flag,
    /// passed on to every layer below (dropout in a stack applies iff it is `true`).
    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor;

    /// The part of `output` (this module's `forward_detached(xs, train)`) that its weight
    /// makes: `xs @ Wᵀ` (`xs @ W` when [`fan_in_fan_out`](Self::fan_in_fan_out)), with no
    /// gradient to the weight. [`Dora`](super::Dora) rescales it. By default it is computed
    /// (one matmul), which is right for any module, a stack of patches included; a layer
    /// whose output is exactly `xs @ Wᵀ + bias` may return `output − bias` instead, as
    /// PEFT's DoRA does, saving the matmul (`nn::Linear` does).
    fn weight_term(&self, xs: &Tensor, output: &Tensor) -> Tensor {
        let _ = output;
        weight_product(xs, self.weight(), self.fan_in_fan_out())
    }

    /// The size of an input row: the weight's second dimension, its first when
    /// [`fan_in_fan_out`](Self::fan_in_fan_out) (0 if it is not 2-D).
    fn in_features(&self) -> i64 {
        weight_dim(self.weight(), usize::from(!self.fan_in_fan_out()))
    }

    /// The size of an output row: the weight's first dimension, its second when
    /// [`fan_in_fan_out`](Self::fan_in_fan_out) (0 if it is not 2-D).
    fn out_features(&self) -> i64 {
        weight_dim(self.weight(), usize::from(self.fan_in_fan_out()))
    }
}

/// Dimension `dim` of a 2-D weight, 0 for another rank.
fn weight_dim(weight: &Tensor, dim: usize) -> i64 {
    match weight.size().as_slice() {
        &[rows, columns] => [rows, columns][dim],
        _ => 0,
    }
}

impl LinearLike for nn::Linear {
    fn weight(&self) -> &Tensor {
        &self.ws
    }

    /// `train` does not matter to a linear layer.
    fn forward_detached(&self, xs: &Tensor, _train: bool) -> Tensor {
        // `nn::Linear::forward` is `xs.linear(ws, bs)`: the same call on detached handles
        // gives the same values, bit for bit.
        let bs = self.bs.as_ref().map(detached);
        xs.linear(&detached(&self.ws), bs.as_deref())
    }

    /// `output − bias` (`output` itself without a bias): the forward is `xs @ Wᵀ + bias`.
    fn weight_term(&self, _xs: &Tensor, output: &Tensor) -> Tensor {
        match &self.bs {
            Some(bs) => output - &*detached(bs),
            None => output.shallow_clone(),
        }
    }
}

/// `xs @ Wᵀ` (`xs @ W` for a `fan_in_fan_out` weight) with the weight detached.
pub(crate) fn weight_product(xs: &Tensor, weight: &Tensor, fan_in_fan_out: bool) -> Tensor {
    let weight = detached(weight);
    if fan_in_fan_out {
        xs.matmul(&weight)
    } else {
        xs.linear::<&Tensor>(&weight, None)
    }
}

/// The boxed module's `forward_t`, train flag included (an `nn::ModuleT` only, as the
/// module inside may be train-dependent).
impl ModuleT for Box<dyn LinearLike> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        (**self).forward_t(xs, train)
    }
}

impl LinearLike for Box<dyn LinearLike> {
    fn weight(&self) -> &Tensor {
        (**self).weight()
    }

    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        (**self).forward_detached(xs, train)
    }

    fn fan_in_fan_out(&self) -> bool {
        (**self).fan_in_fan_out()
    }

    fn weight_term(&self, xs: &Tensor, output: &Tensor) -> Tensor {
        (**self).weight_term(xs, output)
    }

    fn in_features(&self) -> i64 {
        (**self).in_features()
    }

    fn out_features(&self) -> i64 {
        (**self).out_features()
    }
}

/// `tensor` cut from the autograd graph: the tensor itself when it does not require a
/// gradient (a frozen weight, the common case, costs no extra op), a detached alias of it
/// otherwise.
pub(crate) fn detached(tensor: &Tensor) -> Detached<'_> {
    if tensor.requires_grad() {
        Detached::Cut(tensor.detach())
    } else {
        Detached::Same(tensor)
    }
}

/// What [`detached`] gives: a borrowed tensor or a detached alias (`Tensor` is not `Clone`,
/// so `Cow` does not fit).
pub(crate) enum Detached<'a> {
    Same(&'a Tensor),
    Cut(Tensor),
}

impl Deref for Detached<'_> {
    type Target = Tensor;

    fn deref(&self) -> &Tensor {
        match self {
            Detached::Same(tensor) => tensor,
            Detached::Cut(tensor) => tensor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::Module, Device, Kind};

    #[test]
    fn a_frozen_tensor_is_used_as_is_and_a_trainable_one_is_cut() {
        let frozen = Tensor::ones([2], (Kind::Float, Device::Cpu));
        assert!(matches!(detached(&frozen), Detached::Same(t) if std::ptr::eq(t, &frozen)));

        let trainable = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let cut = detached(&trainable);
        assert!(matches!(cut, Detached::Cut(_)));
        assert!(!cut.requires_grad());
        assert_eq!(cut.data_ptr(), trainable.data_ptr(), "an alias, not a copy");
    }

    #[test]
    fn a_frozen_linear_gives_no_weight_gradient_and_the_same_values() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 3, 2, Default::default());
        let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let trainable = linear.forward_detached(&xs, true);
        vs.freeze();
        let frozen = linear.forward_detached(&xs, false);
        assert!(trainable.equal(&frozen) && frozen.equal(&linear.forward(&xs)));
        (trainable + frozen).sum(Kind::Float).backward();
        assert!(xs.grad().defined());
        assert!(!linear.ws.grad().defined() && !linear.bs.as_ref().unwrap().grad().defined());
    }
}
