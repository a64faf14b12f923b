//! Argument schemas of registered patches, and the checked arguments a patch string yields.
use super::value::Value;
use crate::error::Result;
use crate::registry::PatchStringError;
use std::fmt;
use std::ops::{Bound, RangeBounds};

/// The type of a patch argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// `i64`: an integer literal.
    Int,
    /// `f64`: a number; an integer literal is accepted and converted.
    Float,
    /// `bool`: `true` or `false`.
    Bool,
    /// `String`: a quoted string or a bare name.
    Str,
    /// `Vec<i64>`: a list of integers, `[1, 2, 3]`.
    IntList,
}

impl ArgType {
    /// The type in words, for messages: `an integer`, `a number`...
    pub fn expected(self) -> &'static str {
        match self {
            ArgType::Int => "an integer",
            ArgType::Float => "a number",
            ArgType::Bool => "true or false",
            ArgType::Str => "a string",
            ArgType::IntList => "a list of integers",
        }
    }

    /// The type's short name, as help texts show it: `int`, `float`, `bool`, `string`,
    /// `[int]`.
    pub fn short_name(self) -> &'static str {
        match self {
            ArgType::Int => "int",
            ArgType::Float => "float",
            ArgType::Bool => "bool",
            ArgType::Str => "string",
            ArgType::IntList => "[int]",
        }
    }

    /// `value` as this type, or `None` when it is another type. Integers become floats
    /// where a float is expected; bare names become strings.
    pub fn coerce(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (ArgType::Int, Value::Int(_))
            | (ArgType::Float, Value::Float(_))
            | (ArgType::Bool, Value::Bool(_))
            | (ArgType::Str, Value::Str(_)) => Some(value.clone()),
            (ArgType::Float, Value::Int(int)) => Some(Value::Float(*int as f64)),
            (ArgType::Str, Value::Ident(name)) => Some(Value::Str(name.clone())),
            (ArgType::IntList, Value::List(items))
                if items.iter().all(|item| matches!(item, Value::Int(_))) =>
            {
                Some(value.clone())
            }
            _ => None,
        }
    }
}

/// The allowed range of a numeric argument, as written: `1..=4096`, `0.0..1.0`, `0..`.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgRange {
    /// Bounds of an integer argument.
    Int(Bound<i64>, Bound<i64>),
    /// Bounds of a float argument.
    Float(Bound<f64>, Bound<f64>),
}

