//! Loading safetensors checkpoints into a module by its tensor names (`load_state_dict`,
//! `Tensor.module_load`, `assign=True`, `mmap=True`): every key, shape and dtype checked
//! from the file's header before anything is written, then each tensor read on its own,
//! straight into the module's tensor, so a load costs the model plus about one tensor.
//!
//! - [`load_safetensors`] and [`load_sharded`] stream: nothing but the header is read
//!   before the checks pass; then each tensor goes from the file into its destination.
//! - [`load_safetensors_with`] passes each tensor through a hook (cast, quantize, check).
//! - [`LoadMode`] says what a load does with the module's tensors: copy into them (the
//!   default), give them the file's tensors (`assign`), or give them views of the file's
//!   pages (`Map`).
//! - [`Skeleton`] builds a model whose tensors are allocated but never initialized, for a
//!   load to fill.
use crate::params::Parameters;
use std::path::Path;
use tch::Tensor;

mod checkpoint;
mod engine;
mod error;
mod shards;
mod skeleton;
pub use error::LoadError;
pub use skeleton::{embedding, layer_norm, linear, var, Fill, Skeleton};

use checkpoint::Checkpoint;

/// What a load does with the module's tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// The file's values are copied into the module's tensors in place (`copy_`): shapes
    /// and dtypes must be the module's (see [`LoadOptions::convert_dtype`]). Peak memory is
    /// the model plus at most one tensor (the one being converted); none when the dtypes
    /// agree, as each tensor is read straight into the module's memory.
    #[default]
    Copy,
    /// PyTorch's `load_state_dict(assign=True)`: each module tensor is given the file's
    /// tensor as its data (`set_data`, the same tensor object, so the VarStore and an
    /// optimizer keep it), shape and dtype as in the file. The module's old storage is
    /// freed once the load has succeeded (nothing else holding it): onto a [`Skeleton`],
    /// whose storage was never touched, a load costs the file's tensors alone. A failure
    /// part-way takes every change back.
    Assign,
    /// [`Assign`](Self::Assign) with views of the file's pages instead of copies (PyTorch's
    /// `torch.load(mmap=True)`, safetensors' `safe_open`): nothing is read until touched,
    /// and untouched pages cost no memory of the process's own. For read-only serving.
    ///
    /// The mapping is safe by construction: it is made by libtorch's `from_file` and owned
    /// by the tensors' storage, so it lives exactly as long as a tensor uses it (there is
    /// no handle to drop too early), and it is private (copy-on-write): writing to a
    /// tensor never reaches the file. The one hazard is the file's, as for every mapped
    /// file: truncating it while it is mapped makes the next read of a lost page a
    /// `SIGBUS`; replace checkpoints by renaming a new file over them, never in place.
    /// A module tensor on another device than the CPU is refused; a tensor whose bytes
    /// are not aligned for its dtype in the file, or that is converted, is read instead
    /// ([`LoadReport::mapped`] lists those that are mapped).
    Map,
}

/// What a load hook gives back for one file tensor: the value of the module's tensor of
/// the same name (a [`Tensor`]), or values for several of the module's tensors by name
/// (`Vec<(String, Tensor)>`, e.g. a weight quantized into an int8 `weight` and its
/// `weight_scale`, as [`Int8Linear::load_hook`](crate::patches::Int8Linear::load_hook) does).
#[derive(Debug)]
pub struct HookOutput(Vec<(Option<String>, Tensor)>);

impl From<Tensor> for HookOutput {
    fn from(value: Tensor) -> Self {
        HookOutput(vec![(None, value)])
    }
}

impl From<Vec<(String, Tensor)>> for HookOutput {
    fn from(values: Vec<(String, Tensor)>) -> Self {
        HookOutput(values.into_iter().map(|(n, t)| (Some(n), t)).collect())
    }
}

/// What a load accepts: where the module's tensors are in the file, and whether keys may be
/// missing or left over. The default is strict and unprefixed.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    prefix: String,
    allow_missing: bool,
    allow_unexpected: bool,
    reject_non_finite: bool,
    convert_dtype: bool,
    mode: LoadMode,
}

impl LoadOptions {
    /// Strict, unprefixed: the file's keys are exactly the module's tensor names.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the module's tensors under `prefix` (`fc` reads `fc.weight` into `weight`):
    /// the path the module has in a bigger model. Keys outside the prefix are ignored.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether a tensor of the module may be absent from the file (it keeps its value).
    pub fn allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// Whether the file may hold keys (under the prefix) that the module does not have
    /// (they are skipped).
    pub fn allow_unexpected(mut self, allow: bool) -> Self {
        self.allow_unexpected = allow;
        self
    }

