//! The traits a `Parametrized` module shares with the module it wraps: `Parameters` (its
//! names, then the transforms' own tensors) and `Debug`. Not `Deref`: see `Parametrized`.
use super::parametrized::Parametrized;
use crate::params::{Parameters, Visitor, VisitorMut};

impl<M: Parameters> Parameters for Parametrized<M> {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        // Tells an outer `Parametrized` walking its module that this one is here.
        visitor.parametrized(self, |visitor| {
            self.module.visit(visitor);
            for stack in &self.stacks {
                for transform in &stack.transforms {
                    for (local, tensor, role) in transform.tensors() {
                        visitor.tensor(&format!("{}_{local}", stack.name), tensor, role);
                    }
                }
            }
        });
    }

    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.parametrized(self);
        self.module.visit_mut(visitor);
        for stack in &mut self.stacks {
            for transform in &mut stack.transforms {
                for (local, tensor, role) in transform.tensors_mut() {
                    visitor.tensor(&format!("{}_{local}", stack.name), tensor, role);
                }
            }
        }
    }
}

impl<M: std::fmt::Debug> std::fmt::Debug for Parametrized<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stacks: Vec<(&str, Vec<&str>)> = self
            .stacks
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.transforms.iter().map(|t| t.name()).collect(),
                )
            })
            .collect();
        f.debug_struct("Parametrized")
            .field("module", &self.module)
            .field("parametrizations", &stacks)
            .finish()
    }
}
