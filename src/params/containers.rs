//! `Parameters` for the containers a model struct holds its children in, named the way
//! PyTorch names `nn.ModuleList` / `nn.Sequential` children: `blocks.0`, `blocks.1`, ...
use super::{Parameters, TensorRole, Visitor, VisitorMut};
use tch::Tensor;

/// A bare tensor is one parameter named by its place (`ws.0` in a `Vec<Tensor>`).
impl Parameters for Tensor {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.tensor("", self, TensorRole::Param);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.tensor("", self, TensorRole::Param);
    }
}

/// `None` has no tensors; `Some(m)` has `m`'s, under the same name.
impl<T: Parameters> Parameters for Option<T> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        if let Some(inner) = self {
            inner.visit(visitor);
        }
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        if let Some(inner) = self {
            inner.visit_mut(visitor);
        }
    }
}

impl<T: Parameters + ?Sized> Parameters for Box<T> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        (**self).visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        (**self).visit_mut(visitor);
    }
}

impl<T: Parameters> Parameters for [T] {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        for (index, item) in self.iter().enumerate() {
            visitor.child(&index.to_string(), item);
        }
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        for (index, item) in self.iter_mut().enumerate() {
            visitor.child(&index.to_string(), item);
        }
    }
}

impl<T: Parameters> Parameters for Vec<T> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.as_slice().visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.as_mut_slice().visit_mut(visitor);
    }
}

impl<T: Parameters, const N: usize> Parameters for [T; N] {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        self.as_slice().visit(visitor);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        self.as_mut_slice().visit_mut(visitor);
    }
}