    /// Whether a floating-point value holding NaN or an infinity is refused
    /// ([`TensorProblem::NonFinite`](crate::params::TensorProblem::NonFinite), checked on what the hook returns, before anything is
    /// written). Off by default, as in PyTorch; turn it on for a patch or a model that must
    /// never see a non-finite weight (a checkpoint saved after a diverged step).
    pub fn reject_non_finite(mut self, reject: bool) -> Self {
        self.reject_non_finite = reject;
        self
    }

    /// Whether a file tensor of one floating dtype may be loaded into a module tensor of
    /// another (converted on the way, one tensor at a time). Off by default: a dtype that
    /// is not the module's is an error ([`TensorProblem::Kind`](crate::params::TensorProblem::Kind)),
    /// never a silent cast. Integer and bool tensors are never converted.
    pub fn convert_dtype(mut self, convert: bool) -> Self {
        self.convert_dtype = convert;
        self
    }

    /// What the load does with the module's tensors: copy into them (the default), assign
    /// the file's tensors, or map the file ([`LoadMode`]).
    pub fn mode(mut self, mode: LoadMode) -> Self {
        self.mode = mode;
        self
    }

    /// The module name of a file key, if it is under the prefix.
    fn module_name<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('.')
    }
}

/// What a successful load did, by the module's tensor names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors written, in the module's order.
    pub loaded: Vec<String>,
    /// Tensors of the module with no key in the file (only with `allow_missing`).
    pub missing: Vec<String>,
    /// File keys under the prefix that the module has no tensor for (only with
    /// `allow_unexpected`), as they are in the file.
    pub unexpected: Vec<String>,
    /// Tensors backed by the file's pages ([`LoadMode::Map`] only), in the order written.
    pub mapped: Vec<String>,
}

/// Loads a safetensors file into `module`, streaming: the header is read and every key,
/// shape and dtype checked against the module (as [`load_safetensors_with`] checks them),
/// and only then is each tensor read, on its own, straight into the module's tensor (or
/// given to it, as [`LoadOptions::mode`] says). Peak memory is the model plus at most one
/// tensor. On a check's failure nothing has changed; see [`LoadError::Interrupted`] for a
/// file that fails while being read.
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::{load::load_safetensors, load::LoadOptions};
///
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-load-{}.safetensors", std::process::id()));
/// let vs = nn::VarStore::new(Device::Cpu);
/// let source = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// vs.save(&path).unwrap(); // keys `fc.weight`, `fc.bias`
///
/// let other = nn::VarStore::new(Device::Cpu);
/// let mut linear = nn::linear(other.root(), 3, 2, Default::default());
/// let report = load_safetensors(&mut linear, &path, &LoadOptions::new().prefix("fc"))?;
/// assert_eq!(report.loaded, ["weight", "bias"]);
/// assert!(linear.ws.equal(&source.ws));
/// assert!(load_safetensors(&mut linear, &path, &LoadOptions::new()).is_err()); // no prefix
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_safetensors<M, P>(
    module: &mut M,
    path: P,
    options: &LoadOptions,
) -> Result<LoadReport, LoadError>
where
    M: Parameters + ?Sized,
    P: AsRef<Path>,
{
    let path = path.as_ref();
    let checkpoint = Checkpoint::open(path)?;
    engine::load(module, &[checkpoint], path, options, None)
}

