//! TorchScript export of a (patched) model: trace its forward with
//! `CModule::create_by_tracing`, save it for `torch.jit.load` in Python or
//! [`CModule::load`] in Rust.
use crate::adapter::io;
use crate::error::{PatchError, Result};
use crate::load::LoadError;
use crate::params::{named_tensors, Parameters};
use crate::save::SaveError;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn::ModuleT, CModule, Tensor};

/// Traces `model.forward_t(example, false)` (eval mode: no dropout, batch norm on its
/// running stats, as a model is exported for inference) into a TorchScript module whose
/// `forward` takes one tensor (see [`trace`], which traces any closure, e.g. train mode).
///
/// ```
/// use tch::{nn, nn::ModuleT, Device, Kind, Tensor};
/// use tch_patch::export::trace_module;
/// use tch_patch::patches::{Lora, LoraConfig};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "fc";
/// let lora = Lora::new(nn::linear(&path, 4, 3, Default::default()), &path, &LoraConfig { rank: 2, ..Default::default() })?;
/// let xs = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
/// let traced = trace_module(&lora, &xs)?;
/// let ys = traced.forward_ts(&[&xs]).unwrap();
/// assert!(ys.allclose(&lora.forward_t(&xs, false), 1e-6, 1e-6, false));
/// assert!(lora.lora_a().requires_grad()); // as it was before tracing
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn trace_module<M: ModuleT + Parameters + ?Sized>(
    model: &M,
    example: &Tensor,
) -> Result<CModule> {
    trace(model, std::slice::from_ref(example), |inputs| {
        vec![model.forward_t(&inputs[0], false)]
    })
}

/// Traces `forward(inputs)` into a TorchScript module (`forward` records every libtorch
/// operation run; Rust control flow is fixed at the branches taken, as with
/// `torch.jit.trace`). The model's tensors become constants of the module: copies, so
/// the module does not change when the model trains or merges afterwards.
///
/// libtorch refuses to bake a tensor that requires grad into a trace (and to load one),
/// so every tensor of `model` ([`Parameters`]) has `requires_grad` turned off while
/// tracing and set back to what it was afterwards, also on error. Tensors `forward` uses
/// that `model` does not list must not require grad.
pub fn trace<M, F>(model: &M, inputs: &[Tensor], mut forward: F) -> Result<CModule>
where
    M: Parameters + ?Sized,
    F: FnMut(&[Tensor]) -> Vec<Tensor>,
{
    let frozen = Frozen::new(model)?;
    let traced = tch::no_grad(|| {
        CModule::create_by_tracing("TchPatchModel", "forward", inputs, &mut forward)
    })
    .map_err(PatchError::torch("tracing the model"));
    // A save and load while still frozen: constants of their own, without grad.
    let copied = traced.and_then(|traced| {
        let bytes = to_bytes(&traced, "the traced model")?;
        CModule::load_data(&mut bytes.as_slice())
            .map_err(PatchError::torch("reloading the traced model"))
    });
    drop(frozen);
    copied
}

/// The bytes of a TorchScript module as `CModule::save` writes them.
fn to_bytes(module: &CModule, what: &str) -> Result<Vec<u8>> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    // libtorch writes only to a path: a scratch file, removed at once.
    let scratch = std::env::temp_dir().join(format!(
        "tch-patch-torchscript-{}-{}.pt",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let saved = module
        .save(&scratch)
        .map_err(PatchError::torch(format!("serializing {what}")));
    let bytes = saved.and_then(|()| {
        io::read_file(&scratch, io::FileKind::Own)
            .map_err(|message| SaveError::WriteFile {
                path: scratch.clone(),
                source: std::io::Error::other(message),
            })
            .map_err(Into::into)
    });
    let _ = std::fs::remove_file(&scratch);
    bytes
}

/// The model's tensors with `requires_grad` off, restored on drop.
struct Frozen {
    restore: Vec<Tensor>,
}

impl Frozen {
    fn new<M: Parameters + ?Sized>(model: &M) -> Result<Self> {
        let mut frozen = Frozen {
            restore: Vec::new(),
        };
        for named in named_tensors(model) {
            if named.tensor.defined() && named.tensor.requires_grad() {
                named
                    .tensor
                    .f_set_requires_grad(false)
                    .map_err(PatchError::torch(format!(
                        "freezing `{}` to trace",
                        named.name
                    )))
                    .map(drop)?;
                frozen.restore.push(named.tensor);
            }
        }
        Ok(frozen)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for tensor in &self.restore {
            // Turning requires_grad back on for a floating-point leaf it was on for.
            let _ = tensor.f_set_requires_grad(true);
        }
    }
}

/// Saves a TorchScript module to `path` (for `torch.jit.load` or [`load_torchscript`]);
/// the number of bytes written.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::{export::load_torchscript, export::save_torchscript, export::trace_module};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-ts-{}.pt", std::process::id()));
/// save_torchscript(&trace_module(&linear, &xs)?, &path)?;
/// let loaded = load_torchscript(&path)?;
/// assert!(loaded.forward_ts(&[&xs]).unwrap().allclose(&linear.forward(&xs), 1e-6, 1e-6, false));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn save_torchscript(module: &CModule, path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    let bytes = to_bytes(
        module,
        &format!("the TorchScript module for `{}`", path.display()),
    )?;
    io::write_file(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Loads a TorchScript module saved by [`save_torchscript`] or by PyTorch, on the CPU; a
/// file libtorch cannot read is [`LoadError::Read`].
pub fn load_torchscript(path: impl AsRef<Path>) -> std::result::Result<CModule, LoadError> {
    let path = path.as_ref();
    CModule::load(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}
