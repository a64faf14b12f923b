//! The patch-string parser: text to [`PatchCall`]s, with no knowledge of which patches
//! exist. Hand-written, one pass, no recursion (lists do not nest), never panics.
//!
//! Grammar (whitespace allowed between any two tokens):
//!
//! ```text
//! chain  := call (';' call)* ';'?
//! call   := name ( '(' ( arg (',' arg)* ','? )? ')' )?
//! arg    := name '=' value
//! value  := integer | float | 'true' | 'false' | string | name | list
//! list   := '[' ( value (',' value)* ','? )? ']'      (elements are not lists)
//! name   := [A-Za-z_][A-Za-z0-9_]*
//! number := [+-]? digits ('.' digits)? ([eE] [+-]? digits)?   (a float has '.' or exponent)
//! string := '"' (any char but '"' and '\' | '\"' | '\\' | '\n' | '\t' | '\r')* '"'
//! ```
//!
//! Patches in a chain are separated by `;`: a comma already separates arguments and
//! appears inside glob patterns such as `*.attn.{q,v}`.
use super::value::{write_quoted, Value};
use crate::error::Result;
use crate::registry::PatchStringError;
use std::fmt;

/// Where a token starts in the patch string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Byte offset from the start of the string.
    pub offset: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

/// One `name(arg=value, ...)` of a patch string, before it is checked against a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchCall {
    /// The patch name.
    pub name: String,
    /// Where the name starts.
    pub span: Span,
    /// The arguments in the order written (duplicates kept: the registry rejects them).
    pub args: Vec<CallArg>,
}

/// One `name=value` argument of a [`PatchCall`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallArg {
    /// The argument name.
    pub name: String,
    /// Where the name starts.
    pub span: Span,
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub value_span: Span,
}

impl fmt::Display for PatchCall {
    /// Prints the call so that [`parse_calls`] reads it back to the same names and values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (index, arg) in self.args.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", arg.name, arg.value)?;
        }
        f.write_str(")")
    }
}

/// Parses a patch string into its calls, without checking names or arguments.
///
/// ```
/// use tch_patch::registry::{parse_calls, Value};
///
/// let calls = parse_calls(r#"lora(rank=4, targets="*.q"); bias_only(targets="*.mlp.*")"#)?;
/// assert_eq!(calls.len(), 2);
/// assert_eq!(calls[0].args[0].value, Value::Int(4));
/// let error = parse_calls("lora(rank 8)").unwrap_err();
/// assert_eq!(error.to_string(), "at column 11: expected '=' after argument name \"rank\", found '8'");
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn parse_calls(input: &str) -> Result<Vec<PatchCall>, PatchStringError> {
    let mut parser = Parser {
        input,
        pos: 0,
        column: 1,
    };
    let mut calls = Vec::new();
    if input.trim().is_empty() {
        return Ok(calls); // no patch: the identity
    }
    loop {
        parser.skip_ws();
        calls.push(parser.call()?);
        parser.skip_ws();
        match parser.peek() {
            None => return Ok(calls),
            Some(';') => {
                parser.bump();
                parser.skip_ws();
                if parser.peek().is_none() {
                    return Ok(calls);
                }
            }
            Some(_) => {
                let name = &calls[calls.len() - 1].name;
                return Err(parser.error(format!(
                    "expected ';' or the end after patch \"{name}\", found {}",
                    parser.found()
                )));
            }
        }
    }
}

/// Writes a string literal as the parser reads it (quoted, escaped).
pub(super) fn quote(text: &str) -> String {
    let mut out = String::new();
    let _ = write_quoted(&mut out, text);
    out
}

