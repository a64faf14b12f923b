//! The one error type of the runtime. Every variant names what was wrong.
use crate::adapter::problem::{list_adapter_problems, AdapterProblem};
use crate::names::{device_name, kind_name, shape_text};
use thiserror::Error;

/// What went wrong in a tch-patch operation. Nothing was changed when one is returned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PatchError {
    /// A patch tried to register a tensor under a name the VarStore already holds.
    #[error("cannot register `{name}`: the VarStore already holds a variable named `{name}`")]
    NameTaken {
        /// The full VarStore name, e.g. `emb.delta`.
        name: String,
    },
    /// An index (a token id, a row) is outside the tensor it indexes.
    #[error("{what} {index} is out of range for {len} rows")]
    IndexOutOfRange {
        /// What the index is, e.g. "trainable token id".
        what: &'static str,
        /// The offending index.
        index: i64,
        /// The number of valid rows.
        len: i64,
    },
    /// The same index was given twice where each must be unique.
    #[error("{what} {index} is given more than once")]
    DuplicateIndex {
        /// What the index is.
        what: &'static str,
        /// The repeated index.
        index: i64,
    },
    /// A list that must not be empty was empty.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A tensor had a shape other than the one required.
    #[error("`{name}` has shape {}, expected {expected}", shape_text(actual))]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape found.
        actual: Vec<i64>,
        /// The shape required, in words (e.g. "[n, 64]").
        expected: String,
    },
    /// A tensor had a kind (dtype) other than the one required.
    #[error("`{name}` has dtype {}, expected {expected}", kind_name(*actual))]
    KindMismatch {
        /// The tensor's name.
        name: String,
        /// The kind found.
        actual: tch::Kind,
        /// The kind required, in words.
        expected: String,
    },
    /// A name that is not one of the module's tensors.
    #[error(
        "`{name}` is not a tensor of this module; its tensors are: {}",
        list_names(known)
    )]
    UnknownTensor {
        /// The name asked for.
        name: String,
        /// Every tensor name of the module, in visiting order.
        known: Vec<String>,
    },
    /// One or more tensors given for a module did not fit it. Every problem is listed;
    /// nothing was changed.
    #[error("{operation}: {} problem(s): {}", problems.len(), list_problems(problems))]
    InvalidTensors {
        /// What was being done, e.g. "functional_call" or "load `model.safetensors`".
        operation: String,
        /// Every problem found, in the order found.
        problems: Vec<TensorProblem>,
    },
    /// A checkpoint file could not be read: missing, unreadable, truncated or malformed.
    #[error("cannot read checkpoint `{}`: {source}", path.display())]
    ReadCheckpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What tch or safetensors reported.
        #[source]
        source: tch::TchError,
    },
    /// A name was asked for that has no parametrization.
    #[error(
        "`{name}` is not parametrized; the parametrized tensors are: {}",
        list_names(parametrized)
    )]
    NotParametrized {
        /// The name asked for.
        name: String,
        /// The names that are parametrized.
        parametrized: Vec<String>,
    },
    /// A pruning sparsity outside `[0, 1)`.
    #[error("sparsity {sparsity} is outside [0, 1): it is the fraction of entries set to zero")]
    SparsityOutOfRange {
        /// The sparsity given.
        sparsity: f64,
    },
    /// A dimension index outside the tensor it indexes.
    #[error("{what} {axis} is out of range for `{name}`, which has {ndim} dimensions")]
    AxisOutOfRange {
        /// What the index is, e.g. "per-channel quantization axis".
        what: &'static str,
        /// The index given (negative counts from the end).
        axis: i64,
        /// The tensor's name.
        name: String,
        /// The tensor's number of dimensions.
        ndim: usize,
    },
    /// A transform gave a tensor of another shape, kind or device than its input.
    #[error(
        "transform `{transform}` on `{name}` gives {actual}, but must keep its input's {expected}"
    )]
    TransformChangedTensor {
        /// The transform's name.
        transform: String,
        /// The parametrized tensor's name.
        name: String,
        /// The input's shape, kind and device.
        expected: String,
        /// The output's shape, kind and device.
        actual: String,
    },
    /// A value was assigned through a transform that has no right inverse.
    #[error(
        "transform `{transform}` has no right inverse, so no value can be assigned through it"
    )]
    NoRightInverse {
        /// The transform's name.
        transform: String,
    },
    /// A transform with a trainable tensor was added without a VarStore to register it in.
    #[error("transform `{transform}` adds the trainable tensor `{tensor}`: add it with `push_registered` so that an optimizer built from the VarStore trains it")]
    NeedsVarStore {
        /// The transform's name.
        transform: String,
        /// The tensor's full name, e.g. `weight_g`.
        tensor: String,
    },
    /// The linked libtorch does not lay out tensor handles as this library expects.
    #[error("the linked libtorch does not support {what}")]
    UnsupportedLibtorch {
        /// The operation that is not supported.
        what: &'static str,
    },
    /// An operation that needs another merge state of a LoRA adapter.
    #[error("{message}")]
    MergeState {
        /// What was attempted and why it cannot be done now.
        message: String,
    },
    /// A slot holds no patch, so there is nothing to unpatch.
    #[error("{slot} holds no patch: nothing to unpatch")]
    NotPatched {
        /// The slot: its path, or its type when the path is unknown.
        slot: String,
    },
    /// A path glob could not be parsed.
    #[error("bad glob `{pattern}` at character {position}: {reason}")]
    BadGlob {
        /// The glob as given.
        pattern: String,
        /// Where the problem is (0-based character index).
        position: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A path regex could not be parsed.
    #[error("bad regex `{pattern}`: {reason}")]
    BadRegex {
        /// The regex as given.
        pattern: String,
        /// What the regex crate reported.
        reason: String,
    },
    /// A rule's selector matched no slot of the rule's layer type. The nearest paths are
    /// listed, so a typo shows at once (PEFT's silent zero-match).
    #[error(
        "{}",
        no_match_message(rule, selector, slot_type, nearest, other_types)
    )]
    NoMatch {
        /// The rule's patch name.
        rule: String,
        /// The selector, as written.
        selector: String,
        /// The short name of the layer type the rule patches (e.g. `Linear`).
        slot_type: String,
        /// Slot paths of that type nearest to the selector, nearest first (at most 5).
        nearest: Vec<String>,
        /// Paths the selector does match whose slots hold another layer type, with that type.
        other_types: Vec<(String, String)>,
    },
    /// A patch string's `targets` pick a slot of a layer type the patch cannot wrap (it was
    /// registered for other types). Found before any slot is changed.
    #[error(
        "patch `{patch}` cannot wrap `{path}`, a `{slot_type}` slot: it patches only `{}` \
         slots; narrow `targets` to leave `{path}` out",
        accepted.join("`, `")
    )]
    UnpatchableSlot {
        /// The patch's name.
        patch: String,
        /// The slot's path.
        path: String,
        /// The short name of the slot's layer type (e.g. `Embedding`).
        slot_type: String,
        /// The short names of the layer types the patch wraps, as registered.
        accepted: Vec<String>,
    },
    /// A registered patch that patch strings can name but not apply: its config declares
    /// no patch type to build.
    #[error(
        "patch \"{patch}\" can be parsed but not applied to a model: its config names no patch \
         type to build (give it `#[patch_args(patch = YourPatch)]`)"
    )]
    NotApplicable {
        /// The patch's name.
        patch: String,
    },
    /// A slot already holds the patch a rule would add; stacking it twice must be asked
    /// for (`Rule::allow_stacking`).
    #[error(
        "`{path}` is already patched with `{patch}`; patching it again would stack a second \
         `{patch}` (call `allow_stacking()` on the rule if that is what you want)"
    )]
    AlreadyPatched {
        /// The slot's path.
        path: String,
        /// The patch's name.
        patch: String,
    },
    /// A rule would patch one side of a tied tensor (one tensor under two paths) only.
    #[error(
        "`{path}` shares its tensor `{tensor}` with `{tied_to}`, which {reason}; \
         say how to treat the tie: `tie(TiePolicy::PatchAll)` patches every slot sharing it, \
         `tie(TiePolicy::Allow)` patches this side only (the tensor stays shared)"
    )]
    TiedWeights {
        /// The slot the rule matched.
        path: String,
        /// The tied tensor's name under that slot.
        tensor: String,
        /// The same tensor's name elsewhere in the model.
        tied_to: String,
        /// Why the other side is not patched too.
        reason: String,
    },
    /// A rule's patch failed on one slot; every slot the rule had patched before it was
    /// unpatched again, so the model is as it was.
    #[error("rule `{rule}` failed at `{path}` (the model is unchanged): {source}")]
    PatchFailed {
        /// The rule's patch name.
        rule: String,
        /// The slot where it failed.
        path: String,
        /// The patch's own error.
        #[source]
        source: Box<PatchError>,
    },
    /// A rule's closure produced a content whose outermost patch is not the rule's patch.
    #[error(
        "rule `{rule}` wrapped `{path}` in {}, not in `{rule}`; the rule's name must be the \
         `NAME` of the patch its closure applies",
        produced.map(|name| format!("`{name}`")).unwrap_or_else(|| "no patch".into())
    )]
    WrongPatchName {
        /// The rule's patch name.
        rule: String,
        /// The slot.
        path: String,
        /// The outermost patch name found instead.
        produced: Option<&'static str>,
    },
    /// A rule's closure did not keep what it was given under its patch (it peeled it or
    /// swapped the layer's tensors), so that slot could not be restored.
    #[error(
        "rule `{rule}` at `{path}`: the patch closure must return the content it is given \
         (the same patches over the same layer) wrapped in its patch; it returned something \
         else, so `{path}` could not be restored (every other slot was)"
    )]
    NotWrapped {
        /// The rule's patch name.
        rule: String,
        /// The slot.
        path: String,
    },
    /// No slot has this path.
    #[error("no slot at `{path}`; nearest slot paths: {}", list_names(nearest))]
    NoSuchSlot {
        /// The path asked for.
        path: String,
        /// The nearest slot paths, nearest first.
        nearest: Vec<String>,
    },
    /// The slot at a path holds another layer type than the one asked for.
    #[error("the slot at `{path}` holds `{actual}`, not `{expected}`")]
    WrongSlotType {
        /// The slot's path.
        path: String,
        /// The layer type asked for.
        expected: String,
        /// The layer type the slot holds.
        actual: String,
    },
    /// A name that cannot be a VarStore variable name (empty, or with a `.`, which tch uses
    /// to join path parts).
    #[error("`{name}` cannot be a variable name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An atomic save failed at one step. The target file is as it was before the save
    /// (for every step but [`SaveStep::SyncDir`](crate::save::SaveStep::SyncDir), where the new file is already in place
    /// but its rename may not survive a power loss), and no temporary file is left behind.
    #[error("cannot save `{}`: {step} failed: {source}", path.display())]
    Save {
        /// The file being saved.
        path: std::path::PathBuf,
        /// The step that failed.
        step: crate::save::SaveStep,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// Adapter files (this library's or PEFT's) or adapter entries are invalid: every
    /// problem found is listed. Nothing was written or changed.
    #[error("{operation}: {} problem(s): {}", problems.len(), list_adapter_problems(problems))]
    InvalidAdapter {
        /// What was being done: "read adapter `out/adapter`".
        operation: String,
        /// Every problem found, in the order found.
        problems: Vec<AdapterProblem>,
    },
    /// A file or folder could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    WriteFile {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
    /// A whole-module conversion ([`Mutable::to_kind`](crate::mutable::Mutable::to_kind)) asked
    /// for a dtype that is not floating point. Only a module's floating-point tensors are
    /// converted (integer and bool buffers keep their dtype), and only to a floating-point
    /// dtype: an integer one would drop their fractions, and a tensor that requires grad
    /// cannot hold it.
    #[error(
        "cannot convert the module's floating-point tensors to {}: ask for a floating-point \
         dtype (float16, bfloat16, float32, float64){}",
        kind_name(*kind),
        requiring_grad(requires_grad)
    )]
    NotFloatingKind {
        /// The dtype asked for.
        kind: tch::Kind,
        /// The module's tensors that require grad, which that dtype could not hold.
        requires_grad: Vec<String>,
    },
    /// A device that this machine does not have (a CUDA index past the last GPU).
    #[error("device {} is not available: this machine has {cuda_devices} CUDA device(s)", device_name(*device))]
    UnavailableDevice {
        /// The device asked for.
        device: tch::Device,
        /// How many CUDA devices libtorch sees.
        cuda_devices: i64,
    },
    /// libtorch reported an error (through tch's `f_` methods).
    #[error("libtorch error while {context}: {source}")]
    Torch {
        /// What the library was doing.
        context: String,
        /// tch's error.
        #[source]
        source: tch::TchError,
    },
    /// A patch string, a patch's arguments or the registry of patches is invalid
    /// ([`PatchStringError`](crate::registry::PatchStringError)).
    #[error(transparent)]
    PatchString(#[from] crate::registry::PatchStringError),
}

