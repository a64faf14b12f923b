//! PEFT's folder layout for LoRA adapters, so adapters move between Python PEFT and
//! Rust: `adapter_config.json` (PEFT's `LoraConfig`) and `adapter_model.safetensors`
//! with keys `base_model.model.<path>.lora_A.weight` (`[r, in]`) and
//! `base_model.model.<path>.lora_B.weight` (`[out, r]`), as PEFT's `save_pretrained`
//! writes them (`get_peft_model_state_dict`: adapter name removed).
//!
//! An embedding's LoRA (PEFT's `lora.Embedding`) has keys
//! `base_model.model.<path>.lora_embedding_A` (`[r, num_embeddings]`) and
//! `base_model.model.<path>.lora_embedding_B` (`[embedding_dim, r]`), no `.weight`: it is a
//! [`LoraEmbedding`](crate::patches::LoraEmbedding), whose adapter entries hold
//! `lora_embedding_a` and `lora_embedding_b`. A module holds one kind; a whole model's
//! ([`load_model_lora`]) linear modules must be linear slots and its embedding modules
//! `nn::Embedding` slots whose table fits, each refused by key otherwise.
//!
//! A DoRA (`use_dora: true`, PEFT's `DoraLinearLayer`) has the linear keys and
//! `base_model.model.<path>.lora_magnitude_vector` (`[out]`, no `.weight`): it is a
//! [`Dora`](crate::patches::Dora), whose adapter entries hold `lora_a`, `lora_b` and
//! `lora_magnitude`. PEFT has one `use_dora` for the whole folder, so a folder holds LoRAs
//! or DoRAs, not both.
//!
//! Trainable tokens (`trainable_token_indices: {"<module>": [ids]}`, PEFT's
//! `TrainableTokensLayer`) have the key
//! `base_model.model.<path>.token_adapter.trainable_tokens_delta` (`[k, embedding_dim]`):
//! despite its name, the *new values* of rows `ids` (PEFT's forward and merge
//! `index_copy` them into the table), not an offset. Here they are a
//! [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) on the `nn::Embedding`
//! slot at `<path>`, whose `delta` is `values - W[ids]` ([`load_model_lora`]) and whose rows
//! are saved as `W[ids] + delta` ([`save_model_lora`]); in f32 the round trip is exact to
//! one rounding of the subtraction (within an ulp of the row's values), not bit for bit.
//!
//! PEFT's config has one `r`, `lora_alpha`, `lora_dropout` and `use_rslora` for every
//! module; ranks and alphas that differ per module go to `rank_pattern` and
//! `alpha_pattern`, whose first matching key wins ([`PeftPattern`]). Dropout and rsLoRA
//! must be the same for all.
//!
//! Every field of PEFT 0.21's `LoraConfig` is either implemented or refused by name when
//! it holds another value than its default; a field PEFT does not have is an error that
//! lists the known ones:
//!
//! | field | here |
//! |---|---|
//! | `r`, `lora_alpha`, `use_rslora`, `rank_pattern`, `alpha_pattern` | implemented, for linear layers and embeddings alike |
//! | `target_modules`, `exclude_modules`, `layers_to_transform`, `layers_pattern` | implemented: every module with weights in the file must be one PEFT adapts with them; `"all-linear"` is every linear layer but the output head `lm_head`, as in PEFT (so an embedding's keys under it are refused) |
//! | `lora_dropout` | implemented for linear layers; PEFT never applies it to an embedding's LoRA, nor does [`LoraEmbedding`](crate::patches::LoraEmbedding) |
//! | `use_dora` | implemented for linear layers (and `Conv1D`); refused, naming the module, for an embedding |
//! | `trainable_token_indices` | implemented in its dict form `{module: [ids]}` (PEFT's trainable tokens, `TrainableTokensLayer`): a [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) on each `nn::Embedding` slot whose path ends with the name; PEFT saves the rows' new values, the patch holds `values - W[ids]`. The list form (ids for the input embedding PEFT finds by `get_input_embeddings`), a module both LoRA-targeted and with trainable tokens, and tokens on a module that is not an `nn::Embedding` are refused by name |
//! | `fan_in_fan_out` | read; as in PEFT, each layer's type decides (a `Conv1D` weight is `[in, out]`, an `nn.Linear`'s `[out, in]`: [`LinearLike::fan_in_fan_out`](crate::patches::LinearLike::fan_in_fan_out)), whatever the file says |
//! | `peft_type` | `"LORA"` only |
//! | `init_lora_weights` | `true`, `false`, `"gaussian"`, `"eva"`, `"orthogonal"` (the saved values replace them); `"pissa"`, `"pissa_niter_K"`, `"olora"`, `"corda"`, `"lora_ga"` (they change the base weight when PEFT loads them), `"loftq"` and `"mica"` refused |
//! | `eva_config`, `corda_config`, `loftq_config`, `lora_ga_config` | accepted: used only by their `init_lora_weights` |
//! | `base_model_name_or_path`, `revision`, `task_type`, `inference_mode`, `auto_mapping`, `peft_version`, `megatron_core`, `qalora_group_size` | information, accepted |
//! | `bias` (other than `"none"`), `lora_bias`, `modules_to_save`, `target_parameters`, `alora_invocation_tokens`, `layer_replication`, `megatron_config`, `use_qalora`, `use_bdlora`, `velora_config`, `monteclora_config`, `arrow_config`, `kasa_config`, `ensure_weight_tying` | refused when set, naming the field |
mod config;
mod fields;
mod kind;
mod model;
mod pattern;
mod read;
mod save;
mod slots;
mod tokens;

pub use config::{PeftLoraConfig, PeftOptions, PeftTargetModules, PeftTargets};
pub use model::{load_model_lora, save_model_lora};
pub use pattern::PeftPattern;
pub use read::{read_peft_lora, PeftAdapter, PeftTrainableTokens};
pub use save::save_peft_lora;

/// The config's file name in a PEFT adapter folder.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// The tensors' file name in a PEFT adapter folder.
pub const PEFT_TENSORS_FILE: &str = "adapter_model.safetensors";
/// The prefix of every key of a PEFT model's state dict.
pub const PEFT_KEY_PREFIX: &str = "base_model.model.";
