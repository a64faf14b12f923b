//! Llama (`LlamaForCausalLM` of transformers): RMSNorm, rotary position embeddings (default
//! and `llama3` scaling), grouped-query attention, SwiGLU MLP, tied or untied head.
//!
//! Every linear layer and the embedding is a [`Slot`], so patch strings and rules reach them
//! (`lora(targets="*.self_attn.{q_proj,v_proj}")`); tensor names are transformers' own
//! (`model.layers.0.self_attn.q_proj.weight`), so a transformers `model.safetensors` loads
//! by name.
use crate::config::{read_object, Field, Reader};
use crate::decoding::{self, AttentionMask, CausalLm, KvCache};
use crate::error::ModelError;
use std::path::Path;
use tch::{nn, Kind, Tensor};
use tch_patch::load::{self, Fill, Skeleton};
use tch_patch::prelude::*;

/// `rope_parameters` of a Llama config.
#[derive(Debug, Clone, PartialEq)]
pub enum Rope {
    /// The original RoPE: `inv_freq = 1 / theta^(2i / head_dim)`.
    Default {
        /// `rope_theta`.
        theta: f64,
    },
    /// Llama 3's frequency-dependent scaling of the default frequencies.
    Llama3 {
        /// `rope_theta`.
        theta: f64,
        /// `factor`.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: i64,
    },
}

/// The fields of `LlamaConfig` this crate reads, with transformers' names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `vocab_size`.
    pub vocab_size: i64,
    /// `hidden_size`.
    pub hidden_size: i64,
    /// `intermediate_size`.
    pub intermediate_size: i64,
    /// `num_hidden_layers`.
    pub num_hidden_layers: i64,
    /// `num_attention_heads`.
    pub num_attention_heads: i64,
    /// `num_key_value_heads` (defaults to `num_attention_heads`).
    pub num_key_value_heads: i64,
    /// `head_dim` (defaults to `hidden_size / num_attention_heads`).
    pub head_dim: i64,
    /// `max_position_embeddings`.
    pub max_position_embeddings: i64,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f64,
    /// `rope_parameters` (or the older `rope_theta` and `rope_scaling`).
    pub rope: Rope,
    /// `tie_word_embeddings`: the head reuses the embedding table.
    pub tie_word_embeddings: bool,
    /// `attention_bias`: q, k, v and o projections have biases.
    pub attention_bias: bool,
    /// `mlp_bias`: gate, up and down projections have biases.
    pub mlp_bias: bool,
    /// `dtype` (or `torch_dtype`): the kind the weights are stored in.
    pub dtype: Kind,
}

/// Every field of transformers' `LlamaConfig` as `save_pretrained` writes it.
const FIELDS: &[Field] = &[
    Field::Info("architectures"),
    Field::Read("attention_bias"),
    Field::Read("attention_dropout"),
    Field::Info("bos_token_id"),
    Field::Read("dtype"),
    Field::Read("torch_dtype"),
    Field::Info("eos_token_id"),
    Field::Read("head_dim"),
    Field::Read("hidden_act"),
    Field::Read("hidden_size"),
    Field::Info("initializer_range"),
    Field::Read("intermediate_size"),
    Field::Read("max_position_embeddings"),
    Field::Read("mlp_bias"),
    Field::Read("model_type"),
    Field::Read("num_attention_heads"),
    Field::Read("num_hidden_layers"),
    Field::Read("num_key_value_heads"),
    Field::Info("pad_token_id"),
    Field::Read("pretraining_tp"),
    Field::Read("rms_norm_eps"),
    Field::Read("rope_parameters"),
    Field::Read("rope_scaling"),
    Field::Read("rope_theta"),
    Field::Read("tie_word_embeddings"),
    Field::Info("transformers_version"),
    Field::Info("use_cache"),
    Field::Read("vocab_size"),
];

const ROPE_FIELDS: &[Field] = &[
    Field::Read("rope_type"),
    Field::Read("type"),
    Field::Read("rope_theta"),
    Field::Read("factor"),
    Field::Read("low_freq_factor"),
    Field::Read("high_freq_factor"),
    Field::Read("original_max_position_embeddings"),
    Field::Read("partial_rotary_factor"),
];

