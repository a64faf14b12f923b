//! Closures as fixed leaves of a tree (tch's `nn::func` and `nn::func_t`).
use crate::params::{Parameters, Visitor, VisitorMut};
use std::fmt;
use tch::{nn, Tensor};

/// A closure `Fn(&Tensor) -> Tensor` as a layer without tensors: what
/// [`Sequential::add_fn`](super::Sequential::add_fn) adds. Shown as `Func` in a tree; a rule
/// can replace the node holding it, but cannot see into it.
pub struct Func {
    f: Box<dyn Fn(&Tensor) -> Tensor + Send>,
}

impl Func {
    /// A layer computing `f(xs)`.
    pub fn new(f: impl Fn(&Tensor) -> Tensor + Send + 'static) -> Self {
        Func { f: Box::new(f) }
    }
}

impl nn::Module for Func {
    fn forward(&self, xs: &Tensor) -> Tensor {
        (self.f)(xs)
    }
}

/// A closure `Fn(&Tensor, bool) -> Tensor` taking the train flag, as a layer without
/// tensors: what [`Sequential::add_fn_t`](super::Sequential::add_fn_t) adds.
pub struct FuncT {
    f: Box<TrainFn>,
}

type TrainFn = dyn Fn(&Tensor, bool) -> Tensor + Send;

impl FuncT {
    /// A layer computing `f(xs, train)`.
    pub fn new(f: impl Fn(&Tensor, bool) -> Tensor + Send + 'static) -> Self {
        FuncT { f: Box::new(f) }
    }
}

impl nn::ModuleT for FuncT {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        (self.f)(xs, train)
    }
}

macro_rules! closure_leaf {
    ($($ty:ident),*) => {$(
        impl Parameters for $ty {
            fn visit<'a>(&'a self, _visitor: &mut Visitor<'a, '_>) {}
            fn visit_mut(&mut self, _visitor: &mut VisitorMut<'_>) {}
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
    )*};
}

closure_leaf!(Func, FuncT);
crate::leaf_layer!(Func, FuncT);