struct Parser<'a> {
    input: &'a str,
    /// Byte offset of the next character; always on a char boundary.
    pos: usize,
    /// 1-based column of the next character, kept up to date by `bump` (counting the
    /// characters before `pos` at every token made parsing quadratic in the length).
    column: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        self.column += 1;
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn span(&self) -> Span {
        Span {
            offset: self.pos,
            column: self.column,
        }
    }

    /// The next character, for "found ..." in messages.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the string".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn error(&self, message: String) -> PatchStringError {
        self.error_at(self.span(), message)
    }

    fn error_at(&self, span: Span, message: String) -> PatchStringError {
        PatchStringError::PatchSyntax {
            input: self.input.to_owned(),
            offset: span.offset,
            column: span.column,
            message,
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return None;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        Some(self.input[start..self.pos].to_owned())
    }

    fn call(&mut self) -> Result<PatchCall, PatchStringError> {
        let span = self.span();
        let Some(name) = self.name() else {
            return Err(self.error(format!("expected a patch name, found {}", self.found())));
        };
        let mut call = PatchCall {
            name,
            span,
            args: Vec::new(),
        };
        self.skip_ws();
        match self.peek() {
            Some('(') => self.bump(),
            None | Some(';') => return Ok(call),
            Some(_) => {
                return Err(self.error(format!(
                    "expected '(' after patch name \"{}\", found {}",
                    call.name,
                    self.found()
                )))
            }
        };
        loop {
            self.skip_ws();
            if self.peek() == Some(')') {
                self.bump();
                return Ok(call);
            }
            let arg = self.arg()?;
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(')') => {}
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or ')' after the value of argument \"{}\", found {}",
                        arg.name,
                        self.found()
                    )))
                }
            }
            call.args.push(arg);
        }
    }

    /// An argument name: a name, or a dotted path of names and indices (`0.in_features`,
    /// which `rebind` takes).
    fn arg_name(&mut self) -> Option<String> {
        let start = self.pos;
        let segment = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if !self.peek().is_some_and(segment) {
            return None;
        }
        while self.peek().is_some_and(|c| segment(c) || c == '.') {
            self.bump();
        }
        let name = &self.input[start..self.pos];
        let well_formed = !name.ends_with('.') && !name.contains("..");
        let plain = name.contains('.') || name.starts_with(|c: char| !c.is_ascii_digit());
        (well_formed && plain).then(|| name.to_owned())
    }

    fn arg(&mut self) -> Result<CallArg, PatchStringError> {
        let span = self.span();
        let Some(name) = self.arg_name() else {
            return Err(self.error(format!(
                "expected an argument name or ')', found {}",
                self.found()
            )));
        };
        self.skip_ws();
        if self.peek() != Some('=') {
            return Err(self.error(format!(
                "expected '=' after argument name \"{name}\", found {}",
                self.found()
            )));
        }
        self.bump();
        self.skip_ws();
        let value_span = self.span();
        let value = match self.peek() {
            Some('[') => self.list(&name)?,
            _ => self.scalar(&name)?,
        };
        Ok(CallArg {
            name,
            span,
            value,
            value_span,
        })
    }

    fn list(&mut self, arg: &str) -> Result<Value, PatchStringError> {
        self.bump(); // '['
        let mut values = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                self.bump();
                return Ok(Value::List(values));
            }
            if self.peek() == Some('[') {
                return Err(self.error(format!(
                    "lists do not nest: an element of argument \"{arg}\" cannot be a list"
                )));
            }
            values.push(self.scalar(arg)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or ']' in the list of argument \"{arg}\", found {}",
                        self.found()
                    )))
                }
            }
        }
    }

    fn scalar(&mut self, arg: &str) -> Result<Value, PatchStringError> {
        match self.peek() {
            Some('"') => self.string().map(Value::Str),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name().unwrap_or_default();
                Ok(match name.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Ident(name),
                })
            }
            _ => Err(self.error(format!(
                "expected a value for argument \"{arg}\" (a number, true, false, a \"string\", \
                 a name or a [list]), found {}",
                self.found()
            ))),
        }
    }

    fn string(&mut self) -> Result<String, PatchStringError> {
        let start = self.span();
        self.bump(); // '"'
        let mut out = String::new();
        loop {
            let here = self.span();
            match self.bump() {
                None => {
                    return Err(
                        self.error_at(start, "unterminated string: no closing '\"'".to_owned())
                    )
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c) => {
                        return Err(self.error_at(
                            here,
                            format!(
                                "unknown escape '\\{c}' in a string; \
                                 the escapes are \\\" \\\\ \\n \\t \\r"
                            ),
                        ));
                    }
                    None => {
                        return Err(
                            self.error_at(start, "unterminated string: no closing '\"'".to_owned())
                        )
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A number: the maximal run of number-like characters, then checked as a whole, so
    /// `8x` or `1.2.3` is reported as one malformed token.
    fn number(&mut self) -> Result<Value, PatchStringError> {
        let start = self.span();
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        {
            self.bump();
        }
        let text = &self.input[start.offset..self.pos];
        let Some(is_float) = number_shape(text) else {
            return Err(self.error_at(start, format!("malformed number \"{text}\"")));
        };
        if is_float {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Value::Float(value)),
                _ => Err(self.error_at(start, format!("number {text} is too large"))),
            }
        } else {
            text.parse::<i64>().map(Value::Int).map_err(|_| {
                self.error_at(start, format!("integer {text} does not fit in 64 bits"))
            })
        }
    }
}

/// `Some(is_float)` when `text` is `[+-]? digits ('.' digits)? ([eE] [+-]? digits)?`.
fn number_shape(text: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !digits(&mut i) {
        return None;
    }
    let mut is_float = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        is_float = true;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        is_float = true;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    (i == bytes.len()).then_some(is_float)
}

#[cfg(test)]
mod tests {
    use super::number_shape;

    #[test]
    fn number_shapes() {
        for (text, shape) in [
            ("8", Some(false)),
            ("-8", Some(false)),
            ("+8", Some(false)),
            ("1.5", Some(true)),
            ("1e-3", Some(true)),
            ("-2.5E+10", Some(true)),
            ("1.", None),
            (".5", None),
            ("1e", None),
            ("1.2.3", None),
            ("8x", None),
            ("-", None),
            ("", None),
        ] {
            assert_eq!(number_shape(text), shape, "{text}");
        }
    }
}