impl LlamaConfig {
    /// Reads a transformers `config.json` of `model_type` `llama`. Every field is read,
    /// accepted as information (token ids, versions, initialisation) or refused by name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let object = read_object(path)?;
        let mut r = Reader::new(path, "", &object);
        let model_type = r.str_or("model_type", "llama")?;
        if model_type != "llama" {
            return Err(r.unsupported("model_type", format!("{model_type:?}"), "\"llama\""));
        }
        let hidden_act = r.str_or("hidden_act", "silu")?;
        if hidden_act != "silu" {
            return Err(r.unsupported("hidden_act", format!("{hidden_act:?}"), "\"silu\""));
        }
        let dropout = r.f64_or("attention_dropout", Some(0.0))?;
        if dropout != 0.0 {
            return Err(r.unsupported("attention_dropout", dropout.to_string(), "0.0"));
        }
        let tp = r.i64_or("pretraining_tp", Some(1))?;
        if tp != 1 {
            return Err(r.unsupported("pretraining_tp", tp.to_string(), "1"));
        }
        let hidden_size = r.i64_or("hidden_size", Some(4096))?;
        let num_attention_heads = r.i64_or("num_attention_heads", Some(32))?;
        let num_key_value_heads = r.i64_or("num_key_value_heads", Some(num_attention_heads))?;
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(r.unsupported(
                "num_key_value_heads",
                num_key_value_heads.to_string(),
                "a divisor of num_attention_heads",
            ));
        }
        let head_dim = r.i64_or("head_dim", Some(hidden_size / num_attention_heads))?;
        let max_position_embeddings = r.i64_or("max_position_embeddings", Some(2048))?;
        let legacy_theta = r.value("rope_theta").cloned();
        let legacy_scaling = r.value("rope_scaling").cloned();
        let rope_parameters = r.value("rope_parameters").cloned();
        let legacy_dtype = r.str_or("torch_dtype", "float32")?;
        let dtype = crate::folder::stored_kind(path, Some(r.str_or("dtype", legacy_dtype)?))?;
        let config = LlamaConfig {
            vocab_size: r.i64_or("vocab_size", Some(32000))?,
            hidden_size,
            intermediate_size: r.i64_or("intermediate_size", Some(11008))?,
            num_hidden_layers: r.i64_or("num_hidden_layers", Some(32))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps: r.f64_or("rms_norm_eps", Some(1e-6))?,
            rope: read_rope(
                path,
                rope_parameters,
                legacy_theta,
                legacy_scaling,
                max_position_embeddings,
            )?,
            tie_word_embeddings: r.bool_or("tie_word_embeddings", false)?,
            attention_bias: r.bool_or("attention_bias", false)?,
            mlp_bias: r.bool_or("mlp_bias", false)?,
            dtype,
        };
        r.finish(FIELDS)?;
        Ok(config)
    }
}