/// One problem with one named tensor given for a module (an override of a functional call,
/// an entry of a checkpoint). [`PatchError::InvalidTensors`] collects them all.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TensorProblem {
    /// The module has this tensor but no value was given for it.
    #[error("`{name}` is missing")]
    Missing {
        /// The module's name for the tensor.
        name: String,
    },
    /// A value was given under a name the module does not have.
    #[error("`{name}` is not a tensor of the module")]
    Unexpected {
        /// The name given.
        name: String,
    },
    /// The same name was given twice.
    #[error("`{name}` is given more than once")]
    Duplicate {
        /// The name given twice.
        name: String,
    },
    /// The value is an undefined tensor (`Tensor::new()`).
    #[error("`{name}` is an undefined tensor")]
    Undefined {
        /// The tensor's name.
        name: String,
    },
    /// The value has another shape than the module's tensor.
    #[error(
        "`{name}` has shape {}, expected {}",
        shape_text(actual),
        shape_text(expected)
    )]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape given.
        actual: Vec<i64>,
        /// The module's shape.
        expected: Vec<i64>,
    },
    /// The value has another dtype than the module's tensor.
    #[error("`{name}` has dtype {}, expected {}", kind_name(*actual), kind_name(*expected))]
    Kind {
        /// The tensor's name.
        name: String,
        /// The dtype given.
        actual: tch::Kind,
        /// The module's dtype.
        expected: tch::Kind,
    },
    /// The value is on another device than the module's tensor.
    #[error("`{name}` is on {}, expected {}", device_name(*actual), device_name(*expected))]
    Device {
        /// The tensor's name.
        name: String,
        /// The device given.
        actual: tch::Device,
        /// The module's device.
        expected: tch::Device,
    },
    /// The module's tensor requires grad, so its new value must be floating point or complex.
    #[error(
        "`{name}` requires grad, so its dtype must be floating point or complex, not {}",
        kind_name(*kind)
    )]
    NotDifferentiable {
        /// The tensor's name.
        name: String,
        /// The dtype given.
        kind: tch::Kind,
    },
    /// Two names of one tied tensor were given different values.
    #[error("`{name}` and `{tied_to}` are one tied tensor but were given different values")]
    TiedConflict {
        /// The later name.
        name: String,
        /// The earlier name it is tied to.
        tied_to: String,
    },
    /// The value holds NaN or infinite entries where only finite ones are accepted
    /// ([`crate::load::LoadOptions::reject_non_finite`]).
    #[error("`{name}` has {count} non-finite (NaN or infinite) value(s)")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// How many entries are NaN or infinite.
        count: i64,
    },
    /// The module's tensor cannot be written in place: it is a view whose elements share
    /// memory (an `expand`ed tensor, a stride of 0), which libtorch refuses to copy into.
    #[error("`{name}` cannot be written in place: its elements share memory (an expanded view); give the module a contiguous tensor")]
    NotWritable {
        /// The tensor's name.
        name: String,
    },
    /// The tensor's dtype cannot be stored in a safetensors file.
    #[error("`{name}` has dtype {}, which safetensors cannot store", kind_name(*kind))]
    UnsupportedKind {
        /// The tensor's name.
        name: String,
        /// Its dtype.
        kind: tch::Kind,
    },
    /// The user's hook failed on this tensor.
    #[error("hook failed on `{name}`: {error}")]
    Hook {
        /// The tensor's name.
        name: String,
        /// What the hook returned.
        error: Box<PatchError>,
    },
}

