//! Whatever a slot of a linear-like layer holds (`Slot<nn::Linear>`, a slot of a model's
//! own `Conv1D`) is linear-like, so LoRA, bias-only tuning and dropout-before stack on
//! top of each other inside one slot.
use super::LinearLike;
use crate::handles::SwappedIn;
use crate::params::{Parameters, TensorRole, Visitor};
use crate::tree::DynLayer;
use tch::{nn::ModuleT, Tensor};

impl<T: LinearLike + 'static> LinearLike for DynLayer<T> {
    fn weight(&self) -> &Tensor {
        self.root().weight()
    }

    fn fan_in_fan_out(&self) -> bool {
        self.root().fan_in_fan_out()
    }

    /// The root's own (the bare layer's, for a slot holding no patch); computed otherwise,
    /// as another patch's part of the output is not the weight's.
    fn weight_term(&self, xs: &Tensor, output: &Tensor) -> Tensor {
        match self.inner() {
            None => self.root().weight_term(xs, output),
            Some(_) => super::linear_like::weight_product(xs, self.weight(), self.fan_in_fan_out()),
        }
    }

    /// The content's `forward_t(xs, train)` with every one of its tensors detached: each
    /// handle is pointed at a detached alias of its tensor for the call (no storage
    /// copied), so the values are bit for bit the forward's while a backward pass reaches
    /// only `xs`.
    fn forward_detached(&self, xs: &Tensor, train: bool) -> Tensor {
        let handles = tensor_handles(self);
        if !handles.iter().any(|t| t.requires_grad()) {
            return self.forward_t(xs, train); // frozen already: nothing to cut
        }
        let detached = handles.iter().map(|t| t.detach()).collect();
        match SwappedIn::new(handles, detached) {
            Ok(_swapped) => self.forward_t(xs, train),
            // A libtorch whose handles cannot be exchanged: freeze by cutting the graph
            // instead (the values are the same; gradients stop at this layer).
            Err(_) => tch::no_grad(|| self.forward_t(xs, train)),
        }
    }
}

/// Each distinct tensor handle of `module`, once.
fn tensor_handles<'a, M: Parameters + ?Sized>(module: &'a M) -> Vec<&'a Tensor> {
    let mut handles: Vec<&'a Tensor> = Vec::new();
    let mut collect = |_: &str, tensor: &'a Tensor, _: TensorRole| {
        if tensor.defined() && !handles.iter().any(|h| std::ptr::eq(*h, tensor)) {
            handles.push(tensor);
        }
    };
    module.visit(&mut Visitor::new("", &mut collect));
    handles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layer;
    use tch::{nn, Device, Kind};

    #[test]
    fn detached_forward_gives_the_same_values_and_no_gradient_to_the_content() {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = nn::linear(vs.root(), 3, 2, Default::default());
        let content: DynLayer<nn::Linear> = linear.into_content();
        let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let plain = content.forward_t(&xs, false);
        let detached = content.forward_detached(&xs, false);
        assert!(plain.equal(&detached));
        detached.sum(Kind::Float).backward();
        assert!(xs.grad().defined(), "the input still gets its gradient");
        assert!(!content.root().ws.grad().defined(), "the weight gets none");
        assert!(content.root().ws.requires_grad(), "and is not touched");
    }
}
