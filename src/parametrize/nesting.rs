//! Parametrizations inside a parametrized module: `parametrize(parametrize(m, "weight", f),
//! "weight", g)` means what `push`ing `f` then `g` means, `g(f(w))`, as qsparse's
//! `imitate(imitate(m, f), g)` and PyTorch's second `register_parametrization` do.
//!
//! The outer `Parametrized` finds the ones in its module while it walks the module's tensors
//! ([`Visitor::with_inner`](crate::params::Visitor)), and then builds on what they compute:
//! its transforms take their transformed tensor as input, its forward first lets them put
//! their tensors in place and then puts its own on top, and its `cached` scope is theirs too.
use super::parametrized::Parametrized;
use crate::error::Result;
use crate::params::{Parameters, Visitor, VisitorMut};
use tch::Tensor;

/// A `Parametrized` inside another one's module, as the outer one sees it. Names are
/// relative to the inner one's module.
pub(crate) trait Inner {
    /// Whether this parametrization, or one inside its module, transforms `name`.
    fn transforms(&self, name: &str) -> bool;
    /// What the module's forward sees for `name`, which [`Inner::transforms`].
    fn effective(&self, name: &str) -> Result<Tensor>;
    /// Runs `f` while the transformed tensors are behind the module's handles.
    fn enter(&self, f: &mut dyn FnMut()) -> Result<()>;
    /// Runs `f` in a cached scope of this parametrization (and of those inside it).
    fn enter_cached(&self, f: &mut dyn FnMut());
    /// Assigns `value` to `name`, which [`Inner::transforms`], through the right inverses.
    fn assign_value(&self, name: &str, value: &Tensor) -> Result<()>;
}

/// A `Parametrized` inside another one's module, mutably.
pub(crate) trait InnerMut {
    /// Drops the transforms of `name` (relative to this one's module), if it has any, and
    /// returns handles to their own tensors.
    fn drop_stack(&mut self, name: &str) -> Vec<Tensor>;
}

/// The parametrizations directly inside a module (not those inside them), by the dotted
/// prefix they sit at.
pub(super) type InnerAt<'a> = Vec<(String, &'a dyn Inner)>;

/// `name` relative to a module at `prefix`, when it is inside it.
pub(super) fn relative<'n>(prefix: &str, name: &'n str) -> Option<&'n str> {
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('.')
}

/// The first of `inner` that transforms `name`, with the name relative to it.
pub(super) fn find<'a, 'n>(inner: &InnerAt<'a>, name: &'n str) -> Option<(&'a dyn Inner, &'n str)> {
    inner.iter().find_map(|(prefix, parametrized)| {
        let name = relative(prefix, name)?;
        parametrized
            .transforms(name)
            .then_some((*parametrized, name))
    })
}

/// Runs `f` with every one of `inner` entered, the first outermost.
pub(super) fn enter_all(inner: &[(String, &dyn Inner)], f: &mut dyn FnMut()) -> Result<()> {
    match inner.split_first() {
        None => {
            f();
            Ok(())
        }
        Some(((_, first), rest)) => {
            let mut result = Ok(());
            first.enter(&mut || result = enter_all(rest, f))?;
            result
        }
    }
}

/// Runs `f` in the cached scope of every one of `inner`.
pub(super) fn cached_all(inner: &[(String, &dyn Inner)], f: &mut dyn FnMut()) {
    match inner.split_first() {
        None => f(),
        Some(((_, first), rest)) => first.enter_cached(&mut || cached_all(rest, f)),
    }
}

impl<M: Parameters> Parametrized<M> {
    /// The module's tensor handles by name, and the parametrizations directly inside it.
    pub(super) fn walk(&self) -> (Vec<(String, &Tensor)>, InnerAt<'_>) {
        let mut handles = Vec::new();
        let mut inner: InnerAt<'_> = Vec::new();
        let mut collect = |name: &str, tensor, _| handles.push((name.to_owned(), tensor));
        let mut collect_inner =
            |prefix: &str, parametrized| inner.push((prefix.to_owned(), parametrized));
        let mut visitor = Visitor::with_inner("", &mut collect, &mut collect_inner);
        self.module.visit(&mut visitor);
        drop(visitor);
        (handles, inner)
    }

    /// The parametrizations directly inside the module.
    pub(super) fn inner(&self) -> InnerAt<'_> {
        self.walk().1
    }

    /// Drops the transforms of every name in `names` from the parametrizations inside the
    /// module (at any depth), and returns handles to their own tensors.
    pub(super) fn drop_inner_stacks(&mut self, names: &[String]) -> Vec<Tensor> {
        let mut dropped = Vec::new();
        let mut ignore = |_: &str, _: &mut Tensor, _| {};
        let mut drop_stacks = |prefix: &str, parametrized: &mut dyn InnerMut| {
            for name in names {
                if let Some(name) = relative(prefix, name) {
                    dropped.extend(parametrized.drop_stack(name));
                }
            }
        };
        let mut visitor = VisitorMut::with_inner("", &mut ignore, &mut drop_stacks);
        self.module.visit_mut(&mut visitor);
        drop(visitor);
        dropped
    }
}

impl<M: Parameters> Inner for Parametrized<M> {
    fn transforms(&self, name: &str) -> bool {
        self.stacks.iter().any(|stack| stack.name == name) || find(&self.inner(), name).is_some()
    }

    fn effective(&self, name: &str) -> Result<Tensor> {
        if self.stacks.iter().any(|stack| stack.name == name) {
            return self.transformed(name);
        }
        match find(&self.inner(), name) {
            Some((inner, name)) => inner.effective(name),
            None => self.module_tensor(name),
        }
    }

    fn enter(&self, f: &mut dyn FnMut()) -> Result<()> {
        self.with_transformed(|_| f())
    }

    fn enter_cached(&self, f: &mut dyn FnMut()) {
        self.cached(|_| f())
    }

    fn assign_value(&self, name: &str, value: &Tensor) -> Result<()> {
        if self.stacks.iter().any(|stack| stack.name == name) {
            return self.assign_through(name, value);
        }
        match find(&self.inner(), name) {
            Some((inner, name)) => inner.assign_value(name, value),
            None => self.assign_through(name, value),
        }
    }
}

impl<M: Parameters> InnerMut for Parametrized<M> {
    fn drop_stack(&mut self, name: &str) -> Vec<Tensor> {
        match self.stacks.iter().position(|stack| stack.name == name) {
            Some(index) => {
                let stack = self.stacks.remove(index);
                let tensors = stack.transforms.iter().flat_map(|t| t.tensors());
                tensors.map(|(_, t, _)| t.shallow_clone()).collect()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn names_are_relative_to_whole_prefix_parts() {
        assert_eq!(relative("", "fc1.weight"), Some("fc1.weight"));
        assert_eq!(relative("fc1", "fc1.weight"), Some("weight"));
        assert_eq!(relative("fc1", "fc10.weight"), None);
        assert_eq!(relative("fc1", "fc1"), None);
        assert_eq!(relative("a.b", "a.b.c.weight"), Some("c.weight"));
    }
}
