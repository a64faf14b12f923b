//! The atomic save: serialize in memory, write a temporary file in the target's folder,
//! fsync it, rename it over the target, fsync the folder.
use super::fs::{Fs, RealFs};
use super::serialize::to_bytes;
use super::SaveStep;
use crate::error::Result;
use crate::params::{named_tensors_with_prefix, Parameters};
use crate::save::SaveError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::Tensor;

/// Saves named tensors to a safetensors file, atomically: whatever fails, `path` holds
/// either its previous content or the complete new file, never a part of one.
///
/// Every tensor is checked and copied to memory first (a name given twice, an undefined
/// tensor, a dtype safetensors cannot store: [`PatchError::InvalidTensors`](crate::PatchError::InvalidTensors), nothing
/// touched). Then the bytes go to a new temporary file in `path`'s folder, which is
/// fsync'ed and renamed over `path` (keeping the permissions of the file it replaces), and
/// the folder is fsync'ed so that the rename survives
/// a power loss. A failing step is [`SaveError::Step`](crate::save::SaveError::Step), which names the path and the step;
/// the temporary file is removed. (A process killed in the middle can leave a
/// `.{name}.tmp-*` file behind, never a damaged `path`.)
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_patch::save::save_safetensors_atomic;
///
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-save-{}.safetensors", std::process::id()));
/// let w = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
/// save_safetensors_atomic(&path, &[("fc.weight", &w)])?;
/// let back = Tensor::read_safetensors(&path).unwrap();
/// assert_eq!(back[0].0, "fc.weight");
/// assert!(back[0].1.equal(&w));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn save_safetensors_atomic<P, S>(path: P, tensors: &[(S, &Tensor)]) -> Result<()>
where
    P: AsRef<Path>,
    S: AsRef<str>,
{
    save_with(&RealFs, path.as_ref(), tensors)
}

/// Saves every tensor of `module` (parameters and buffers, its `state_dict`) to a
/// safetensors file, atomically (see [`save_safetensors_atomic`]). Names are the module's
/// tensor names under `prefix` (`""` for none; `"fc"` saves `fc.weight`), so the file
/// loads back with [`crate::load::load_safetensors`] and the same prefix.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{load::load_safetensors, save::save_module, load::LoadOptions};
///
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-module-{}.safetensors", std::process::id()));
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// save_module(&linear, &path, "fc")?;
///
/// let other = nn::VarStore::new(Device::Cpu);
/// let mut copy = nn::linear(other.root(), 3, 2, Default::default());
/// load_safetensors(&mut copy, &path, &LoadOptions::new().prefix("fc"))?;
/// assert!(copy.ws.equal(&linear.ws));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn save_module<M, P>(module: &M, path: P, prefix: &str) -> Result<()>
where
    M: Parameters + ?Sized,
    P: AsRef<Path>,
{
    let named = named_tensors_with_prefix(module, prefix);
    let tensors: Vec<(&str, &Tensor)> =
        named.iter().map(|t| (t.name.as_str(), &t.tensor)).collect();
    save_with(&RealFs, path.as_ref(), &tensors)
}

/// [`save_safetensors_atomic`] through the file system `fs`.
pub(super) fn save_with<S: AsRef<str>>(
    fs: &dyn Fs,
    path: &Path,
    tensors: &[(S, &Tensor)],
) -> Result<()> {
    let bytes = to_bytes(&format!("save `{}`", path.display()), tensors)?;
    write_atomic(fs, path, &bytes).map_err(Into::into)
}

/// Writes `bytes` to `path` atomically on the real file system (adapter files, manifests
/// and exports use it).
pub(crate) fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    write_atomic(&super::fs::RealFs, path, bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub(super) fn write_atomic(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let fail = |step: SaveStep| {
        move |source: std::io::Error| SaveError::Step {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let (dir, temp) = temp_path(path).map_err(fail(SaveStep::CreateTemp))?;
    let mut file = fs.create_new(&temp).map_err(fail(SaveStep::CreateTemp))?;
    let written = fs
        .copy_permissions(&file, path)
        .map_err(fail(SaveStep::CreateTemp))
        .and_then(|()| {
            fs.write_all(&mut file, bytes)
                .map_err(fail(SaveStep::Write))
        })
        .and_then(|()| fs.sync_file(&file).map_err(fail(SaveStep::SyncFile)));
    drop(file);
    let renamed = written.and_then(|()| fs.rename(&temp, path).map_err(fail(SaveStep::Rename)));
    if let Err(error) = renamed {
        // Best effort: the error that matters is the one that stopped the save.
        let _ = fs.remove(&temp);
        return Err(error);
    }
    fs.sync_dir(&dir).map_err(fail(SaveStep::SyncDir))
}

/// The folder of `path` and a fresh temporary file name in it: `.{name}.tmp-{pid}-{n}`.
fn temp_path(path: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp: OsString = ".".into();
    temp.push(name);
    temp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok((dir.clone(), dir.join(temp)))
}
