//! `Tensor.module_load`: load a safetensors checkpoint into a module by its tensor names,
//! each tensor passing through a hook on the way in, every key, shape and dtype checked
//! before anything is written.
use crate::adapter::tensors;
use crate::error::TensorProblem;
use crate::params::Parameters;
use crate::tensor_fit::{fit_problems, has_internal_overlap, Fit};
use crate::tensor_plan::Planner;
use crate::tied::Agreement;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

mod error;
pub use error::LoadError;

/// What a load accepts: where the module's tensors are in the file, and whether keys may be
/// missing or left over. The default is strict and unprefixed.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    prefix: String,
    allow_missing: bool,
    allow_unexpected: bool,
    reject_non_finite: bool,
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
    /// ([`TensorProblem::NonFinite`], checked on what the hook returns, before anything is
    /// written). Off by default, as in PyTorch; turn it on for a patch or a model that must
    /// never see a non-finite weight (a checkpoint saved after a diverged step).
    pub fn reject_non_finite(mut self, reject: bool) -> Self {
        self.reject_non_finite = reject;
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
}

/// Loads a safetensors file into `module`, values copied in place: see
/// [`load_safetensors_with`], with no hook.
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
    load_safetensors_with(module, path, options, |_, tensor| Ok(tensor))
}

/// Loads a safetensors file into `module`, each tensor passed through
/// `hook(name, tensor)` first, where `name` is the module's name for it (without the
/// prefix): cast it, quantize it, move it, check it. This is PyTorch's `module_load`
/// extension point of `load_state_dict`.
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
/// [`TensorProblem::NonFinite`] too.
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
pub fn load_safetensors_with<M, P, H>(
    module: &mut M,
    path: P,
    options: &LoadOptions,
    mut hook: H,
) -> Result<LoadReport, LoadError>
where
    M: Parameters + ?Sized,
    P: AsRef<Path>,
    H: FnMut(&str, Tensor) -> crate::Result<Tensor>,
{
    let path = path.as_ref();
    let entries = read_checkpoint(path)?;
    // Module name -> (file key, tensor), for the keys under the prefix.
    let mut file: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    for (key, tensor) in entries {
        if let Some(name) = options.module_name(&key) {
            file.insert(name.to_owned(), (key.clone(), tensor));
        }
    }

    let mut planner = Planner::new(module, Agreement::EqualValues);
    let fit = Fit {
        kind: true,
        device: false,
    };
    for i in 0..planner.tensors().len() {
        let target = planner.tensors()[i].tensor.shallow_clone();
        let name = planner.tensors()[i].name.clone();
        let Some((_, tensor)) = file.remove(&name) else {
            continue;
        };
        planner.mark_given(i);
        let value = match hook(&name, tensor) {
            Ok(value) => value,
            Err(error) => {
                planner.reject([TensorProblem::Hook {
                    name,
                    error: Box::new(error),
                }]);
                continue;
            }
        };
        if has_internal_overlap(&target) {
            planner.reject([TensorProblem::NotWritable { name }]);
            continue;
        }
        let misfits = fit_problems(&name, &value, &target, fit);
        if !misfits.is_empty() {
            planner.reject(misfits);
            continue;
        }
        if options.reject_non_finite {
            let count = non_finite_count(&value)
                .map_err(LoadError::torch(format!("checking `{name}` for NaN")))?;
            if count > 0 {
                planner.reject([TensorProblem::NonFinite { name, count }]);
                continue;
            }
        }
        let value = value
            .f_to_device(target.device())
            .map_err(LoadError::torch(format!("moving `{name}`")))?;
        planner.accept(i, &name, &value);
    }
    let mut report = LoadReport::default();
    let not_given: Vec<String> = planner.not_given().map(|t| t.name.clone()).collect();
    if options.allow_missing {
        report.missing = not_given;
    } else {
        planner.reject(
            not_given
                .into_iter()
                .map(|name| TensorProblem::Missing { name }),
        );
    }
    let unexpected = file.into_values().map(|(key, _)| key);
    if options.allow_unexpected {
        report.unexpected = unexpected.collect();
    } else {
        planner.reject(unexpected.map(|name| TensorProblem::Unexpected { name }));
    }
    let plan = planner
        .finish()
        .map_err(|problems| LoadError::InvalidTensors {
            path: path.to_owned(),
            problems,
        })?;
    report.loaded = (plan.tensors().iter().enumerate())
        .filter(|&(i, _)| plan.has_value(i))
        .map(|(_, t)| t.name.clone())
        .collect();

    let _no_grad = tch::no_grad_guard();
    plan.write_all(
        |mut target, name, value| {
            target
                .f_copy_(value)
                .map(drop)
                .map_err(LoadError::torch(format!(
                    "copying `{name}` into the module"
                )))
        },
        |()| {},
    )?;
    Ok(report)
}

/// How many entries of `value` are NaN or infinite (0 for integer and bool tensors).
fn non_finite_count(value: &Tensor) -> std::result::Result<i64, tch::TchError> {
    if !(value.f_is_floating_point()? || value.f_is_complex()?) {
        return Ok(0);
    }
    let finite = value
        .f_isfinite()?
        .f_sum(tch::Kind::Int64)?
        .f_int64_value(&[])?;
    Ok(value.numel() as i64 - finite)
}

/// Every tensor of the safetensors file `path`, read as [`crate::safe_read`] reads a file
/// it is handed: a regular file, its header checked (length, names once, countable
/// shapes) before its data is read.
fn read_checkpoint(path: &Path) -> Result<Vec<(String, Tensor)>, LoadError> {
    let unreadable = |message: String| LoadError::Read {
        path: path.to_owned(),
        source: tch::TchError::Io(std::io::Error::other(message)),
    };
    let bytes = crate::safe_read::read_safetensors_file(path).map_err(unreadable)?;
    let file = tensors::parse(&bytes).map_err(unreadable)?;
    let mut keys: Vec<String> = file.names().into_iter().cloned().collect();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let view = file
                .tensor(&key)
                .map_err(|error| unreadable(error.to_string()))?;
            let tensor = Tensor::try_from(view).map_err(|error| {
                unreadable(format!(
                    "tensor `{key}` cannot be made by libtorch: {}",
                    short(&error)
                ))
            })?;
            Ok((key, tensor))
        })
        .collect()
}

/// The first line of a libtorch error (its C++ stack trace left out).
fn short(error: &tch::TchError) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
