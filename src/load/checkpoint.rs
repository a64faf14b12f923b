//! A safetensors checkpoint opened for streaming: its header read and checked (every
//! tensor's dtype, shape and place in the file) without reading any data, then each
//! tensor read on its own, straight into its destination where it can be, or mapped.
use super::LoadError;
use crate::adapter::tensors::{error_message, kind_of_dtype};
use crate::safe_read::{check_header_json, header_length, open_regular};
use safetensors::tensor::Metadata;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One tensor of a checkpoint: its dtype, shape and bytes in the file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Its dtype.
    pub(crate) kind: Kind,
    /// Its shape.
    pub(crate) shape: Vec<i64>,
    /// Where its bytes start in the file.
    start: u64,
    /// How many bytes it has.
    len: u64,
}

/// An open safetensors file whose header has been checked.
pub(crate) struct Checkpoint {
    path: PathBuf,
    file: File,
    /// The file's length when it was opened (the header says the data ends exactly there).
    len: u64,
    /// The header bytes (length prefix included), to check a mapping is of the same file.
    header: Vec<u8>,
    entries: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Opens `path` and checks its header against the file: a regular file, a header
    /// within the file and the limit, each name once, a dtype libtorch has, offsets that
    /// tile the data exactly, byte lengths that fit the shapes. No data is read.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        let unreadable = |message: String| LoadError::Read {
            path: path.to_owned(),
            source: tch::TchError::Io(std::io::Error::other(message)),
        };
        let (mut file, len) = open_regular(path).map_err(unreadable)?;
        let mut prefix = [0u8; 8];
        if len < 8 || file.read_exact(&mut prefix).is_err() {
            return Err(unreadable(
                "not a safetensors file: shorter than its 8-byte header length".into(),
            ));
        }
        let header_len = header_length(u64::from_le_bytes(prefix), len).map_err(unreadable)?;
        let mut header = vec![0u8; 8 + header_len];
        header[..8].copy_from_slice(&prefix);
        file.read_exact(&mut header[8..])
            .map_err(|error| unreadable(format!("its header could not be read whole: {error}")))?;
        let json = &header[8..];
        check_header_json(json).map_err(unreadable)?;
        if json.first() != Some(&b'{') {
            return Err(unreadable(error_message(
                &safetensors::SafeTensorError::InvalidHeaderStart,
            )));
        }
        let metadata: Metadata = serde_json::from_slice(json).map_err(|_| {
            unreadable(error_message(
                &safetensors::SafeTensorError::InvalidHeaderDeserialization,
            ))
        })?;
        let data_start = 8 + header_len as u64;
        let mut infos: Vec<(String, &safetensors::tensor::TensorInfo)> =
            metadata.tensors().into_iter().collect();
        infos.sort_by_key(|(_, info)| info.data_offsets);
        let mut entries = BTreeMap::new();
        let mut end = 0u64;
        for (name, info) in infos {
            let (from, to) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
            if from != end || to < from {
                return Err(unreadable(format!(
                    "the data offsets of tensor `{name}` are wrong"
                )));
            }
            end = to;
            let Some(kind) = kind_of_dtype(info.dtype) else {
                return Err(unreadable(format!(
                    "tensor `{name}` cannot be made by libtorch: its dtype {:?} has no libtorch kind",
                    info.dtype
                )));
            };
            let count = info
                .shape
                .iter()
                .try_fold(1u64, |count, &dim| count.checked_mul(dim as u64));
            if count.and_then(|c| c.checked_mul(info.dtype.size() as u64)) != Some(to - from) {
                return Err(unreadable(
                    "its header does not match its data (truncated or corrupt)".into(),
                ));
            }
            let entry = Entry {
                kind,
                shape: info.shape.iter().map(|&d| d as i64).collect(),
                start: data_start + from,
                len: to - from,
            };
            entries.insert(name, entry);
        }
        if data_start + end != len {
            return Err(unreadable(
                "its header does not match its data (truncated or corrupt)".into(),
            ));
        }
        Ok(Checkpoint {
            path: path.to_owned(),
            file,
            len,
            header,
            entries,
        })
    }

    /// Every tensor of the file, by key.
    pub(crate) fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// A new CPU tensor holding the values of `entry` (of this file, under `key`).
    pub(crate) fn read(&self, key: &str, entry: &Entry) -> Result<Tensor, LoadError> {
        let tensor = Tensor::f_empty(entry.shape.as_slice(), (entry.kind, Device::Cpu))
            .map_err(LoadError::torch(format!("allocating `{key}`")))?;
        self.read_raw(key, entry, &tensor)?;
        Ok(tensor)
    }

    /// Writes the values of `entry` into `target` in place: read straight into its memory
    /// when it is a dense contiguous CPU tensor of the file's dtype, else read into one
    /// scratch tensor and copied (`copy_`: converting the dtype, moving to the device).
    /// Either way the write counts as an in-place change for autograd (a graph that saved
    /// the old value refuses to run backward). The caller has checked the shape, and that
    /// `target` has no overlapping elements; it runs under `no_grad`.
    pub(crate) fn read_into(
        &self,
        key: &str,
        entry: &Entry,
        target: &mut Tensor,
    ) -> Result<(), LoadError> {
        if is_plain_cpu(target, entry.kind) {
            self.read_raw(key, entry, target)?;
            return bump_version(target).map_err(LoadError::torch(format!("writing `{key}`")));
        }
        let scratch = self.read(key, entry)?;
        target
            .f_copy_(&scratch)
            .map(drop)
            .map_err(LoadError::torch(format!("copying `{key}` into the module")))
    }

    /// Reads `entry`'s bytes into `tensor`'s memory, which must be a dense contiguous CPU
    /// tensor of `entry`'s kind and shape.
    fn read_raw(&self, key: &str, entry: &Entry, tensor: &Tensor) -> Result<(), LoadError> {
        let len = usize::try_from(entry.len).map_err(|_| LoadError::Read {
            path: self.path.clone(),
            source: tch::TchError::Io(std::io::Error::other(format!(
                "tensor `{key}` is too large to read"
            ))),
        })?;
        if len == 0 {
            return Ok(());
        }
        debug_assert!(is_plain_cpu(tensor, entry.kind));
        debug_assert_eq!(tensor.size(), entry.shape);
        // SAFETY: `tensor` is a dense, contiguous CPU tensor of `entry.kind` and
        // `entry.shape` (checked by every caller), so its data is `numel * element size =
        // entry.len` bytes owned by libtorch and alive while `tensor` is; nothing else
        // reads them during this call (tch tensors are not `Sync`).
        let bytes = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, len) };
        self.file
            .read_exact_at(bytes, entry.start)
            .map_err(|error| LoadError::Interrupted {
                path: self.path.clone(),
                key: key.to_owned(),
                written: Vec::new(),
                source: error,
            })
    }

    /// The whole file as one `uint8` tensor backed by its pages (libtorch's `from_file`:
    /// a private mapping, so writes to the tensor never reach the file). The storage owns
    /// the mapping: views of it keep it alive and the last one to go unmaps it.
    pub(crate) fn map(&self) -> Result<Tensor, LoadError> {
        let mapping_failed = |message: String| LoadError::Read {
            path: self.path.clone(),
            source: tch::TchError::Io(std::io::Error::other(message)),
        };
        let name = self.path.to_str().ok_or_else(|| {
            mapping_failed("its path is not UTF-8, which libtorch's from_file needs".into())
        })?;
        let len = i64::try_from(self.len).map_err(|_| mapping_failed("too large".into()))?;
        let whole = Tensor::f_from_file(name, false, Some(len), (Kind::Uint8, Device::Cpu))
            .map_err(|error| mapping_failed(format!("it could not be mapped: {error}")))?;
        // The path was opened again: check it is still the file whose header was checked.
        let header = whole
            .f_narrow(0, 0, self.header.len() as i64)
            .and_then(|h| Vec::<u8>::try_from(&h))
            .map_err(|error| mapping_failed(format!("its mapping cannot be read: {error}")))?;
        if header != self.header {
            return Err(mapping_failed(
                "it changed between being opened and being mapped".into(),
            ));
        }
        Ok(whole)
    }

    /// `entry` as a view of [`Checkpoint::map`]'s tensor, if its bytes are aligned for its
    /// dtype (`None` otherwise: the caller reads it instead).
    pub(crate) fn mapped_view(whole: &Tensor, entry: &Entry) -> Option<Tensor> {
        let numel: i64 = entry.shape.iter().product();
        if numel == 0
            || !entry
                .start
                .is_multiple_of(entry.kind.elt_size_in_bytes() as u64)
        {
            return None;
        }
        whole
            .f_narrow(0, entry.start as i64, entry.len as i64)
            .and_then(|bytes| bytes.f_view_dtype(entry.kind))
            .and_then(|values| values.f_view(entry.shape.as_slice()))
            .ok()
    }
}