impl LlamaConfig {
    /// The config as transformers 5 writes it (`LlamaConfig.save_pretrained`'s field names),
    /// for a folder Python loads with `LlamaForCausalLM.from_pretrained`.
    pub fn to_json(&self) -> serde_json::Value {
        let rope = match &self.rope {
            Rope::Default { theta } => {
                serde_json::json!({ "rope_type": "default", "rope_theta": theta })
            }
            Rope::Llama3 {
                theta,
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                serde_json::json!({
                    "rope_type": "llama3", "rope_theta": theta, "factor": factor,
                    "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "hidden_act": "silu",
            "dtype": crate::folder::kind_name(self.dtype),
        })
    }
}

/// `rope_parameters` (transformers 5), or `rope_theta` with `rope_scaling` (earlier files).
fn read_rope(
    path: &Path,
    parameters: Option<serde_json::Value>,
    legacy_theta: Option<serde_json::Value>,
    legacy_scaling: Option<serde_json::Value>,
    max_position_embeddings: i64,
) -> Result<Rope, ModelError> {
    let mut object = match (parameters, legacy_scaling) {
        (Some(serde_json::Value::Object(p)), _) => p,
        (Some(other), _) => {
            return Err(ModelError::InvalidField {
                path: path.to_owned(),
                field: "rope_parameters".into(),
                expected: "an object".into(),
                found: other.to_string(),
            })
        }
        (None, Some(serde_json::Value::Object(s))) => s,
        (None, _) => serde_json::Map::new(),
    };
    if let Some(theta) = legacy_theta {
        object.entry("rope_theta").or_insert(theta);
    }
    let mut r = Reader::new(path, "rope_parameters", &object);
    let legacy_type = r.str_or("type", "default")?;
    let kind = r.str_or("rope_type", legacy_type)?;
    let theta = r.f64_or("rope_theta", Some(10000.0))?;
    let partial = r.f64_or("partial_rotary_factor", Some(1.0))?;
    if partial != 1.0 {
        return Err(r.unsupported("partial_rotary_factor", partial.to_string(), "1.0"));
    }
    let rope = match kind {
        "default" => Rope::Default { theta },
        "llama3" => Rope::Llama3 {
            theta,
            factor: r.f64_or("factor", None)?,
            low_freq_factor: r.f64_or("low_freq_factor", None)?,
            high_freq_factor: r.f64_or("high_freq_factor", None)?,
            original_max_position_embeddings: r.i64_or(
                "original_max_position_embeddings",
                Some(max_position_embeddings),
            )?,
        },
        other => {
            return Err(r.unsupported("rope_type", format!("{other:?}"), "\"default\", \"llama3\""))
        }
    };
    r.finish(ROPE_FIELDS)?;
    Ok(rope)
}

/// Root-mean-square layer norm, computed in float32 as transformers does.
#[derive(Debug, ModuleTree, Parameters)]
pub struct LlamaRmsNorm {
    /// The per-feature scale.
    pub weight: Tensor,
    #[param(skip)]
    eps: f64,
}

impl LlamaRmsNorm {
    fn new(path: nn::Path, size: i64, eps: f64, fill: Fill) -> Self {
        LlamaRmsNorm {
            weight: load::var(&path, "weight", &[size], nn::Init::Const(1.0), fill),
            eps,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        if kind == Kind::Float {
            // The same ops without the two no-op conversions (each a call into libtorch).
            let variance = xs.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
            return &self.weight * (xs * (variance + self.eps).rsqrt());
        }
        let hidden = xs.to_kind(Kind::Float);
        let variance = hidden.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let hidden = hidden * (variance + self.eps).rsqrt();
        &self.weight * hidden.to_kind(kind)
    }
}

/// Inverse frequencies of the rotary embedding, `[head_dim / 2]`, float32.
fn inv_freq(rope: &Rope, head_dim: i64) -> Tensor {
    let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, tch::Device::Cpu))
        .to_kind(Kind::Float)
        / head_dim as f64;
    let theta = match rope {
        Rope::Default { theta } | Rope::Llama3 { theta, .. } => *theta,
    };
    let base = Tensor::pow_scalar(theta, &exponents).reciprocal();
    let Rope::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
        ..
    } = *rope
    else {
        return base;
    };
    let old = original_max_position_embeddings as f64;
    let low_freq_wavelen = old / low_freq_factor;
    let high_freq_wavelen = old / high_freq_factor;
    let wavelen = base.reciprocal() * (2.0 * std::f64::consts::PI);
    let scaled = base.where_self(&wavelen.le(low_freq_wavelen), &(&base / factor));
    let smooth =
        ((wavelen.reciprocal() * old) - low_freq_factor) / (high_freq_factor - low_freq_factor);
    let smoothed: Tensor = (-&smooth + 1.0) * &scaled / factor + &smooth * &scaled;
    let medium = wavelen
        .ge(high_freq_wavelen)
        .logical_and(&wavelen.le(low_freq_wavelen));
    smoothed.where_self(&medium, &scaled)
}

/// The rotary tables of one forward, `[batch or 1, 1, t, head_dim]` each, in the model's
/// kind: `cos` is transformers' `cos`, and `sin` is its `sin` with the first half negated,
/// so that `rotate_half(x) * sin` (`cat(-x2, x1) * sin`) is `roll(x, half) * sin_signed`
/// (`cat(x2, x1) * cat(-s, s)`: the same products, negation being exact), one roll instead
/// of two narrows, a negation and a cat.
struct RotaryTables {
    cos: Tensor,
    sin_signed: Tensor,
    half: i64,
}

