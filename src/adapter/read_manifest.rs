//! `adapter.json`: the manifest of an adapter folder, read field by field (every problem
//! found, each naming its field). It is written by
//! [`AdapterManifest::to_json`](super::AdapterManifest::to_json).
use super::args::json_to_value;
use super::json::{self, Reader};
use super::problem::AdapterProblem;
use super::tensors::kind_of_name;
use crate::registry::Value;

/// The manifest's file name in an adapter folder.
pub const MANIFEST_FILE: &str = "adapter.json";
/// The tensors' file name in an adapter folder.
pub const TENSORS_FILE: &str = "adapter.safetensors";
/// The manifest's `format` field.
pub const ADAPTER_FORMAT: &str = "tch-patch-adapter";
/// The manifest format version this library writes and reads.
pub const ADAPTER_FORMAT_VERSION: u64 = 1;
/// The version of this library, written in manifests.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

const TOP_FIELDS: [&str; 6] = [
    "format",
    "format_version",
    "library",
    "library_version",
    "patches",
    "save_id",
];
/// The key of the save id in `adapter.safetensors`' metadata (the manifest's `save_id`).
pub(crate) const SAVE_ID_KEY: &str = "tch_patch_save_id";
const PATCH_FIELDS: [&str; 5] = ["path", "patch", "targets", "args", "tensors"];
const TENSOR_FIELDS: [&str; 3] = ["name", "shape", "dtype"];

/// A manifest as read. A field with a problem is `None` (the problem is recorded).
pub(crate) struct ManifestIn {
    pub library_version: Option<String>,
    pub save_id: Option<String>,
    pub patches: Vec<PatchIn>,
}

/// One entry of `patches`.
pub(crate) struct PatchIn {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub targets: Option<String>,
    pub args: Option<Vec<(String, Value)>>,
    pub tensors: Vec<TensorIn>,
}

/// One tensor of an entry.
pub(crate) struct TensorIn {
    pub name: Option<String>,
    pub shape: Option<Vec<i64>>,
    /// A dtype name this library knows (`F32`).
    pub dtype: Option<String>,
}

/// Reads a manifest, recording every problem. `None` when the rest cannot be read: not
/// JSON, not an object, another format or an unknown format version.
pub(crate) fn read_manifest(
    bytes: &[u8],
    problems: &mut Vec<AdapterProblem>,
) -> Option<ManifestIn> {
    let value = match json::parse(MANIFEST_FILE, bytes) {
        Ok(value) => value,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut reader = Reader::new(MANIFEST_FILE, problems);
    let before = reader.count();
    let top = reader.object("(top level)", &value)?;
    if let Some(format) = reader.string(top, "", "format") {
        if format != ADAPTER_FORMAT {
            reader.problem(
                "format",
                format!("is {format:?}, expected {ADAPTER_FORMAT:?}"),
            );
        }
    }
    if let Some(version) = reader.unsigned(top, "", "format_version") {
        if version != ADAPTER_FORMAT_VERSION {
            reader.push(AdapterProblem::FormatVersion {
                file: MANIFEST_FILE.into(),
                found: version,
                supported: ADAPTER_FORMAT_VERSION,
            });
        }
    }
    if reader.count() > before {
        // Another format or version: its other fields may mean something else.
        return None;
    }
    reader.deny_unknown(top, "", &TOP_FIELDS);
    reader.optional_string(top, "", "library");
    let library_version = reader.string(top, "", "library_version").map(str::to_owned);
    let save_id = reader
        .optional_string(top, "", "save_id")
        .map(str::to_owned);
    let patches = reader
        .array(top, "", "patches")
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(index, value)| read_patch(&mut reader, &format!("patches[{index}]"), value))
        .collect();
    Some(ManifestIn {
        library_version,
        save_id,
        patches,
    })
}

