//! Patch arguments as JSON, and their re-check through the registry.
use super::entry::path_problem;
use super::problem::AdapterProblem;
use crate::error::PatchError;
use crate::registry::{PatchSpec, Registry, ValidatedArgs, Value};
use crate::tree::Glob;
use serde_json::{Map, Number, Value as Json};

/// Checked arguments as a JSON object: integers as integers, floats always with a `.`
/// or an exponent (`16.0`), so they read back as the same type.
pub(crate) fn args_to_json(args: &ValidatedArgs) -> Map<String, Json> {
    args.iter()
        .map(|(name, value)| (name.to_owned(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Int(v) => Json::from(*v),
        // Checked arguments are finite; a non-finite one would be rejected on reading.
        Value::Float(v) => Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::Bool(v) => Json::Bool(*v),
        Value::Str(v) | Value::Ident(v) => Json::String(v.clone()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
    }
}

/// A JSON argument value as a patch value, or `None` for what patch strings cannot
/// hold (`null`, objects, nested arrays).
pub(crate) fn json_to_value(json: &Json) -> Option<Value> {
    match json {
        Json::Bool(v) => Some(Value::Bool(*v)),
        Json::Number(n) => match n.as_i64() {
            Some(int) if !n.is_f64() => Some(Value::Int(int)),
            _ => n.as_f64().map(Value::Float),
        },
        Json::String(text) => Some(Value::Str(text.clone())),
        Json::Array(items) => items
            .iter()
            .map(|item| match item {
                Json::Array(_) => None,
                other => json_to_value(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(Value::List),
        Json::Null | Json::Object(_) => None,
    }
}

/// Checks patch `name` with argument `values` at `path` through `registry`, as a patch
/// string would be: an unknown name, bad arguments or `targets` that are not a glob is
/// [`AdapterProblem::InvalidPatch`]; `targets` not selecting a valid `path` is
/// [`AdapterProblem::TargetsMismatch`].
pub(crate) fn check_spec(
    registry: &Registry,
    path: &str,
    name: &str,
    values: Vec<(String, Value)>,
    targets: String,
) -> Result<PatchSpec, AdapterProblem> {
    let problem = |error: PatchError| AdapterProblem::InvalidPatch {
        path: path.to_owned(),
        error: Box::new(error),
    };
    let Some(schema) = registry.schema(name) else {
        return Err(problem(registry.unknown_patch(name, None).into()));
    };
    let args = schema.check_values(values).map_err(problem)?;
    let glob = Glob::new(&targets).map_err(|error| problem(error.into()))?;
    if path_problem(path).is_none() && !glob.matches(path) {
        return Err(AdapterProblem::TargetsMismatch {
            path: path.to_owned(),
            targets,
        });
    }
    Ok(PatchSpec {
        name: name.to_owned(),
        args,
        targets,
    })
}

/// Re-checks a spec given in Rust (its arguments must be its own patch's).
pub(crate) fn recheck_spec(
    registry: &Registry,
    path: &str,
    spec: &PatchSpec,
) -> Option<AdapterProblem> {
    if spec.args.patch() != spec.name {
        return Some(AdapterProblem::InvalidPatch {
            path: path.to_owned(),
            error: Box::new(
                crate::registry::PatchStringError::WrongPatch {
                    expected: spec.name.clone(),
                    found: spec.args.patch().to_owned(),
                }
                .into(),
            ),
        });
    }
    let values = spec
        .args
        .iter()
        .map(|(name, value)| (name.to_owned(), value.clone()))
        .collect();
    check_spec(registry, path, &spec.name, values, spec.targets.clone()).err()
}

#[cfg(test)]
mod tests {
    use super::check_spec;
    use crate::adapter::AdapterProblem;
    use crate::error::PatchError;
    use crate::registry::Registry;
    use crate::tree::TreeError;

    fn check(path: &str, targets: &str) -> Result<(), AdapterProblem> {
        let registry = Registry::global().unwrap();
        check_spec(registry, path, "lora", Vec::new(), targets.to_owned()).map(drop)
    }

    #[test]
    fn targets_must_be_a_glob_that_selects_the_patched_path() {
        assert!(check("blocks.0.q", "*.q").is_ok());
        assert!(check("blocks.0.q", "blocks.0.q").is_ok());
        let Err(AdapterProblem::InvalidPatch { path, error }) = check("blocks.0.q", "blocks.{0.q")
        else {
            panic!("a bad glob is an invalid patch")
        };
        assert_eq!(path, "blocks.0.q");
        assert!(
            matches!(*error, PatchError::Tree(TreeError::BadGlob { ref pattern, .. }) if pattern == "blocks.{0.q")
        );
        let mismatch = check("blocks.0.q", "blocks.*.v").unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            "patch at `blocks.0.q`: its targets \"blocks.*.v\" do not select its patched path"
        );
        // An invalid path is reported on its own (`path_problem`), not as a mismatch too.
        assert!(check("blocks..q", "blocks.0.q").is_ok());
    }
}
