//! Reading a JSON file field by field, collecting a problem for every missing, mistyped
//! or unknown field (with its path, `patches[1].tensors[0].shape`) instead of stopping
//! at the first.
use super::problem::AdapterProblem;
use serde_json::{Map, Value};

/// Parses `bytes` as JSON; a syntax error becomes [`AdapterProblem::Json`].
pub(crate) fn parse(file: &str, bytes: &[u8]) -> Result<Value, AdapterProblem> {
    serde_json::from_slice(bytes).map_err(|error| AdapterProblem::Json {
        file: file.to_owned(),
        line: error.line(),
        column: error.column(),
        message: json_message(&error),
    })
}

/// serde_json's message without its own " at line L column C" (given apart).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// `value` described for messages: "the string \"x\"", "an array".
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `parent.name`, or `name` at the top.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// A JSON file being read: its name and the problems found so far.
pub(crate) struct Reader<'p> {
    file: String,
    problems: &'p mut Vec<AdapterProblem>,
}

impl<'p> Reader<'p> {
    pub(crate) fn new(file: &str, problems: &'p mut Vec<AdapterProblem>) -> Self {
        Reader {
            file: file.to_owned(),
            problems,
        }
    }

    /// Records a problem.
    pub(crate) fn push(&mut self, problem: AdapterProblem) {
        self.problems.push(problem);
    }

    /// The number of problems recorded so far (by this reader and before it).
    pub(crate) fn count(&self) -> usize {
        self.problems.len()
    }

    /// Records a problem with `field`.
    pub(crate) fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(AdapterProblem::Field {
            file: self.file.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, field: &str, expected: &str, value: &Value) {
        self.problem(
            field,
            format!("must be {expected}, found {}", describe(value)),
        );
    }

    /// `value` as an object, or a problem.
    pub(crate) fn object<'v>(
        &mut self,
        field: &str,
        value: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(field, "an object", other);
                None
            }
        }
    }

    /// A required field, or a problem "is missing".
    pub(crate) fn required<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v Value> {
        let value = object.get(name);
        if value.is_none() {
            self.problem(&join(at, name), "is missing");
        }
        value
    }

    /// A required string field.
    pub(crate) fn string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v str> {
        match self.required(object, at, name)? {
            Value::String(text) => Some(text),
            other => {
                self.wrong_type(&join(at, name), "a string", other);
                None
            }
        }
    }

    /// An optional string field (absent or `null` is `None`, with no problem).
    pub(crate) fn optional_string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v str> {
        match object.get(name)? {
            Value::Null => None,
            Value::String(text) => Some(text),
            other => {
                self.wrong_type(&join(at, name), "a string", other);
                None
            }
        }
    }

    /// A required non-negative integer field.
    pub(crate) fn unsigned(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<u64> {
        let value = self.required(object, at, name)?;
        self.as_unsigned(&join(at, name), value)
    }

    /// `value` as a non-negative integer, or a problem.
    pub(crate) fn as_unsigned(&mut self, field: &str, value: &Value) -> Option<u64> {
        match value.as_u64() {
            Some(n) => Some(n),
            None => {
                self.wrong_type(field, "a non-negative integer", value);
                None
            }
        }
    }

    /// A required number field (integer or not).
    pub(crate) fn number(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<f64> {
        match self.required(object, at, name)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.wrong_type(&join(at, name), "a number", other);
                None
            }
        }
    }

    /// An optional bool field: `default` when absent or `null`.
    pub(crate) fn bool_or(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        name: &str,
        default: bool,
    ) -> Option<bool> {
        match object.get(name) {
            None | Some(Value::Null) => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.wrong_type(&join(at, name), "true or false", other);
                None
            }
        }
    }

    /// A required array field.
    pub(crate) fn array<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Option<&'v [Value]> {
        match self.required(object, at, name)? {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(&join(at, name), "an array", other);
                None
            }
        }
    }

    /// A problem for every field of `object` not in `known`.
    pub(crate) fn deny_unknown(&mut self, object: &Map<String, Value>, at: &str, known: &[&str]) {
        for name in object.keys() {
            if !known.contains(&name.as_str()) {
                self.problem(
                    &join(at, name),
                    format!(
                        "is not a known field; the known fields are: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}
