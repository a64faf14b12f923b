//! Named tensors to the bytes of a safetensors file, every tensor checked first.
use crate::error::{PatchError, Result, TensorProblem};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::HashSet;
use tch::{Device, Tensor};

/// One tensor's dtype, shape and bytes (little-endian, row-major), ready to be written.
pub(crate) struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The safetensors file holding `tensors`, as bytes. Every problem (a name given twice, an
/// undefined tensor, a dtype safetensors cannot store) is reported at once in
/// [`PatchError::InvalidTensors`] before any tensor is copied. Tensors on another device
/// or not contiguous are copied to contiguous CPU memory first; gradients are not saved.
pub(crate) fn to_bytes<S: AsRef<str>>(
    operation: &str,
    tensors: &[(S, &Tensor)],
) -> Result<Vec<u8>> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut dtypes = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = name.as_ref();
        if !seen.insert(name) {
            problems.push(TensorProblem::Duplicate { name: name.into() });
            continue;
        }
        if !tensor.defined() {
            problems.push(TensorProblem::Undefined { name: name.into() });
            continue;
        }
        let kind = tensor
            .f_kind()
            .map_err(PatchError::torch(format!("reading the dtype of `{name}`")))?;
        match Dtype::try_from(kind) {
            Ok(dtype) => dtypes.push(dtype),
            Err(_) => problems.push(TensorProblem::UnsupportedKind {
                name: name.into(),
                kind,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(PatchError::InvalidTensors {
            operation: operation.to_owned(),
            problems,
        });
    }
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, tensor), dtype) in tensors.iter().zip(dtypes) {
        views.push((
            name.as_ref().to_owned(),
            tensor_bytes(name.as_ref(), tensor, dtype)?,
        ));
    }
    safetensors::tensor::serialize(views.iter().map(|(n, b)| (n.as_str(), b)), &None).map_err(
        |source| PatchError::Torch {
            context: format!("serializing for {operation}"),
            source: tch::TchError::SafeTensorError {
                path: String::new(),
                err: source,
            },
        },
    )
}

/// The bytes of one defined tensor of a safetensors dtype (adapter files use it too).
pub(crate) fn tensor_bytes(name: &str, tensor: &Tensor, dtype: Dtype) -> Result<Bytes> {
    let context = || format!("copying `{name}` to memory");
    let cpu = tensor
        .f_detach()
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_contiguous())
        .map_err(PatchError::torch(context()))?;
    let numel = cpu.numel();
    let mut data = vec![0u8; numel * dtype.size()];
    if numel > 0 {
        cpu.f_copy_data_u8(&mut data, numel)
            .map_err(PatchError::torch(context()))?;
    }
    let shape = cpu.size().iter().map(|&d| d as usize).collect();
    Ok(Bytes { dtype, shape, data })
}
