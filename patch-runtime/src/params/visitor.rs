//! The visitors a `Parameters` impl calls: they carry the dotted prefix of the module.
use super::{Parameters, TensorRole};
use tch::Tensor;

/// The dotted name being built: one buffer for a whole walk, a segment pushed for each
/// child and each tensor and truncated after, so naming a tensor allocates nothing (walks
/// run on every functional call, swap and load, over every tensor of the model).
struct DottedName(String);

impl DottedName {
    /// Appends `segment` (`a.b` + `c` = `a.b.c`; an empty side adds no dot, as
    /// [`join_name`](super::join_name) does) and returns the length to truncate back to.
    fn push(&mut self, segment: &str) -> usize {
        let len = self.0.len();
        if !segment.is_empty() {
            if len > 0 {
                self.0.push('.');
            }
            self.0.push_str(segment);
        }
        len
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

type VisitFn<'a, 'f> = dyn FnMut(&str, &'a Tensor, TensorRole) + 'f;
type VisitMutFn<'f> = dyn FnMut(&str, &mut Tensor, TensorRole) + 'f;

/// Receives a module's tensors by shared reference.
pub struct Visitor<'a, 'f> {
    name: DottedName,
    callback: &'f mut VisitFn<'a, 'f>,
}

impl<'a, 'f> Visitor<'a, 'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitFn<'a, 'f>) -> Self {
        Visitor {
            name: DottedName(prefix.to_owned()),
            callback,
        }
    }

    /// Reports one tensor, named relative to the current module.
    pub fn tensor(&mut self, name: &str, tensor: &'a Tensor, role: TensorRole) {
        let len = self.name.push(name);
        (self.callback)(&self.name.0, tensor, role);
        self.name.truncate(len);
    }

    /// Reports an optional tensor (e.g. a bias that may be absent).
    pub fn optional(&mut self, name: &str, tensor: Option<&'a Tensor>, role: TensorRole) {
        if let Some(tensor) = tensor {
            self.tensor(name, tensor, role);
        }
    }

    /// Visits a child module under `name`.
    pub fn child<P: Parameters + ?Sized>(&mut self, name: &str, child: &'a P) {
        let len = self.name.push(name);
        child.visit(self);
        self.name.truncate(len);
    }
}

/// Receives a module's tensors by mutable reference.
pub struct VisitorMut<'f> {
    name: DottedName,
    callback: &'f mut VisitMutFn<'f>,
}

impl<'f> VisitorMut<'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitMutFn<'f>) -> Self {
        VisitorMut {
            name: DottedName(prefix.to_owned()),
            callback,
        }
    }

    /// Reports one tensor, named relative to the current module.
    pub fn tensor(&mut self, name: &str, tensor: &mut Tensor, role: TensorRole) {
        let len = self.name.push(name);
        (self.callback)(&self.name.0, tensor, role);
        self.name.truncate(len);
    }

    /// Reports an optional tensor.
    pub fn optional(&mut self, name: &str, tensor: Option<&mut Tensor>, role: TensorRole) {
        if let Some(tensor) = tensor {
            self.tensor(name, tensor, role);
        }
    }

    /// Visits a child module under `name`.
    pub fn child<P: Parameters + ?Sized>(&mut self, name: &str, child: &mut P) {
        let len = self.name.push(name);
        child.visit_mut(self);
        self.name.truncate(len);
    }
}