impl TensorProblem {
    /// The name of the tensor the problem is about.
    pub fn name(&self) -> &str {
        match self {
            TensorProblem::Missing { name }
            | TensorProblem::Unexpected { name }
            | TensorProblem::Duplicate { name }
            | TensorProblem::Undefined { name }
            | TensorProblem::Shape { name, .. }
            | TensorProblem::Kind { name, .. }
            | TensorProblem::Device { name, .. }
            | TensorProblem::NotDifferentiable { name, .. }
            | TensorProblem::TiedConflict { name, .. }
            | TensorProblem::NonFinite { name, .. }
            | TensorProblem::UnsupportedKind { name, .. }
            | TensorProblem::NotWritable { name }
            | TensorProblem::Hook { name, .. } => name,
        }
    }
}

fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; of its tensors, `weight`, `bias` require grad` for a non-empty list.
fn requiring_grad(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    format!("; of its tensors, {} require grad", list_names(names))
}

fn no_match_message(
    rule: &str,
    selector: &str,
    slot_type: &str,
    nearest: &[String],
    other_types: &[(String, String)],
) -> String {
    let mut message = format!("rule `{rule}` matched no `{slot_type}` slot with {selector}");
    if !other_types.is_empty() {
        let others: Vec<String> = other_types
            .iter()
            .map(|(path, ty)| format!("`{path}` ({ty})"))
            .collect();
        message.push_str(&format!(
            "; it matches slots of other types: {}",
            others.join(", ")
        ));
    }
    if nearest.is_empty() {
        message.push_str(&format!("; the model has no `{slot_type}` slot"));
    } else {
        message.push_str(&format!(
            "; nearest `{slot_type}` slot paths: {}",
            list_names(nearest)
        ));
    }
    message
}

fn list_problems(problems: &[TensorProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PatchError {
    /// Wraps a tch error with what the library was doing when it happened.
    pub fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> PatchError {
        let context = context.into();
        move |source| PatchError::Torch { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PatchError> = std::result::Result<T, E>;