impl RotaryTables {
    /// `positions` `[batch or 1, t]` (float32), `inv_freq` `[head_dim / 2]`.
    fn new(positions: &Tensor, inv_freq: &Tensor, kind: Kind) -> Self {
        let freqs = positions.unsqueeze(-1) * inv_freq;
        let (cos, sin) = (freqs.cos(), freqs.sin());
        let in_kind = |xs: Tensor| match kind {
            Kind::Float => xs,
            _ => xs.to_kind(kind),
        };
        let cos = in_kind(Tensor::cat(&[&cos, &cos], -1).unsqueeze(1));
        let sin_signed = in_kind(Tensor::cat(&[-&sin, sin], -1).unsqueeze(1));
        RotaryTables {
            cos,
            sin_signed,
            half: inv_freq.size()[0],
        }
    }

    /// `xs * cos + rotate_half(xs) * sin` for `xs` `[batch, heads, t, head_dim]`.
    fn apply(&self, xs: &Tensor) -> Tensor {
        xs * &self.cos + xs.roll([self.half], [-1]) * &self.sin_signed
    }
}

/// Grouped-query self-attention.
#[derive(ModuleTree, Parameters)]
pub struct LlamaAttention {
    /// Query projection.
    pub q_proj: Slot<nn::Linear>,
    /// Key projection.
    pub k_proj: Slot<nn::Linear>,
    /// Value projection.
    pub v_proj: Slot<nn::Linear>,
    /// Output projection.
    pub o_proj: Slot<nn::Linear>,
    #[param(skip)]
    heads: i64,
    #[param(skip)]
    kv_heads: i64,
    #[param(skip)]
    head_dim: i64,
}

fn linear(path: nn::Path, inputs: i64, outputs: i64, bias: bool, fill: Fill) -> Slot<nn::Linear> {
    let config = nn::LinearConfig {
        bias,
        ..Default::default()
    };
    Slot::new(load::linear(&path, inputs, outputs, config, fill))
}

impl LlamaAttention {
    fn new(path: nn::Path, c: &LlamaConfig, w: Fill) -> Self {
        let (h, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let bias = c.attention_bias;
        LlamaAttention {
            q_proj: linear(&path / "q_proj", c.hidden_size, h * d, bias, w),
            k_proj: linear(&path / "k_proj", c.hidden_size, kv * d, bias, w),
            v_proj: linear(&path / "v_proj", c.hidden_size, kv * d, bias, w),
            o_proj: linear(&path / "o_proj", h * d, c.hidden_size, bias, w),
            heads: h,
            kv_heads: kv,
            head_dim: d,
        }
    }

    /// Attention of `xs` `[batch, t, hidden]` over the cached and new tokens: libtorch's
    /// fused `scaled_dot_product_attention` (softmax of `q kᵀ / sqrt(head_dim) + mask`,
    /// times `v`), as transformers' default `sdpa` attention calls it: `is_causal` instead
    /// of a mask when nothing is cached or padded, grouped-query attention in the kernel
    /// (`enable_gqa`) instead of repeated keys and values, and for one new token the query
    /// heads of each key head packed as that head's queries.
    fn forward_t(
        &self,
        xs: &Tensor,
        rotary: &RotaryTables,
        mask: &AttentionMask,
        cache: &mut Option<(Tensor, Tensor)>,
        train: bool,
    ) -> Tensor {
        let size = xs.size();
        let (b, t, d) = (size[0], size[1], self.head_dim);
        // [b, t, heads * d] -> [b, heads, t, d]; for one token a view of the same layout.
        let split = |ys: Tensor, heads: i64| match t {
            1 => ys.view([b, heads, 1, d]),
            _ => ys.view([b, t, heads, d]).transpose(1, 2),
        };
        let q = rotary.apply(&split(xs.apply_t(&self.q_proj, train), self.heads));
        let k = rotary.apply(&split(xs.apply_t(&self.k_proj, train), self.kv_heads));
        let v = split(xs.apply_t(&self.v_proj, train), self.kv_heads);
        let (k, v) = decoding::append(cache, k, v);
        let groups = self.heads / self.kv_heads;
        let (additive, causal) = match mask {
            AttentionMask::Additive(mask) => (Some(mask), false),
            AttentionMask::Causal => (None, true),
            AttentionMask::Unmasked => (None, false),
        };
        let out = if t == 1 && groups > 1 {
            // [b, heads, 1, d] as [b, kv_heads, groups, d]: query head `j` attends with key
            // head `j / groups`, as repeated keys would give it; the mask [b, 1, 1, total]
            // broadcasts over both head axes.
            let q = q.reshape([b, self.kv_heads, groups, d]);
            Tensor::scaled_dot_product_attention(&q, &k, &v, additive, 0.0, false, None, false)
        } else {
            Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                additive,
                0.0,
                causal,
                None,
                groups > 1,
            )
            .transpose(1, 2)
        };
        out.reshape([b, t, -1]).apply_t(&self.o_proj, train)
    }
}

