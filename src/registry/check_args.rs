//! Checking given arguments against a schema: the one place every argument error is made.
use super::args::{ArgProblem, ValidatedArgs};
use super::parse::{CallArg, Span};
use super::spec::PatchSchema;
use super::value::Value;
use super::TARGETS;
use crate::error::Result;
use crate::nearest::nearest;
use crate::registry::PatchStringError;

/// A given argument: name, value and, for a parsed string, where the name and the value
/// start.
pub(crate) type Given = (String, Value, Option<(Span, Span)>);

/// Turns a parsed argument into a [`Given`].
pub(crate) fn given(arg: &CallArg) -> Given {
    (
        arg.name.clone(),
        arg.value.clone(),
        Some((arg.span, arg.value_span)),
    )
}

/// Checks `given` against `schema`, in order: each given argument (given twice, unknown,
/// mistyped, not allowed), then every required argument left out. With `with_targets`,
/// `targets` is accepted (and required) and returned separately. `patch_span` is where
/// the patch name was written, for missing-argument errors.
pub(crate) fn check_values(
    schema: &PatchSchema,
    given: Vec<Given>,
    with_targets: bool,
) -> Result<(ValidatedArgs, Option<String>), PatchStringError> {
    check_values_at(schema, given, with_targets, None)
}

pub(crate) fn check_values_at(
    schema: &PatchSchema,
    given: Vec<Given>,
    with_targets: bool,
    patch_span: Option<Span>,
) -> Result<(ValidatedArgs, Option<String>), PatchStringError> {
    let patch = || schema.name.clone();
    let mut values: Vec<Option<Value>> = vec![None; schema.args.len()];
    let mut targets: Option<String> = None;
    for (index, (name, value, spans)) in given.iter().enumerate() {
        let name_column = spans.map(|(name, _)| name.column);
        let value_column = spans.map(|(_, value)| value.column);
        if given[..index].iter().any(|(earlier, _, _)| earlier == name) {
            return Err(PatchStringError::DuplicateArgument {
                patch: patch(),
                name: name.clone(),
                column: name_column,
            });
        }
        if with_targets && name == TARGETS {
            match value {
                Value::Str(text) | Value::Ident(text) => targets = Some(text.clone()),
                other => {
                    return Err(PatchStringError::ArgumentType {
                        patch: patch(),
                        name: name.clone(),
                        column: value_column,
                        expected: "a string".into(),
                        found: other.describe(),
                    })
                }
            }
            continue;
        }
        let Some(position) = schema.args.iter().position(|arg| &arg.name == name) else {
            let accepted = if with_targets {
                schema.accepted()
            } else {
                schema.args.iter().map(|arg| arg.name.clone()).collect()
            };
            return Err(PatchStringError::UnknownArgument {
                patch: patch(),
                name: name.clone(),
                column: name_column,
                nearest: nearest(name, accepted.iter().map(String::as_str)),
                accepted,
            });
        };
        let spec = &schema.args[position];
        match spec.check(value) {
            Ok(value) => values[position] = Some(value),
            Err(ArgProblem::Type) => {
                return Err(PatchStringError::ArgumentType {
                    patch: patch(),
                    name: name.clone(),
                    column: value_column,
                    expected: spec.ty.expected().into(),
                    found: value.describe(),
                })
            }
            Err(ArgProblem::NotAllowed(value)) => {
                return Err(PatchStringError::ArgumentOutOfRange {
                    patch: patch(),
                    name: name.clone(),
                    column: value_column,
                    value: value.to_string(),
                    allowed: spec.allowed().unwrap_or_else(|| "finite".into()),
                })
            }
        }
    }
    let mut checked = Vec::with_capacity(schema.args.len());
    for (spec, value) in schema.args.iter().zip(values) {
        match value.or_else(|| spec.default.clone()) {
            Some(value) => checked.push((spec.name.clone(), value)),
            None => {
                return Err(PatchStringError::MissingArgument {
                    patch: patch(),
                    name: spec.name.clone(),
                    column: patch_span.map(|span| span.column),
                    expected: spec.ty.expected().into(),
                })
            }
        }
    }
    if with_targets && targets.is_none() && schema.default_targets.is_none() {
        return Err(PatchStringError::MissingArgument {
            patch: patch(),
            name: TARGETS.into(),
            column: patch_span.map(|span| span.column),
            expected: "a string".into(),
        });
    }
    Ok((ValidatedArgs::new(schema.name.clone(), checked), targets))
}

/// `rebind(path=value, ...)`: each argument a hyperparameter path with a value (checked
/// against the model when applied); at least one, none twice, no `targets`.
pub(super) fn check_rebind(call: &super::PatchCall) -> Result<super::PatchSpec, PatchStringError> {
    let mut values = Vec::new();
    for arg in &call.args {
        if arg.name == TARGETS || !arg.name.contains('.') {
            return Err(PatchStringError::UnknownArgument {
                patch: call.name.clone(),
                name: arg.name.clone(),
                column: Some(arg.span.column),
                accepted: vec!["<node path>.<hyperparameter>".into()],
                nearest: None,
            });
        }
        if values
            .iter()
            .any(|(name, _): &(String, Value)| *name == arg.name)
        {
            return Err(PatchStringError::DuplicateArgument {
                patch: call.name.clone(),
                name: arg.name.clone(),
                column: Some(arg.span.column),
            });
        }
        values.push((arg.name.clone(), arg.value.clone()));
    }
    if values.is_empty() {
        return Err(PatchStringError::MissingArgument {
            patch: call.name.clone(),
            name: "<node path>.<hyperparameter>".into(),
            column: Some(call.span.column),
            expected: "a hyperparameter to change".into(),
        });
    }
    Ok(super::PatchSpec {
        name: call.name.clone(),
        args: ValidatedArgs::new(call.name.clone(), values),
        targets: String::new(),
    })
}
