//! What can go wrong reading a model folder or building a model from it. Every error is
//! returned before the model exists or before any of its tensors is written.
use std::path::PathBuf;

/// An error of this crate; each names the file and the field or key that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the JSON it should be.
    #[error("{} is not valid JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde_json's message.
        message: String,
    },
    /// A field the architecture needs is absent.
    #[error("{}: field `{field}` is missing", path.display())]
    MissingField {
        /// The config file.
        path: PathBuf,
        /// The field (dotted inside a nested object).
        field: String,
    },
    /// A field holds a value of the wrong type or range.
    #[error("{}: field `{field}` must be {expected}, found {found}", path.display())]
    InvalidField {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What it must be.
        expected: String,
        /// What it is, as JSON.
        found: String,
    },
    /// A field holds a value this crate does not implement (another activation, a RoPE
    /// type, a non-zero dropout...).
    #[error("{}: `{field}` = {value} is not supported (supported: {supported})", path.display())]
    UnsupportedField {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// Its value.
        value: String,
        /// What is.
        supported: String,
    },
    /// Fields this crate does not know: it refuses them rather than ignore what they mean.
    #[error("{}: unknown field(s) {}; known fields: {}", path.display(), fields.join(", "), known.join(", "))]
    UnknownFields {
        /// The config file.
        path: PathBuf,
        /// The unknown fields.
        fields: Vec<String>,
        /// Every field the architecture reads or accepts.
        known: Vec<String>,
    },
    /// The folder holds no checkpoint this crate reads.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Loading the checkpoint's tensors failed (every problem listed; nothing was written).
    #[error(transparent)]
    Load(#[from] tch_patch::load::LoadError),
    /// Writing the model's tensors failed (a tensor safetensors cannot hold, or the file
    /// system); the folder's earlier files were left as they were.
    #[error(transparent)]
    Save(#[from] tch_patch::PatchError),
}