/// SwiGLU: `down(silu(gate(x)) * up(x))`.
#[derive(ModuleTree, Parameters)]
pub struct LlamaMlp {
    /// Gate projection.
    pub gate_proj: Slot<nn::Linear>,
    /// Up projection.
    pub up_proj: Slot<nn::Linear>,
    /// Down projection.
    pub down_proj: Slot<nn::Linear>,
}

impl LlamaMlp {
    fn new(path: nn::Path, c: &LlamaConfig, w: Fill) -> Self {
        let (hidden, inner, bias) = (c.hidden_size, c.intermediate_size, c.mlp_bias);
        LlamaMlp {
            gate_proj: linear(&path / "gate_proj", hidden, inner, bias, w),
            up_proj: linear(&path / "up_proj", hidden, inner, bias, w),
            down_proj: linear(&path / "down_proj", inner, hidden, bias, w),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let gate = xs.apply_t(&self.gate_proj, train).silu();
        (gate * xs.apply_t(&self.up_proj, train)).apply_t(&self.down_proj, train)
    }
}

/// One decoder layer: pre-norm attention and pre-norm MLP, each with a residual.
#[derive(ModuleTree, Parameters)]
pub struct LlamaDecoderLayer {
    /// Attention.
    pub self_attn: LlamaAttention,
    /// MLP.
    pub mlp: LlamaMlp,
    /// Norm before attention.
    pub input_layernorm: LlamaRmsNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: LlamaRmsNorm,
}

/// The decoder stack (`LlamaModel`).
#[derive(ModuleTree, Parameters)]
pub struct LlamaModel {
    /// Token embedding.
    pub embed_tokens: Slot<nn::Embedding>,
    /// Decoder layers.
    pub layers: Vec<LlamaDecoderLayer>,
    /// Final norm.
    pub norm: LlamaRmsNorm,
    #[param(skip)]
    inv_freq: Tensor,
}

/// `LlamaForCausalLM`: the decoder and its language-model head.
#[derive(ModuleTree, Parameters)]
pub struct LlamaForCausalLM {
    /// The decoder.
    pub model: LlamaModel,
    /// The head; `None` when tied to the embedding (`tie_word_embeddings`).
    pub lm_head: Option<Slot<nn::Linear>>,
    #[param(skip)]
    config: LlamaConfig,
}

impl LlamaForCausalLM {
    /// A model with fresh weights at `path` (the VarStore root for transformers' names).
    pub fn new(path: &nn::Path, config: &LlamaConfig) -> Self {
        Self::build(path, config, Fill::INIT)
    }

    /// The model at `vs`'s root with its tensors allocated (names, shapes, the VarStore's kind) but not
    /// initialized, for a load to fill (what `from_folder` loads into): no init kernel
    /// runs and no page is touched until the load writes it.
    pub fn skeleton(vs: &nn::VarStore, config: &LlamaConfig) -> Skeleton<Self> {
        Skeleton::build(vs, |fill| Self::build(&vs.root(), config, fill))
    }

