//! [`Selector`]: which slots of a model a query or a rule is about.
use super::glob::Glob;
use super::slot::{short_type_name, AnySlot};
use super::TreeError;
use crate::error::Result;
use crate::nearest::edit_distance;
use std::any::TypeId;
use std::fmt;
use std::sync::Arc;

type PredicateFn = dyn Fn(&str, &dyn AnySlot) -> bool + Send + Sync;

/// Picks slots by path glob, path regex, layer type, a predicate, or a combination.
///
/// ```
/// use tch::nn;
/// use tch_patch::tree::Selector;
///
/// let attention = Selector::glob("*.attn.{q,v}")?;
/// let first_blocks = Selector::regex(r"blocks\.[01]\..*")?;
/// let linears = Selector::of_type::<nn::Linear>();
/// let unpatched = Selector::predicate("unpatched", |_path, slot| !slot.is_patched());
/// let chosen = attention.and(first_blocks).and(linears).and(unpatched);
/// assert_eq!(
///     chosen.to_string(),
///     r"glob `*.attn.{q,v}` and regex `blocks\.[01]\..*` and type `Linear` and `unpatched`"
/// );
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Clone)]
pub struct Selector {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    All,
    Glob(Glob),
    Regex {
        source: String,
        regex: regex::Regex,
    },
    Type {
        id: TypeId,
        name: &'static str,
    },
    Predicate {
        description: String,
        f: Arc<PredicateFn>,
    },
    And(Vec<Selector>),
    Or(Vec<Selector>),
    Not(Box<Selector>),
}

impl Selector {
    /// Every slot.
    pub fn all() -> Self {
        Selector { kind: Kind::All }
    }

    /// Slots whose path matches a [`Glob`] (e.g. `*.attn.{q,v}`).
    pub fn glob(pattern: &str) -> Result<Self, TreeError> {
        Ok(Glob::new(pattern)?.into())
    }

    /// Slots whose whole path matches a regex (as Python's `re.fullmatch`, which PEFT uses
    /// for a `target_modules` string): `blocks\.\d+\.attn\.q`.
    pub fn regex(pattern: &str) -> Result<Self, TreeError> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
            TreeError::BadRegex {
                pattern: pattern.to_owned(),
                reason: error.to_string(),
            }
        })?;
        Ok(Selector {
            kind: Kind::Regex {
                source: pattern.to_owned(),
                regex,
            },
        })
    }

    /// Slots holding a `T` (whatever patches wrap it).
    pub fn of_type<T: 'static>() -> Self {
        Selector {
            kind: Kind::Type {
                id: TypeId::of::<T>(),
                name: std::any::type_name::<T>(),
            },
        }
    }

    /// Slots for which `f(path, slot)` is true; `description` names it in messages.
    pub fn predicate<F>(description: impl Into<String>, f: F) -> Self
    where
        F: Fn(&str, &dyn AnySlot) -> bool + Send + Sync + 'static,
    {
        Selector {
            kind: Kind::Predicate {
                description: description.into(),
                f: Arc::new(f),
            },
        }
    }

    /// Slots both selectors pick.
    pub fn and(self, other: Selector) -> Self {
        let mut parts = match self.kind {
            Kind::And(parts) => parts,
            kind => vec![Selector { kind }],
        };
        parts.push(other);
        Selector {
            kind: Kind::And(parts),
        }
    }

    /// Slots either selector picks.
    pub fn or(self, other: Selector) -> Self {
        let mut parts = match self.kind {
            Kind::Or(parts) => parts,
            kind => vec![Selector { kind }],
        };
        parts.push(other);
        Selector {
            kind: Kind::Or(parts),
        }
    }

    /// Slots this selector does not pick.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Selector {
            kind: Kind::Not(Box::new(self)),
        }
    }

    /// Whether the selector picks the slot at `path`.
    pub fn matches(&self, path: &str, slot: &dyn AnySlot) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Glob(glob) => glob.matches(path),
            Kind::Regex { regex, .. } => regex.is_match(path),
            Kind::Type { id, .. } => slot.root_type_id() == *id,
            Kind::Predicate { f, .. } => f(path, slot),
            Kind::And(parts) => parts.iter().all(|part| part.matches(path, slot)),
            Kind::Or(parts) => parts.iter().any(|part| part.matches(path, slot)),
            Kind::Not(inner) => !inner.matches(path, slot),
        }
    }

    /// How far `path` is from being picked, in character edits, for ranking the nearest
    /// paths when nothing matched: exact for a glob, the edit distance to the pattern's
    /// text for a regex, 0 for selectors that do not look at the path.
    pub fn distance(&self, path: &str) -> usize {
        match &self.kind {
            Kind::Glob(glob) => glob.distance(path),
            Kind::Regex { source, .. } => edit_distance(source, path),
            Kind::All | Kind::Type { .. } | Kind::Predicate { .. } | Kind::Not(_) => 0,
            Kind::And(parts) => parts.iter().map(|p| p.distance(path)).max().unwrap_or(0),
            Kind::Or(parts) => parts.iter().map(|p| p.distance(path)).min().unwrap_or(0),
        }
    }
}

impl From<Glob> for Selector {
    fn from(glob: Glob) -> Self {
        Selector {
            kind: Kind::Glob(glob),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::All => f.write_str("every slot"),
            Kind::Glob(glob) => write!(f, "glob `{glob}`"),
            Kind::Regex { source, .. } => write!(f, "regex `{source}`"),
            Kind::Type { name, .. } => write!(f, "type `{}`", short_type_name(name)),
            Kind::Predicate { description, .. } => write!(f, "`{description}`"),
            Kind::And(parts) => join(f, parts, " and "),
            Kind::Or(parts) => {
                f.write_str("(")?;
                join(f, parts, " or ")?;
                f.write_str(")")
            }
            Kind::Not(inner) => write!(f, "not ({inner})"),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({self})")
    }
}

fn join(f: &mut fmt::Formatter<'_>, parts: &[Selector], separator: &str) -> fmt::Result {
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{part}")?;
    }
    Ok(())
}

/// The (at most `limit`) `paths` nearest to being picked by `selector`, nearest first;
/// ties keep the model's order.
pub(super) fn nearest<'p>(
    selector: &Selector,
    paths: impl IntoIterator<Item = &'p str>,
    limit: usize,
) -> Vec<String> {
    let mut ranked: Vec<(usize, usize, &str)> = paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| (selector.distance(path), index, path))
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(limit)
        .map(|(_, _, path)| path.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_regex_is_an_error() {
        let error = Selector::regex("blocks.(").unwrap_err();
        assert!(matches!(error, TreeError::BadRegex { ref pattern, .. } if pattern == "blocks.("));
    }

    #[test]
    fn nearest_ranks_by_glob_distance() {
        let selector = Selector::glob("*.atn.q").unwrap();
        let paths = ["embed", "blocks.0.attn.k", "blocks.0.attn.q", "head"];
        assert_eq!(
            nearest(&selector, paths, 2),
            ["blocks.0.attn.q", "blocks.0.attn.k"]
        );
    }
}