fn read_patch(reader: &mut Reader<'_>, at: &str, value: &serde_json::Value) -> Option<PatchIn> {
    let object = reader.object(at, value)?;
    reader.deny_unknown(object, at, &PATCH_FIELDS);
    let path = reader.string(object, at, "path").map(str::to_owned);
    let patch = reader.string(object, at, "patch").map(str::to_owned);
    let targets = reader
        .optional_string(object, at, "targets")
        .map(str::to_owned);
    let args = reader
        .required(object, at, "args")
        .and_then(|args| read_args(reader, &json::join(at, "args"), args));
    let tensors = reader
        .array(object, at, "tensors")
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(index, value)| read_tensor(reader, &format!("{at}.tensors[{index}]"), value))
        .collect();
    Some(PatchIn {
        path,
        patch,
        targets,
        args,
        tensors,
    })
}

fn read_args(
    reader: &mut Reader<'_>,
    at: &str,
    value: &serde_json::Value,
) -> Option<Vec<(String, Value)>> {
    let object = reader.object(at, value)?;
    let mut args = Vec::with_capacity(object.len());
    let mut valid = true;
    for (name, json_value) in object {
        match json_to_value(json_value) {
            Some(value) => args.push((name.clone(), value)),
            None => {
                reader.problem(
                    &json::join(at, name),
                    format!(
                        "must be a number, a boolean, a string or an array of them, found {}",
                        json::describe(json_value)
                    ),
                );
                valid = false;
            }
        }
    }
    valid.then_some(args)
}

fn read_tensor(reader: &mut Reader<'_>, at: &str, value: &serde_json::Value) -> Option<TensorIn> {
    let object = reader.object(at, value)?;
    reader.deny_unknown(object, at, &TENSOR_FIELDS);
    let name = reader.string(object, at, "name").map(str::to_owned);
    let shape = reader.array(object, at, "shape").and_then(|dims| {
        let field = json::join(at, "shape");
        let dims: Vec<Option<i64>> = dims
            .iter()
            .map(|dim| {
                let dim = reader.as_unsigned(&field, dim)?;
                let fits = i64::try_from(dim).ok();
                if fits.is_none() {
                    reader.problem(
                        &field,
                        format!(
                            "holds the dimension {dim}, more than the largest, {}",
                            i64::MAX
                        ),
                    );
                }
                fits
            })
            .collect();
        dims.into_iter().collect::<Option<Vec<i64>>>()
    });
    let dtype = reader.string(object, at, "dtype").and_then(|dtype| {
        if kind_of_name(dtype).is_some() {
            Some(dtype.to_owned())
        } else {
            reader.problem(
                &json::join(at, "dtype"),
                format!(
                    "is {dtype:?}, which is not a dtype this library reads \
                     (BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64)"
                ),
            );
            None
        }
    });
    Some(TensorIn { name, shape, dtype })
}

#[cfg(test)]
mod tests {
    use super::read_manifest;

    /// A manifest of one `bias_only` patch at `fc` whose tensor has shape `shape`.
    fn with_shape(shape: &str) -> String {
        format!(
            r#"{{"format":"tch-patch-adapter","format_version":1,"library_version":"0","patches":[
            {{"path":"fc","patch":"bias_only","args":{{}},"tensors":[
            {{"name":"fc.bias_delta","shape":{shape},"dtype":"F32"}}]}}]}}"#
        )
    }

    #[test]
    fn a_dimension_past_i64_max_is_a_problem_not_a_missing_shape() {
        let mut problems = Vec::new();
        let manifest = read_manifest(
            with_shape("[4, 9223372036854775807]").as_bytes(),
            &mut problems,
        );
        assert!(problems.is_empty());
        let shape = manifest.unwrap().patches[0].tensors[0].shape.clone();
        assert_eq!(shape, Some(vec![4, i64::MAX]));

        let manifest = read_manifest(
            with_shape("[9223372036854775808]").as_bytes(),
            &mut problems,
        );
        assert_eq!(manifest.unwrap().patches[0].tensors[0].shape, None);
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "`adapter.json`: field `patches[0].tensors[0].shape` holds the dimension \
              9223372036854775808, more than the largest, 9223372036854775807"
            ]
        );
    }
}
