//! Reading a transformers `config.json` field by field: every field is read, accepted as
//! information, or refused by name; an unknown field is an error listing the known ones.
use crate::error::ModelError;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// How an architecture treats one `config.json` field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    /// Read by the architecture (its value shapes the model).
    Read(&'static str),
    /// Carries nothing the forward pass uses (token ids, the library version, training-time
    /// initialisation): accepted whatever its value.
    Info(&'static str),
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Read(name) | Field::Info(name) => name,
        }
    }
}

/// One JSON object of a config, read by name, remembering which fields were taken.
pub(crate) struct Reader<'a> {
    path: &'a Path,
    /// The object's place in the file (`""` at the top, `rope_parameters` inside).
    place: &'static str,
    object: &'a Map<String, Value>,
    taken: BTreeSet<&'static str>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(path: &'a Path, place: &'static str, object: &'a Map<String, Value>) -> Self {
        Reader {
            path,
            place,
            object,
            taken: BTreeSet::new(),
        }
    }

    fn field_name(&self, name: &str) -> String {
        if self.place.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.place)
        }
    }

    fn invalid(&self, name: &str, expected: &str, found: &Value) -> ModelError {
        ModelError::InvalidField {
            path: self.path.to_owned(),
            field: self.field_name(name),
            expected: expected.to_owned(),
            found: found.to_string(),
        }
    }

    /// The raw value of `name`, if present and not `null`.
    pub(crate) fn value(&mut self, name: &'static str) -> Option<&'a Value> {
        self.taken.insert(name);
        self.object.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn i64_or(
        &mut self,
        name: &'static str,
        default: Option<i64>,
    ) -> Result<i64, ModelError> {
        match self.value(name) {
            Some(v) => v
                .as_i64()
                .filter(|n| *n > 0)
                .ok_or_else(|| self.invalid(name, "a positive integer", v)),
            None => default.ok_or_else(|| ModelError::MissingField {
                path: self.path.to_owned(),
                field: self.field_name(name),
            }),
        }
    }

    pub(crate) fn f64_or(
        &mut self,
        name: &'static str,
        default: Option<f64>,
    ) -> Result<f64, ModelError> {
        match self.value(name) {
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.invalid(name, "a finite number", v)),
            None => default.ok_or_else(|| ModelError::MissingField {
                path: self.path.to_owned(),
                field: self.field_name(name),
            }),
        }
    }

    pub(crate) fn bool_or(
        &mut self,
        name: &'static str,
        default: bool,
    ) -> Result<bool, ModelError> {
        match self.value(name) {
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.invalid(name, "true or false", v)),
            None => Ok(default),
        }
    }

    pub(crate) fn str_or(
        &mut self,
        name: &'static str,
        default: &'a str,
    ) -> Result<&'a str, ModelError> {
        match self.value(name) {
            Some(v) => v.as_str().ok_or_else(|| self.invalid(name, "a string", v)),
            None => Ok(default),
        }
    }

    /// Refuses a value the architecture does not implement, naming the field and what is.
    pub(crate) fn unsupported(
        &self,
        name: &str,
        value: impl Into<String>,
        supported: &str,
    ) -> ModelError {
        ModelError::UnsupportedField {
            path: self.path.to_owned(),
            field: self.field_name(name),
            value: value.into(),
            supported: supported.to_owned(),
        }
    }

    /// Takes the informational fields, then refuses every field nobody took, listing the
    /// known ones.
    pub(crate) fn finish(mut self, fields: &[Field]) -> Result<(), ModelError> {
        for field in fields {
            if let Field::Info(name) = field {
                self.taken.insert(name);
            }
        }
        let known: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        let unknown: Vec<String> = self
            .object
            .keys()
            .filter(|key| !self.taken.contains(key.as_str()))
            .map(|key| self.field_name(key))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ModelError::UnknownFields {
                path: self.path.to_owned(),
                fields: unknown,
                known: known.iter().map(|k| k.to_string()).collect(),
            })
        }
    }
}

/// Reads `config.json` as a JSON object.
pub(crate) fn read_object(path: &Path) -> Result<Map<String, Value>, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ModelError::Json {
            path: path.to_owned(),
            message: "not a JSON object".into(),
        }),
        Err(error) => Err(ModelError::Json {
            path: path.to_owned(),
            message: error.to_string(),
        }),
    }
}
