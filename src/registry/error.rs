//! Errors of patch strings, patch arguments and the registry of patches.
use crate::names::problem_list;
use thiserror::Error;

/// What is wrong with a patch string, a patch's arguments or the registry of patches.
///
/// Nothing was changed when one is returned: the registry checks a patch string before
/// any model is touched, and a registry that refuses a patch is left as it was.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PatchStringError {
    /// A patch string is not well formed. Nothing was parsed or changed.
    #[error("at column {column}: {message}")]
    PatchSyntax {
        /// The whole patch string.
        input: String,
        /// Byte offset of the problem in `input`.
        offset: usize,
        /// 1-based column of the problem, in characters.
        column: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// A patch string (or an adapter) names a patch that is not registered. Nothing was
    /// changed.
    #[error(
        "{}unknown patch \"{name}\"{}; registered patches: {}",
        at(*column),
        did_you_mean(nearest),
        plain_list(known)
    )]
    UnknownPatch {
        /// The name written.
        name: String,
        /// Where it was written, for a parsed string.
        column: Option<usize>,
        /// Every registered name, sorted.
        known: Vec<String>,
        /// The registered name nearest to `name`, if one is close.
        nearest: Option<String>,
    },
    /// An argument the patch does not take. Nothing was changed.
    #[error(
        "{}patch \"{patch}\" has no argument \"{name}\"{}; it accepts: {}",
        at(*column),
        did_you_mean(nearest),
        plain_list(accepted)
    )]
    UnknownArgument {
        /// The patch.
        patch: String,
        /// The argument name written.
        name: String,
        /// Where it was written, for a parsed string.
        column: Option<usize>,
        /// Every argument the patch accepts, in schema order.
        accepted: Vec<String>,
        /// The accepted name nearest to `name`, if one is close.
        nearest: Option<String>,
    },
    /// A required argument was left out. Nothing was changed.
    #[error(
        "{}patch \"{patch}\" is missing its required argument \"{name}\" ({expected})",
        at(*column)
    )]
    MissingArgument {
        /// The patch.
        patch: String,
        /// The missing argument.
        name: String,
        /// Where the patch name was written, for a parsed string.
        column: Option<usize>,
        /// Its type in words, e.g. "a string".
        expected: String,
    },
    /// An argument value of the wrong type. Nothing was changed.
    #[error(
        "{}argument \"{name}\" of patch \"{patch}\" must be {expected}, found {found}",
        at(*column)
    )]
    ArgumentType {
        /// The patch.
        patch: String,
        /// The argument.
        name: String,
        /// Where the value was written, for a parsed string.
        column: Option<usize>,
        /// The type required, in words: "an integer".
        expected: String,
        /// The value found, described: "the number 8.5".
        found: String,
    },
    /// An argument value of the right type outside its range or choices. Nothing was
    /// changed.
    #[error(
        "{}argument \"{name}\" of patch \"{patch}\" is {value}, but must be {allowed}",
        at(*column)
    )]
    ArgumentOutOfRange {
        /// The patch.
        patch: String,
        /// The argument.
        name: String,
        /// Where the value was written, for a parsed string.
        column: Option<usize>,
        /// The value, printed.
        value: String,
        /// What is allowed: "in 1..=4096", "one of \"a\", \"b\"".
        allowed: String,
    },
    /// The same argument was given twice. Nothing was changed.
    #[error("{}argument \"{name}\" of patch \"{patch}\" is given twice", at(*column))]
    DuplicateArgument {
        /// The patch.
        patch: String,
        /// The argument.
        name: String,
        /// Where the second one was written, for a parsed string.
        column: Option<usize>,
    },
    /// Two patches were registered under one name. The registry is as it was (for
    /// [`Registry::from_inventory`](crate::registry::Registry::from_inventory): none is built).
    #[error(
        "patch name \"{name}\" is registered more than once{}",
        sources_list(sources)
    )]
    DuplicatePatchName {
        /// The name.
        name: String,
        /// What registered it (type names), when known.
        sources: Vec<String>,
    },
    /// A patch schema contradicts itself (a default outside its range, a range on a
    /// string...). The patch was not added; the registry is as it was.
    #[error("invalid schema of patch \"{patch}\": {message}")]
    InvalidSchema {
        /// The patch.
        patch: String,
        /// What is wrong.
        message: String,
    },
    /// The global registry could not be built (see [`PatchStringError::DuplicatePatchName`]
    /// and [`PatchStringError::InvalidSchema`]). Nothing was changed; every later call
    /// gives the same error.
    #[error("the registry of patches is invalid: {message}")]
    InvalidRegistry {
        /// The error met while building it.
        message: String,
    },
    /// Arguments of one patch were given where another's were expected. Nothing was
    /// changed.
    #[error("expected the arguments of patch \"{expected}\", found those of \"{found}\"")]
    WrongPatch {
        /// The patch expected.
        expected: String,
        /// The patch the arguments belong to.
        found: String,
    },
    /// A patch string's `targets` pick a slot of a layer type the patch cannot wrap (it was
    /// registered for other types). Found before any slot is changed: nothing was changed.
    #[error(
        "patch `{patch}` cannot wrap `{path}`, a `{slot_type}` slot: it patches only `{}` \
         slots; narrow `targets` to leave `{path}` out",
        accepted.join("`, `")
    )]
    UnpatchableSlot {
        /// The patch's name.
        patch: String,
        /// The slot's path.
        path: String,
        /// The short name of the slot's layer type (e.g. `Embedding`).
        slot_type: String,
        /// The short names of the layer types the patch wraps, as registered.
        accepted: Vec<String>,
    },
    /// A registered patch that patch strings can name but not apply: its config declares
    /// no patch type to build. Found before any slot is changed: nothing was changed.
    #[error(
        "patch \"{patch}\" can be parsed but not applied to a model: its config names no patch \
         type to build (give it `#[patch_args(patch = YourPatch)]`)"
    )]
    NotApplicable {
        /// The patch's name.
        patch: String,
    },
    /// A patch string has more than one problem: every one is listed, in the order found
    /// (each is one of the other variants). Nothing was parsed or changed.
    #[error("{} problems in patch string `{input}`: {}", problems.len(), problem_list(problems))]
    Problems {
        /// The whole patch string.
        input: String,
        /// Every problem found, in the order found (at least two).
        problems: Vec<PatchStringError>,
    },
}

impl PatchStringError {
    /// `problems` as one error: the problem itself when there is one, [`Problems`](Self::Problems)
    ///  when there are several. `None` when there is none.
    pub(crate) fn from_problems(input: &str, mut problems: Vec<PatchStringError>) -> Option<Self> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(PatchStringError::Problems {
                input: input.to_owned(),
                problems,
            }),
        }
    }
}

/// `at column N: ` for a known column, nothing otherwise.
fn at(column: Option<usize>) -> String {
    column
        .map(|column| format!("at column {column}: "))
        .unwrap_or_default()
}

fn did_you_mean(nearest: &Option<String>) -> String {
    nearest
        .as_ref()
        .map(|name| format!(" (did you mean \"{name}\"?)"))
        .unwrap_or_default()
}

fn plain_list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.join(", ")
}

fn sources_list(sources: &[String]) -> String {
    if sources.is_empty() {
        return String::new();
    }
    format!(" (by {})", sources.join(" and "))
}
