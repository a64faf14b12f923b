//! PEFT's folder layout for LoRA adapters, so adapters move between Python PEFT and
//! Rust: `adapter_config.json` (PEFT's `LoraConfig`) and `adapter_model.safetensors`
//! with keys `base_model.model.<path>.lora_A.weight` (`[r, in]`) and
//! `base_model.model.<path>.lora_B.weight` (`[out, r]`), as PEFT's `save_pretrained`
//! writes them (`get_peft_model_state_dict`: adapter name removed).
//!
//! PEFT's config has one `r`, `lora_alpha`, `lora_dropout` and `use_rslora` for every
//! module; ranks and alphas that differ per module go to `rank_pattern` and
//! `alpha_pattern`, keyed by module path. Dropout and rsLoRA must be the same for all.
mod config;
mod read;
mod save;

pub use config::{PeftLoraConfig, PeftOptions, PeftTargetModules, PeftTargets};
pub use read::{read_peft_lora, PeftAdapter};
pub use save::save_peft_lora;

/// The config's file name in a PEFT adapter folder.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// The tensors' file name in a PEFT adapter folder.
pub const PEFT_TENSORS_FILE: &str = "adapter_model.safetensors";
/// The prefix of every key of a PEFT model's state dict.
pub const PEFT_KEY_PREFIX: &str = "base_model.model.";

/// PEFT's key of LoRA matrix `which` (`"lora_A"` or `"lora_B"`) of module `path`.
pub(crate) fn peft_key(path: &str, which: &str) -> String {
    format!("{PEFT_KEY_PREFIX}{path}.{which}.weight")
}

/// Whether PEFT's list form of `target_modules` selects module `path`: a name equal to
/// the path or to a suffix of it that starts after a dot.
pub(crate) fn targets_match(targets: &[String], path: &str) -> bool {
    targets
        .iter()
        .any(|target| path == target || path.ends_with(&format!(".{target}")))
}
