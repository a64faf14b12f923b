//! Named tensors to and from the bytes of a safetensors file, with dtypes named as
//! safetensors names them (`F32`, `BF16`...).
use super::problem::AdapterProblem;
use super::AdapterError;
use crate::error::{PatchError, Result};
use crate::names;
use crate::save::{tensor_bytes, Bytes};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Every dtype both libtorch and safetensors have: (safetensors' name, dtype, kind).
const DTYPES: [(&str, Dtype, Kind); 10] = [
    ("BOOL", Dtype::BOOL, Kind::Bool),
    ("U8", Dtype::U8, Kind::Uint8),
    ("I8", Dtype::I8, Kind::Int8),
    ("I16", Dtype::I16, Kind::Int16),
    ("I32", Dtype::I32, Kind::Int),
    ("I64", Dtype::I64, Kind::Int64),
    ("F16", Dtype::F16, Kind::Half),
    ("BF16", Dtype::BF16, Kind::BFloat16),
    ("F32", Dtype::F32, Kind::Float),
    ("F64", Dtype::F64, Kind::Double),
];

/// The safetensors name of a kind (`F32`), or `None` if safetensors cannot hold it.
pub(crate) fn kind_name(kind: Kind) -> Option<&'static str> {
    DTYPES.iter().find(|d| d.2 == kind).map(|d| d.0)
}

/// The kind of a safetensors dtype name, if libtorch has it.
pub(crate) fn kind_of_name(name: &str) -> Option<Kind> {
    DTYPES.iter().find(|d| d.0 == name).map(|d| d.2)
}

/// The kind of a safetensors dtype, if libtorch has it.
pub(crate) fn kind_of_dtype(dtype: Dtype) -> Option<Kind> {
    DTYPES.iter().find(|d| d.1 == dtype).map(|d| d.2)
}

/// The name of a safetensors dtype (`U16` and the like included, for messages).
pub(crate) fn dtype_name(dtype: Dtype) -> String {
    DTYPES
        .iter()
        .find(|d| d.1 == dtype)
        .map(|d| d.0.to_owned())
        // One libtorch lacks (U16...): safetensors' `Debug` of it is its name.
        .unwrap_or_else(|| format!("{dtype:?}"))
}

fn dtype_of_kind(kind: Kind) -> Option<Dtype> {
    DTYPES.iter().find(|d| d.2 == kind).map(|d| d.1)
}

/// A problem with a tensor to be written, if any: undefined, or of a dtype safetensors
/// cannot hold.
pub(crate) fn unwritable(name: &str, tensor: &Tensor) -> Option<AdapterProblem> {
    let message = if !tensor.defined() {
        "is an undefined tensor".to_owned()
    } else if kind_name(tensor.kind()).is_none() {
        format!(
            "has dtype {}, which safetensors cannot hold",
            names::kind_name(tensor.kind())
        )
    } else {
        return None;
    };
    Some(AdapterProblem::Tensor {
        name: name.to_owned(),
        message,
    })
}

fn encode(name: &str, tensor: &Tensor) -> Result<Bytes> {
    let kind = tensor.kind();
    let dtype = dtype_of_kind(kind).ok_or_else(|| PatchError::KindMismatch {
        name: name.to_owned(),
        actual: kind,
        expected: "a dtype safetensors can hold".into(),
    })?;
    tensor_bytes(name, tensor, dtype)
}

/// The bytes of a safetensors file holding `tensors` under their names, with
/// `metadata` in its header. Names must be unique and tensors writable ([`unwritable`]).
pub(crate) fn to_safetensors_bytes(
    tensors: &[(String, &Tensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let encoded = tensors
        .iter()
        .map(|(name, tensor)| Ok((name.clone(), encode(name, tensor)?)))
        .collect::<Result<Vec<_>>>()?;
    let views = encoded.iter().map(|(name, e)| (name.as_str(), e));
    safetensors::tensor::serialize(views, &Some(metadata))
        .map_err(|error| AdapterError {
            operation: "encode safetensors".into(),
            problems: vec![AdapterProblem::Tensor {
                name: "(header)".into(),
                message: error_message(&error),
            }],
        })
        .map_err(Into::into)
}

/// One tensor of a safetensors file, as its header describes it.
pub(crate) struct FileTensor {
    /// Its dtype's name (`F32`).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<i64>,
}

/// Parses a safetensors file's header: each key's dtype and shape, each key once. The
/// message of a malformed file on error.
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<SafeTensors<'_>, String> {
    crate::safe_read::check_header(bytes)?;
    SafeTensors::deserialize(bytes).map_err(|error| error_message(&error))
}

/// The dtype and shape of every tensor of a parsed file, by key.
pub(crate) fn describe(file: &SafeTensors<'_>) -> HashMap<String, FileTensor> {
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let described = FileTensor {
                dtype: dtype_name(view.dtype()),
                shape: view.shape().iter().map(|&d| d as i64).collect(),
            };
            (name, described)
        })
        .collect()
}

/// The tensor stored under `key` (a new CPU tensor owning its values). The key must be in
/// the file with a dtype libtorch has (checked before with [`describe`]).
pub(crate) fn load(file: &SafeTensors<'_>, key: &str) -> Result<Tensor, AdapterError> {
    let problem = |message: String| AdapterError {
        operation: "read safetensors".into(),
        problems: vec![AdapterProblem::Tensor {
            name: key.to_owned(),
            message,
        }],
    };
    let view = file
        .tensor(key)
        .map_err(|error| problem(error_message(&error)))?;
    Tensor::try_from(view).map_err(|error| problem(format!("converting it failed: {error}")))
}

/// The safetensors reader's error in words.
pub(crate) fn error_message(error: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match error {
        E::HeaderTooSmall | E::InvalidHeaderLength => {
            "not a safetensors file: truncated, or its header length is wrong".into()
        }
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            "not a safetensors file: its header is not a JSON object".into()
        }
        E::HeaderTooLarge => "not a safetensors file: its header is larger than 100 MB".into(),
        E::TensorNotFound(name) => format!("it has no tensor `{name}`"),
        E::InvalidOffset(name) => format!("the data offsets of tensor `{name}` are wrong"),
        E::MetadataIncompleteBuffer | E::TensorInvalidInfo | E::ValidationOverflow => {
            "its header does not match its data (truncated or corrupt)".into()
        }
        E::IoError(error) => error.to_string(),
        E::JsonError(error) => format!("its header is not valid JSON: {error}"),
        E::InvalidTensorView(dtype, shape, bytes) => format!(
            "a tensor of dtype {} and shape {} does not fit its {bytes} bytes",
            dtype_name(*dtype),
            names::shape_text(&shape.iter().map(|&d| d as i64).collect::<Vec<_>>())
        ),
    }
}
