//! The visitors a `Parameters` impl calls: they carry the dotted prefix of the module.
use super::{join_name, Parameters, TensorRole};
use tch::Tensor;

type VisitFn<'a, 'f> = dyn FnMut(&str, &'a Tensor, TensorRole) + 'f;
type VisitMutFn<'f> = dyn FnMut(&str, &mut Tensor, TensorRole) + 'f;

/// Receives a module's tensors by shared reference.
pub struct Visitor<'a, 'f> {
    prefix: String,
    callback: &'f mut VisitFn<'a, 'f>,
}

impl<'a, 'f> Visitor<'a, 'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitFn<'a, 'f>) -> Self {
        Visitor {
            prefix: prefix.to_owned(),
            callback,
        }
    }

    /// Reports one tensor, named relative to the current module.
    pub fn tensor(&mut self, name: &str, tensor: &'a Tensor, role: TensorRole) {
        (self.callback)(&join_name(&self.prefix, name), tensor, role);
    }

    /// Reports an optional tensor (e.g. a bias that may be absent).
    pub fn optional(&mut self, name: &str, tensor: Option<&'a Tensor>, role: TensorRole) {
        if let Some(tensor) = tensor {
            self.tensor(name, tensor, role);
        }
    }

    /// Visits a child module under `name`.
    pub fn child<P: Parameters + ?Sized>(&mut self, name: &str, child: &'a P) {
        let saved = self.prefix.clone();
        self.prefix = join_name(&saved, name);
        child.visit(self);
        self.prefix = saved;
    }
}

/// Receives a module's tensors by mutable reference.
pub struct VisitorMut<'f> {
    prefix: String,
    callback: &'f mut VisitMutFn<'f>,
}

impl<'f> VisitorMut<'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitMutFn<'f>) -> Self {
        VisitorMut {
            prefix: prefix.to_owned(),
            callback,
        }
    }

    /// Reports one tensor, named relative to the current module.
    pub fn tensor(&mut self, name: &str, tensor: &mut Tensor, role: TensorRole) {
        (self.callback)(&join_name(&self.prefix, name), tensor, role);
    }

    /// Reports an optional tensor.
    pub fn optional(&mut self, name: &str, tensor: Option<&mut Tensor>, role: TensorRole) {
        if let Some(tensor) = tensor {
            self.tensor(name, tensor, role);
        }
    }

    /// Visits a child module under `name`.
    pub fn child<P: Parameters + ?Sized>(&mut self, name: &str, child: &mut P) {
        let saved = self.prefix.clone();
        self.prefix = join_name(&saved, name);
        child.visit_mut(self);
        self.prefix = saved;
    }
}