impl ArgRange {
    /// An integer range from any Rust range: `ArgRange::int(1..=4096)`.
    pub fn int(range: impl RangeBounds<i64>) -> Self {
        ArgRange::Int(range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// A float range from any Rust range: `ArgRange::float(0.0..1.0)`.
    pub fn float(range: impl RangeBounds<f64>) -> Self {
        ArgRange::Float(range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Whether `value` (already of the argument's type) lies in the range.
    pub fn contains(&self, value: &Value) -> bool {
        match (self, value) {
            (ArgRange::Int(lo, hi), Value::Int(v)) => (*lo, *hi).contains(v),
            (ArgRange::Float(lo, hi), Value::Float(v)) => (*lo, *hi).contains(v),
            _ => false,
        }
    }

    fn fits(&self, ty: ArgType) -> bool {
        matches!(
            (self, ty),
            (ArgRange::Int(..), ArgType::Int) | (ArgRange::Float(..), ArgType::Float)
        )
    }
}

impl fmt::Display for ArgRange {
    /// Rust range syntax: `1..=4096`, `0.0..1.0`, `0..`, `..=1.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn bounds<T: fmt::Debug>(
            f: &mut fmt::Formatter<'_>,
            lo: &Bound<T>,
            hi: &Bound<T>,
        ) -> fmt::Result {
            if let Bound::Included(v) | Bound::Excluded(v) = lo {
                write!(f, "{v:?}")?;
            }
            match hi {
                Bound::Included(v) => write!(f, "..={v:?}"),
                Bound::Excluded(v) => write!(f, "..{v:?}"),
                Bound::Unbounded => write!(f, ".."),
            }
        }
        match self {
            ArgRange::Int(lo, hi) => bounds(f, lo, hi),
            ArgRange::Float(lo, hi) => bounds(f, lo, hi),
        }
    }
}

/// One argument of a registered patch: name, type, default (or required), allowed values
/// and a line of documentation.
///
/// ```
/// use tch_patch::registry::{ArgSpec, ArgType, Value};
///
/// let rank = ArgSpec::new("rank", ArgType::Int)
///     .default(Value::Int(8))
///     .int_range(1..=4096)
///     .doc("rank of the update");
/// assert_eq!(rank.to_string(), "rank: int = 8, in 1..=4096 (rank of the update)");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSpec {
    /// The name written in patch strings.
    pub name: String,
    /// The type.
    pub ty: ArgType,
    /// The value when the argument is left out; `None` makes it required.
    pub default: Option<Value>,
    /// Allowed numbers, for `Int` and `Float` arguments.
    pub range: Option<ArgRange>,
    /// Allowed strings, for `Str` arguments (empty: any string).
    pub choices: Vec<String>,
    /// What the argument does.
    pub doc: String,
}

impl ArgSpec {
    /// A required argument with no constraint and no doc.
    pub fn new(name: impl Into<String>, ty: ArgType) -> Self {
        ArgSpec {
            name: name.into(),
            ty,
            default: None,
            range: None,
            choices: Vec::new(),
            doc: String::new(),
        }
    }

    /// Makes the argument optional, with this default.
    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// Restricts an `Int` argument to a range.
    pub fn int_range(mut self, range: impl RangeBounds<i64>) -> Self {
        self.range = Some(ArgRange::int(range));
        self
    }

    /// Restricts a `Float` argument to a range.
    pub fn float_range(mut self, range: impl RangeBounds<f64>) -> Self {
        self.range = Some(ArgRange::float(range));
        self
    }

    /// Restricts a `Str` argument to these values.
    pub fn choices<S: Into<String>>(mut self, choices: impl IntoIterator<Item = S>) -> Self {
        self.choices = choices.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the documentation line.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }

    /// Whether a value must be given.
    pub fn is_required(&self) -> bool {
        self.default.is_none()
    }

    /// The constraint in words, for messages: `in 1..=4096`, `one of "a", "b"`.
    pub fn allowed(&self) -> Option<String> {
        if let Some(range) = &self.range {
            return Some(format!("in {range}"));
        }
        if self.choices.is_empty() {
            return None;
        }
        let quoted: Vec<String> = self
            .choices
            .iter()
            .map(|c| super::parse::quote(c))
            .collect();
        Some(format!("one of {}", quoted.join(", ")))
    }

    /// Checks `value` against the type and constraints; gives the value as the argument's
    /// type (e.g. `Int(16)` as `Float(16.0)` for a float argument).
    pub(crate) fn check(&self, value: &Value) -> std::result::Result<Value, ArgProblem> {
        let Some(value) = self.ty.coerce(value) else {
            return Err(ArgProblem::Type);
        };
        // A float that is not finite would not print back as a number.
        let finite = !matches!(value, Value::Float(v) if !v.is_finite());
        let in_range = finite
            && self
                .range
                .as_ref()
                .is_none_or(|range| range.contains(&value));
        let in_choices = match &value {
            Value::Str(text) => self.choices.is_empty() || self.choices.contains(text),
            _ => true,
        };
        if in_range && in_choices {
            Ok(value)
        } else {
            Err(ArgProblem::NotAllowed(value))
        }
    }

    /// Checks the spec itself: constraints that fit the type, a default that passes them.
    pub(crate) fn validate(&self, patch: &str) -> Result<(), PatchStringError> {
        let invalid = |message: String| PatchStringError::InvalidSchema {
            patch: patch.to_owned(),
            message: format!("argument \"{}\": {message}", self.name),
        };
        if !is_name(&self.name) {
            return Err(invalid("not a valid name ([A-Za-z_][A-Za-z0-9_]*)".into()));
        }
        if self.name == super::TARGETS {
            return Err(invalid(
                "`targets` is added to every patch by the registry; do not declare it".into(),
            ));
        }
        if let Some(range) = &self.range {
            if !range.fits(self.ty) {
                return Err(invalid(format!(
                    "a {} range does not fit a {} argument",
                    match range {
                        ArgRange::Int(..) => "integer",
                        ArgRange::Float(..) => "float",
                    },
                    self.ty.short_name()
                )));
            }
        }
        if !self.choices.is_empty() && self.ty != ArgType::Str {
            return Err(invalid("choices are for string arguments".into()));
        }
        if let Some(default) = &self.default {
            match self.check(default) {
                Ok(_) => {}
                Err(ArgProblem::Type) => {
                    return Err(invalid(format!(
                        "default {} is not {}",
                        default.describe(),
                        self.ty.expected()
                    )))
                }
                Err(ArgProblem::NotAllowed(_)) => {
                    return Err(invalid(format!(
                        "default {default} is not {}",
                        self.allowed().unwrap_or_default()
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Why a value does not fit an argument.
pub(crate) enum ArgProblem {
    Type,
    NotAllowed(Value),
}

pub(crate) fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for ArgSpec {
    /// `rank: int = 8, in 1..=4096 (doc)`; a required argument shows `(required)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.ty.short_name())?;
        match &self.default {
            Some(default) => write!(f, " = {default}")?,
            None => write!(f, " (required)")?,
        }
        if let Some(allowed) = self.allowed() {
            write!(f, ", {allowed}")?;
        }
        if !self.doc.is_empty() {
            write!(f, " ({})", self.doc)?;
        }
        Ok(())
    }
}

/// The checked arguments of one patch: every argument of its schema, in schema order,
/// given or defaulted, each of the argument's type. Read them with the typed getters.
///
/// ```
/// use tch_patch::registry::Registry;
///
/// let spec = Registry::global()?.parse_one(r#"lora(rank=4, targets="*.q")"#)?;
/// assert_eq!(spec.args.get_i64("rank")?, 4);
/// assert_eq!(spec.args.get_f64("alpha")?, 16.0); // the default
/// assert!(spec.args.get_bool("rank").is_err()); // wrong type: an error, not a panic
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidatedArgs {
    patch: String,
    values: Vec<(String, Value)>,
}

impl ValidatedArgs {
    pub(crate) fn new(patch: String, values: Vec<(String, Value)>) -> Self {
        ValidatedArgs { patch, values }
    }

    /// The patch these arguments belong to.
    pub fn patch(&self) -> &str {
        &self.patch
    }

    /// `(name, value)` pairs in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// The value of an argument, if the schema has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    fn lookup(&self, name: &str) -> Result<&Value, PatchStringError> {
        self.get(name)
            .ok_or_else(|| PatchStringError::UnknownArgument {
                patch: self.patch.clone(),
                name: name.to_owned(),
                column: None,
                accepted: self.values.iter().map(|(n, _)| n.clone()).collect(),
                nearest: None,
            })
    }

    fn wrong_type(&self, name: &str, ty: ArgType, value: &Value) -> PatchStringError {
        PatchStringError::ArgumentType {
            patch: self.patch.clone(),
            name: name.to_owned(),
            column: None,
            expected: ty.expected().to_owned(),
            found: value.describe(),
        }
    }

    /// The value of an argument as `T`: `i64`, `f64`, `bool`, `String` or `Vec<i64>`.
    /// An unknown name or another type is an error.
    pub fn get_as<T: FromArg>(&self, name: &str) -> Result<T, PatchStringError> {
        let value = self.lookup(name)?;
        T::from_value(value).ok_or_else(|| self.wrong_type(name, T::TYPE, value))
    }

    /// An integer argument.
    pub fn get_i64(&self, name: &str) -> Result<i64, PatchStringError> {
        self.get_as(name)
    }

    /// A float argument.
    pub fn get_f64(&self, name: &str) -> Result<f64, PatchStringError> {
        self.get_as(name)
    }

    /// A boolean argument.
    pub fn get_bool(&self, name: &str) -> Result<bool, PatchStringError> {
        self.get_as(name)
    }

    /// A string argument.
    pub fn get_str(&self, name: &str) -> Result<&str, PatchStringError> {
        match self.lookup(name)? {
            Value::Str(text) => Ok(text),
            other => Err(self.wrong_type(name, ArgType::Str, other)),
        }
    }

    /// A list-of-integers argument.
    pub fn get_i64_list(&self, name: &str) -> Result<Vec<i64>, PatchStringError> {
        self.get_as(name)
    }
}

/// A Rust type an argument value converts to. Implemented for `i64`, `f64`, `bool`,
/// `String` and `Vec<i64>`: the field types `#[derive(PatchArgs)]` accepts.
pub trait FromArg: Sized {
    /// The argument type this Rust type reads.
    const TYPE: ArgType;
    /// The value as `Self`, or `None` for a value of another type.
    fn from_value(value: &Value) -> Option<Self>;
    /// `self` as a value (the inverse of `from_value`).
    fn to_value(&self) -> Value;
}

impl FromArg for i64 {
    const TYPE: ArgType = ArgType::Int;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl FromArg for f64 {
    const TYPE: ArgType = ArgType::Float;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
}

impl FromArg for bool {
    const TYPE: ArgType = ArgType::Bool;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FromArg for String {
    const TYPE: ArgType = ArgType::Str;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Str(v) => Some(v.clone()),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
}

impl FromArg for Vec<i64> {
    const TYPE: ArgType = ArgType::IntList;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::List(items) => items.iter().map(i64::from_value).collect(),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(|v| Value::Int(*v)).collect())
    }
}
