//! The values a patch string can hold, and how they print back.
use std::fmt;

/// One argument value as written in a patch string.
///
/// Printing a value (`Display`) gives text that parses back to an equal value: strings are
/// quoted and escaped, floats always carry a `.` or an exponent.
///
/// ```
/// use tch_patch::registry::Value;
///
/// assert_eq!(Value::Float(16.0).to_string(), "16.0");
/// assert_eq!(Value::Float(1e-3).to_string(), "0.001");
/// assert_eq!(Value::Str("a\"b".into()).to_string(), r#""a\"b""#);
/// assert_eq!(Value::List(vec![Value::Int(1), Value::Int(2)]).to_string(), "[1, 2]");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer: `8`, `-3`.
    Int(i64),
    /// A finite floating-point number: `16.0`, `1e-3`, `-0.5`.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A double-quoted string: `"*.attn.{q,v}"`.
    Str(String),
    /// A bare name: `gaussian`. Accepted where a string is expected.
    Ident(String),
    /// A list of values: `[1, 2, 3]`. Lists do not nest.
    List(Vec<Value>),
}

impl Value {
    /// What the value is, for error messages: `the integer 8`, `the string "x"`.
    pub fn describe(&self) -> String {
        match self {
            Value::Int(_) => format!("the integer {self}"),
            Value::Float(_) => format!("the number {self}"),
            Value::Bool(_) => format!("`{self}`"),
            Value::Str(_) => format!("the string {self}"),
            Value::Ident(_) => format!("the name `{self}`"),
            Value::List(_) => format!("the list {self}"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(value) => write!(f, "{value}"),
            // `{:?}` is the shortest text that reads back to the same f64, and always has
            // a `.` or an exponent, so it reads back as a float.
            Value::Float(value) => write!(f, "{value:?}"),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Str(value) => write_quoted(f, value),
            Value::Ident(value) => f.write_str(value),
            Value::List(values) => {
                f.write_str("[")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Writes `text` as a patch-string literal: in double quotes, with `"`, `\`, newline,
/// tab and carriage return escaped.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
