//! The visitors a `Parameters` impl calls: they carry the dotted prefix of the module.
use super::{Parameters, TensorRole};
use crate::parametrize::{Inner, InnerMut};
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
type InnerFn<'a, 'f> = dyn FnMut(&str, &'a dyn Inner) + 'f;
type InnerMutFn<'f> = dyn FnMut(&str, &mut dyn InnerMut) + 'f;

/// Receives a module's tensors by shared reference.
pub struct Visitor<'a, 'f> {
    name: DottedName,
    callback: &'f mut VisitFn<'a, 'f>,
    /// When set, receives each `Parametrized` met in the walk that is not inside another
    /// one met in the walk, with its dotted prefix: how a parametrization finds the ones
    /// inside its module, so that it applies on top of them.
    inner: Option<&'f mut InnerFn<'a, 'f>>,
    /// Whether the walk is inside a `Parametrized` already reported.
    in_parametrized: bool,
}

impl<'a, 'f> Visitor<'a, 'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitFn<'a, 'f>) -> Self {
        Visitor {
            name: DottedName(prefix.to_owned()),
            callback,
            inner: None,
            in_parametrized: false,
        }
    }

    /// Like [`Visitor::new`], and calls `inner(prefix, parametrized)` for each outermost
    /// `Parametrized` in the walk.
    pub(crate) fn with_inner(
        prefix: &str,
        callback: &'f mut VisitFn<'a, 'f>,
        inner: &'f mut InnerFn<'a, 'f>,
    ) -> Self {
        let mut visitor = Visitor::new(prefix, callback);
        visitor.inner = Some(inner);
        visitor
    }

    /// Called by a `Parametrized`'s `visit`: reports it (when it is the outermost one so
    /// far), then lets `visit_module` walk its module.
    pub(crate) fn parametrized(
        &mut self,
        parametrized: &'a dyn Inner,
        visit_module: impl FnOnce(&mut Self),
    ) {
        let outermost = !self.in_parametrized;
        if outermost {
            if let Some(report) = self.inner.as_mut() {
                report(&self.name.0, parametrized);
            }
        }
        self.in_parametrized = true;
        visit_module(self);
        self.in_parametrized = !outermost;
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
    /// When set, receives every `Parametrized` met in the walk (at any depth), with its
    /// dotted prefix.
    inner: Option<&'f mut InnerMutFn<'f>>,
}

impl<'f> VisitorMut<'f> {
    /// A visitor that calls `callback(full_name, tensor, role)` for each tensor.
    pub fn new(prefix: &str, callback: &'f mut VisitMutFn<'f>) -> Self {
        VisitorMut {
            name: DottedName(prefix.to_owned()),
            callback,
            inner: None,
        }
    }

    /// Like [`VisitorMut::new`], and calls `inner(prefix, parametrized)` for every
    /// `Parametrized` in the walk.
    pub(crate) fn with_inner(
        prefix: &str,
        callback: &'f mut VisitMutFn<'f>,
        inner: &'f mut InnerMutFn<'f>,
    ) -> Self {
        let mut visitor = VisitorMut::new(prefix, callback);
        visitor.inner = Some(inner);
        visitor
    }

    /// Called by a `Parametrized`'s `visit_mut` before it walks its module: reports it.
    pub(crate) fn parametrized(&mut self, parametrized: &mut dyn InnerMut) {
        if let Some(report) = self.inner.as_mut() {
            report(&self.name.0, parametrized);
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