    fn build(path: &nn::Path, config: &LlamaConfig, w: Fill) -> Self {
        let c = config;
        let m = path / "model";
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = &m / "layers" / i;
                LlamaDecoderLayer {
                    self_attn: LlamaAttention::new(&p / "self_attn", c, w),
                    mlp: LlamaMlp::new(&p / "mlp", c, w),
                    input_layernorm: LlamaRmsNorm::new(
                        &p / "input_layernorm",
                        c.hidden_size,
                        c.rms_norm_eps,
                        w,
                    ),
                    post_attention_layernorm: LlamaRmsNorm::new(
                        &p / "post_attention_layernorm",
                        c.hidden_size,
                        c.rms_norm_eps,
                        w,
                    ),
                }
            })
            .collect();
        let model = LlamaModel {
            embed_tokens: Slot::new(load::embedding(
                &(&m / "embed_tokens"),
                c.vocab_size,
                c.hidden_size,
                Default::default(),
                w,
            )),
            layers,
            norm: LlamaRmsNorm::new(&m / "norm", c.hidden_size, c.rms_norm_eps, w),
            inv_freq: inv_freq(&c.rope, c.head_dim).to_device(path.device()),
        };
        let lm_head = (!c.tie_word_embeddings)
            .then(|| linear(path / "lm_head", c.hidden_size, c.vocab_size, false, w));
        LlamaForCausalLM {
            model,
            lm_head,
            config: c.clone(),
        }
    }

    /// The config the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Logits for `input_ids` `[batch, new]` that follow the tokens already in `cache`.
    /// `attention_mask` `[batch, cached + new]` is 1 for a token and 0 for padding (left
    /// padding for prompts of different lengths); positions count the unmasked tokens, as
    /// transformers' `generate` does. The new keys and values are appended to `cache`.
    // `xs = xs + ..`, not `xs += ..`: an in-place add would overwrite a tensor the norms keep
    // for the backward pass.
    /// With `last_only`, the logits of the last position only, `[batch, 1, vocab]` (what
    /// decoding reads; transformers' `logits_to_keep=1`).
    #[allow(clippy::assign_op_pattern)]
    fn forward_cached_impl(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        train: bool,
        last_only: bool,
    ) -> Tensor {
        let t = input_ids.size()[1];
        let total = attention_mask.size()[1];
        let past = total - t;
        let mut xs = input_ids.apply_t(&self.model.embed_tokens, train);
        let kind = xs.kind();
        let padded = decoding::has_padding(attention_mask);
        let positions = if padded {
            decoding::positions(attention_mask, past, t).to_kind(Kind::Float)
        } else {
            // The same positions as the cumulative count gives without padding.
            Tensor::arange_start(past, total, (Kind::Float, input_ids.device())).unsqueeze(0)
        };
        let rotary = RotaryTables::new(&positions, &self.model.inv_freq, kind);
        let mask = AttentionMask::new(attention_mask, padded, past, t, kind);
        for (layer, layer_cache) in self.model.layers.iter().zip(cache.layers_mut()) {
            let h = layer.input_layernorm.forward(&xs);
            xs = xs
                + layer
                    .self_attn
                    .forward_t(&h, &rotary, &mask, layer_cache, train);
            let h = layer.post_attention_layernorm.forward(&xs);
            xs = xs + layer.mlp.forward_t(&h, train);
        }
        if last_only && t > 1 {
            xs = xs.narrow(1, t - 1, 1);
        }
        let xs = self.model.norm.forward(&xs);
        match &self.lm_head {
            Some(head) => xs.apply_t(head, train),
            None => xs.matmul(&self.model.embed_tokens.root().ws.tr()),
        }
    }
}

impl CausalLm for LlamaForCausalLM {
    fn layers(&self) -> usize {
        self.model.layers.len()
    }

    fn forward_cached(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        train: bool,
    ) -> Tensor {
        LlamaForCausalLM::forward_cached_impl(self, input_ids, attention_mask, cache, train, false)
    }

    fn last_logits_cached(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        LlamaForCausalLM::forward_cached_impl(self, input_ids, attention_mask, cache, false, true)
            .select(1, 0)
    }
}

impl nn::ModuleT for LlamaForCausalLM {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.logits(xs, train)
    }
}

impl std::fmt::Debug for LlamaForCausalLM {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaForCausalLM")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