/// Whether `tensor`'s memory can be written as the bytes of a `kind` array: dense
/// (strided, not sparse or MKL-DNN), contiguous, on the CPU, of that kind.
fn is_plain_cpu(tensor: &Tensor, kind: Kind) -> bool {
    tensor.defined()
        && tensor.device() == Device::Cpu
        && tensor.f_kind().ok() == Some(kind)
        && !tensor.is_sparse()
        && !tensor.is_mkldnn()
        && tensor.is_contiguous()
}

/// Counts a write into `tensor`'s memory made behind libtorch's back as an in-place change
/// (its version counter goes up, as `copy_` would make it), by an in-place op on an empty
/// view of it: views share their base's version counter, and an empty one writes nothing.
fn bump_version(tensor: &Tensor) -> Result<(), tch::TchError> {
    let flat = tensor.f_view([-1])?;
    let _ = flat.f_narrow(0, 0, 0)?.f_zero_()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &[(&str, &Tensor)]) -> (PathBuf, Checkpoint) {
        let path = std::env::temp_dir().join(format!(
            "tch-patch-checkpoint-{}-{}.safetensors",
            std::process::id(),
            tensors[0].0
        ));
        Tensor::write_safetensors(tensors, &path).unwrap();
        let checkpoint = Checkpoint::open(&path).unwrap();
        (path, checkpoint)
    }

    #[test]
    fn reads_straight_into_a_tensor_and_counts_the_write_for_autograd() {
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let (path, checkpoint) = file(&[("direct", &w)]);
        let entry = &checkpoint.entries()["direct"];
        let mut target = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let saved = (&x * &target).sum(Kind::Float); // saves `target` for x's gradient
        tch::no_grad(|| checkpoint.read_into("direct", entry, &mut target)).unwrap();
        assert!(target.equal(&w));
        assert!(
            saved.f_backward().is_err(),
            "the write must be seen as an in-place change"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn converts_through_a_scratch_tensor_and_maps_aligned_tensors() {
        let w = Tensor::from_slice(&[1.5f64, -2.0]);
        let (path, checkpoint) = file(&[("scratch", &w)]);
        let entry = &checkpoint.entries()["scratch"];
        let mut target = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        checkpoint.read_into("scratch", entry, &mut target).unwrap();
        assert!(target.equal(&w.to_kind(Kind::Float)));
        let whole = checkpoint.map().unwrap();
        let view = Checkpoint::mapped_view(&whole, entry).unwrap();
        assert!(view.equal(&w));
        drop(whole);
        assert!(view.equal(&w), "the view keeps the mapping alive");
        std::fs::remove_file(path).unwrap();
    }
}
