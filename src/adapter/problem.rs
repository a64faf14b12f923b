//! One problem found in adapter files or adapter data. [`AdapterError`](crate::adapter::AdapterError)
//! collects every problem of one read, save or apply.
use crate::error::PatchError;
use crate::names::shape_text;
use thiserror::Error;

/// One problem with an adapter (this library's files, PEFT's, or entries given to be
/// saved or applied). Each names the file, field, patched path or tensor it is about.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdapterProblem {
    /// A file could not be read (missing, unreadable) or is not a valid safetensors file.
    #[error("cannot read `{file}`: {message}")]
    Read {
        /// The file, as named in the folder (`adapter.json`).
        file: String,
        /// What the system or the safetensors reader reported.
        message: String,
    },
    /// A JSON file is not well-formed JSON.
    #[error("`{file}` is not valid JSON: {message} at line {line}, column {column}")]
    Json {
        /// The file.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the JSON parser reported.
        message: String,
    },
    /// A field of a JSON file is missing, of the wrong type, unknown or out of range.
    #[error("`{file}`: field `{field}` {message}")]
    Field {
        /// The file.
        file: String,
        /// The field, as a path: `patches[1].tensors[0].shape`.
        field: String,
        /// What is wrong with it: "is missing", "must be a string, found the number 3".
        message: String,
    },
    /// The manifest's format version is not one this library reads.
    #[error(
        "`{file}`: format version {found} is not supported; this library reads version {supported}"
    )]
    FormatVersion {
        /// The file.
        file: String,
        /// The version found.
        found: u64,
        /// The version this library reads and writes.
        supported: u64,
    },
    /// `adapter.json` and `adapter.safetensors` were written by two different saves: a
    /// save was interrupted between its two files (each is written atomically, the pair
    /// cannot be), so the manifest may describe other values than the tensors hold.
    #[error(
        "`{manifest}` and `{tensors}` come from two different saves (save ids {manifest_id} and {tensors_id}): a save was interrupted between its two files; save the adapter again"
    )]
    MixedSaves {
        /// The manifest file.
        manifest: String,
        /// The tensors file.
        tensors: String,
        /// The manifest's save id.
        manifest_id: String,
        /// The tensors file's save id.
        tensors_id: String,
    },
    /// A patched path is not a dotted module path (`blocks.0.attn.q`).
    #[error("patched path `{path}` is not a dotted module path: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why: "it is empty", "segment 2 is empty".
        reason: String,
    },
    /// The same patched path is given twice.
    #[error("patched path `{path}` is given more than once")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// The registry rejects the patch at a path: an unknown patch name (with the
    /// registered ones), a missing, mistyped or out-of-range argument.
    #[error("patch at `{path}`: {error}")]
    InvalidPatch {
        /// The patched path.
        path: String,
        /// The registry's error, e.g. a
        /// [`PatchStringError::UnknownPatch`](crate::registry::PatchStringError::UnknownPatch).
        error: Box<PatchError>,
    },
    /// A patch's `targets` glob does not select its own patched path (the manifest was
    /// edited, or an entry was built with another spec's targets).
    #[error("patch at `{path}`: its targets {targets:?} do not select its patched path")]
    TargetsMismatch {
        /// The patched path.
        path: String,
        /// The glob given as the patch's targets.
        targets: String,
    },
    /// An operation for LoRA adapters met another patch.
    #[error("patch at `{path}` is \"{patch}\", but only \"lora\" patches can be {operation}")]
    NotLora {
        /// The patched path.
        path: String,
        /// The patch's name.
        patch: String,
        /// What was being done: "written in PEFT's layout", "applied by apply_lora_adapter".
        operation: &'static str,
    },
    /// A tensor that must be in the tensors file is not.
    #[error("tensor `{name}` is missing from `{file}`: {reason}")]
    MissingTensor {
        /// The tensor's full name or key (`blocks.0.attn.q.lora_a`).
        name: String,
        /// The tensors file.
        file: String,
        /// Why it must be there: "the manifest lists it".
        reason: String,
    },
    /// The tensors file holds a tensor that nothing expects.
    #[error("tensor `{name}` in `{file}` is not expected: {reason}")]
    UnexpectedTensor {
        /// The key in the file.
        name: String,
        /// The tensors file.
        file: String,
        /// Why it is not expected: "the manifest does not list it".
        reason: String,
    },
    /// A tensor's shape is not the one its description (the manifest, the module, the
    /// LoRA rank) requires.
    #[error("tensor `{name}` has shape {}, expected {expected}", shape_text(found))]
    Shape {
        /// The tensor's full name.
        name: String,
        /// The shape found.
        found: Vec<i64>,
        /// The shape required, e.g. `[4, 16] (from the manifest)`.
        expected: String,
    },
    /// A tensor's dtype is not the one its description requires.
    #[error("tensor `{name}` has dtype {found}, expected {expected}")]
    Dtype {
        /// The tensor's full name.
        name: String,
        /// The dtype found (safetensors' name: `F32`, `BF16`...).
        found: String,
        /// The dtype required.
        expected: String,
    },
    /// Any other problem with one tensor: undefined, a dtype safetensors cannot hold, a
    /// name given twice or not under its patch's path.
    #[error("tensor `{name}` {message}")]
    Tensor {
        /// The tensor's full name.
        name: String,
        /// What is wrong, from a verb: "is an undefined tensor".
        message: String,
    },
    /// A module an adapter patches was not given (applying an adapter).
    #[error("no module was given for patched path `{path}`")]
    MissingModule {
        /// The patched path.
        path: String,
    },
}
