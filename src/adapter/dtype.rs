//! What loading an adapter does when a saved tensor's dtype is not the model's.
use tch::Tensor;

/// What every adapter loading route ([`load_model_adapter_with`](super::load_model_adapter_with),
/// [`apply_lora_adapter_with`](super::apply_lora_adapter_with), and through it a PEFT
/// folder read by [`read_peft_lora`](crate::peft::read_peft_lora)) does with a saved
/// floating-point tensor whose dtype differs from the tensor it goes into (the patch's
/// own, made in the dtype of the base weight it adapts).
///
/// The default converts, as PEFT does when it loads an adapter (`load_state_dict` copies
/// each saved tensor into the adapter's parameter, converting the dtype): a `bfloat16`
/// adapter loads onto a `float32` model as `float32` values. Integer tensors (token ids)
/// must always match exactly, as must shapes.
///
/// One difference remains on `float16`/`bfloat16` bases: PEFT's `from_pretrained` keeps the
/// adapter of such a base in `float32` (`autocast_adapter_dtype=True`), while a patch here
/// is made in the base weight's own dtype, so the saved values are converted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterDtype {
    /// Convert a floating-point tensor to the model's floating-point dtype (PEFT's rule).
    #[default]
    ConvertToModel,
    /// Refuse any dtype difference, naming the tensor and both dtypes.
    Exact,
}

impl AdapterDtype {
    /// Whether `value` may be written into `target` under this rule.
    pub(crate) fn allows(self, value: &Tensor, target: &Tensor) -> bool {
        value.kind() == target.kind()
            || (self == AdapterDtype::ConvertToModel
                && value.is_floating_point()
                && target.is_floating_point())
    }
}