/// Loads a sharded checkpoint, given its index (`model.safetensors.index.json`, whose
/// `weight_map` places each key in a shard file of the index's folder), as
/// [`load_safetensors`] loads one file: every shard's header is read and checked against
/// the index and the module first, then the tensors are streamed shard by shard. An index
/// naming a file that is not there, a shard holding a key the index places elsewhere (or
/// lacking one it places there) is [`LoadError::Index`]; nothing has changed then.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::load::{load_sharded, LoadOptions};
///
/// let dir = std::env::temp_dir().join(format!("tch-patch-doc-shards-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let vs = nn::VarStore::new(Device::Cpu);
/// let source = nn::linear(vs.root(), 3, 2, Default::default());
/// tch::Tensor::write_safetensors(&[("weight", &source.ws)], dir.join("a.safetensors")).unwrap();
/// tch::Tensor::write_safetensors(&[("bias", source.bs.as_ref().unwrap())], dir.join("b.safetensors")).unwrap();
/// let index = r#"{"weight_map": {"weight": "a.safetensors", "bias": "b.safetensors"}}"#;
/// std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
///
/// let other = nn::VarStore::new(Device::Cpu);
/// let mut linear = nn::linear(other.root(), 3, 2, Default::default());
/// load_sharded(&mut linear, dir.join("model.safetensors.index.json"), &LoadOptions::new())?;
/// assert!(linear.ws.equal(&source.ws));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), tch_patch::load::LoadError>(())
/// ```
pub fn load_sharded<M, P>(
    module: &mut M,
    index: P,
    options: &LoadOptions,
) -> Result<LoadReport, LoadError>
where
    M: Parameters + ?Sized,
    P: AsRef<Path>,
{
    let index = index.as_ref();
    let checkpoints = shards::open_shards(index)?;
    engine::load(module, &checkpoints, index, options, None)
}

/// Loads a safetensors file into `module`, each tensor passed through
/// `hook(name, tensor)` first, where `name` is the module's name for it (without the
/// prefix): cast it, quantize it, move it, check it. This is PyTorch's `module_load`
/// extension point of `load_state_dict`. The hook returns the value for `name` (a
/// `Tensor`) or values for several of the module's tensors ([`HookOutput`]): a weight
/// turned into an int8 weight and its scales. With [`LoadMode::Assign`] they become the
/// module's tensors whatever their shape and dtype: a representation change.
///
/// The file's tensors are read one at a time, but every hook output is kept until all
/// are checked, so that a load is all or nothing: with [`LoadMode::Copy`] the peak is
/// the model plus every output; with `Assign` the outputs become the module's tensors
/// and a [`Skeleton`]'s untouched storage costs nothing, so the peak is about the model.
///
/// Everything is checked before anything is written, and every problem is reported at once
/// in [`LoadError::InvalidTensors`]: a tensor of the module the file lacks, a key the
/// module lacks, a hook that failed, and a hook output whose shape or dtype is not the
/// module tensor's. Then, under `no_grad`, each value is copied into the module's tensor
/// in place (`copy_`), so the tensor objects stay the same: the VarStore and optimizers
/// keep them. On any error no tensor has changed. Tied tensors take one value: one of their
/// names in the file is enough, and two names with unequal values are an error.
///
/// With [`LoadOptions::reject_non_finite`], a value holding NaN or an infinity is a
/// [`TensorProblem::NonFinite`](crate::params::TensorProblem::NonFinite) too.
///
/// A missing, unreadable, truncated or malformed file is [`LoadError::Read`],
/// which names the path.
///
/// ```
/// use tch::{nn, Device, Kind, Tensor};
/// use tch_patch::{load::load_safetensors_with, load::LoadOptions, PatchError};
///
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-hook-{}.safetensors", std::process::id()));
/// let w = Tensor::from_slice(&[0.12f64, 0.26, -0.51, 0.49]).view([2, 2]);
/// Tensor::write_safetensors(&[("weight", &w)], &path).unwrap();
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut linear = nn::linear(vs.root(), 2, 2, nn::LinearConfig { bias: false, ..Default::default() });
/// // The file holds float64; quantize to steps of 0.25 and cast to the module's float32.
/// load_safetensors_with(&mut linear, &path, &LoadOptions::new(), |_name, t| {
///     let q = (t * 4.0).round() / 4.0;
///     q.f_to_kind(Kind::Float).map_err(PatchError::torch("casting"))
/// })?;
/// let expected = Tensor::from_slice(&[0.0f32, 0.25, -0.5, 0.5]).view([2, 2]);
/// assert!(linear.ws.equal(&expected));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_safetensors_with<M, P, H, O>(
    module: &mut M,
    path: P,
    options: &LoadOptions,
    mut hook: H,
) -> Result<LoadReport, LoadError>
where
    M: Parameters + ?Sized,
    P: AsRef<Path>,
    H: FnMut(&str, Tensor) -> crate::Result<O>,
    O: Into<HookOutput>,
{
    let path = path.as_ref();
    let checkpoint = Checkpoint::open(path)?;
    let mut hook = |name: &str, tensor: Tensor| hook(name, tensor).map(Into::into);
    engine::load(module, &[checkpoint], path, options, Some(&mut hook))
}
