//! GPT-2 (`GPT2LMHeadModel` of transformers): learned positions, pre-norm blocks, `Conv1D`
//! layers (weights stored `[in, out]`), the tanh approximation of GELU, a head tied to the
//! token embedding.
//!
//! `c_attn`, `c_proj` and `c_fc` are [`Slot`]s of [`Conv1D`], the embeddings slots of
//! `nn::Embedding`; tensor names are transformers' (`transformer.h.0.attn.c_attn.weight`).
use crate::config::{read_object, Field, Reader};
use crate::decoding::{self, CausalLm, KvCache};
use crate::error::ModelError;
use std::path::Path;
use tch::{nn, Kind, Tensor};
use tch_patch::load::{self, Fill, Skeleton};
use tch_patch::params::{TensorRole, Visitor, VisitorMut};
use tch_patch::patches::{
    BiasOnly, BiasOnlyConfig, Dora, DoraConfig, DropoutBefore, DropoutBeforeConfig, LinearLike,
    Lora, LoraConfig,
};
use tch_patch::prelude::*;

/// The fields of `GPT2Config` this crate reads, with transformers' names.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// `vocab_size`.
    pub vocab_size: i64,
    /// `n_positions`: rows of the position table.
    pub n_positions: i64,
    /// `n_embd`.
    pub n_embd: i64,
    /// `n_layer`.
    pub n_layer: i64,
    /// `n_head`.
    pub n_head: i64,
    /// `n_inner` (defaults to `4 * n_embd`).
    pub n_inner: i64,
    /// `layer_norm_epsilon`.
    pub layer_norm_epsilon: f64,
    /// `scale_attn_weights`: scores divided by `sqrt(head_dim)`.
    pub scale_attn_weights: bool,
    /// `scale_attn_by_inverse_layer_idx`: scores of layer `i` divided by `i + 1` too.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// `embd_pdrop`, `attn_pdrop`, `resid_pdrop`: dropout in training.
    pub dropout: (f64, f64, f64),
    /// `dtype` (or `torch_dtype`): the kind the weights are stored in.
    pub dtype: Kind,
}

/// Every field of transformers' `GPT2Config` as `save_pretrained` writes it. The `summary_*`
/// fields configure `GPT2DoubleHeadsModel`'s classification head, which `GPT2LMHeadModel`
/// does not have.
const FIELDS: &[Field] = &[
    Field::Read("activation_function"),
    Field::Read("add_cross_attention"),
    Field::Info("architectures"),
    Field::Read("attn_pdrop"),
    Field::Info("bos_token_id"),
    Field::Read("dtype"),
    Field::Read("torch_dtype"),
    Field::Read("embd_pdrop"),
    Field::Info("eos_token_id"),
    Field::Info("initializer_range"),
    Field::Read("layer_norm_epsilon"),
    Field::Read("model_type"),
    Field::Read("n_embd"),
    Field::Read("n_head"),
    Field::Read("n_inner"),
    Field::Read("n_layer"),
    Field::Read("n_positions"),
    Field::Info("pad_token_id"),
    Field::Read("reorder_and_upcast_attn"),
    Field::Read("resid_pdrop"),
    Field::Read("scale_attn_by_inverse_layer_idx"),
    Field::Read("scale_attn_weights"),
    Field::Info("summary_activation"),
    Field::Info("summary_first_dropout"),
    Field::Info("summary_proj_to_labels"),
    Field::Info("summary_type"),
    Field::Info("summary_use_proj"),
    Field::Read("tie_word_embeddings"),
    Field::Info("transformers_version"),
    Field::Info("use_cache"),
    Field::Read("vocab_size"),
];

impl Gpt2Config {
    /// Reads a transformers `config.json` of `model_type` `gpt2`. Every field is read,
    /// accepted as information or refused by name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let object = read_object(path)?;
        let mut r = Reader::new(path, "", &object);
        let model_type = r.str_or("model_type", "gpt2")?;
        if model_type != "gpt2" {
            return Err(r.unsupported("model_type", format!("{model_type:?}"), "\"gpt2\""));
        }
        let activation = r.str_or("activation_function", "gelu_new")?;
        if activation != "gelu_new" {
            return Err(r.unsupported(
                "activation_function",
                format!("{activation:?}"),
                "\"gelu_new\"",
            ));
        }
        for (name, supported) in [
            ("add_cross_attention", false),
            ("reorder_and_upcast_attn", false),
        ] {
            if r.bool_or(name, supported)? != supported {
                return Err(r.unsupported(name, "true", "false"));
            }
        }
        if !r.bool_or("tie_word_embeddings", true)? {
            return Err(r.unsupported(
                "tie_word_embeddings",
                "false",
                "true (GPT-2's head is the token embedding)",
            ));
        }
        let n_embd = r.i64_or("n_embd", Some(768))?;
        let n_head = r.i64_or("n_head", Some(12))?;
        if n_embd % n_head != 0 {
            return Err(r.unsupported("n_head", n_head.to_string(), "a divisor of n_embd"));
        }
        let legacy_dtype = r.str_or("torch_dtype", "float32")?;
        let dtype = crate::folder::stored_kind(path, Some(r.str_or("dtype", legacy_dtype)?))?;
        let config = Gpt2Config {
            vocab_size: r.i64_or("vocab_size", Some(50257))?,
            n_positions: r.i64_or("n_positions", Some(1024))?,
            n_embd,
            n_layer: r.i64_or("n_layer", Some(12))?,
            n_head,
            n_inner: r.i64_or("n_inner", Some(4 * n_embd))?,
            layer_norm_epsilon: r.f64_or("layer_norm_epsilon", Some(1e-5))?,
            scale_attn_weights: r.bool_or("scale_attn_weights", true)?,
            scale_attn_by_inverse_layer_idx: r.bool_or("scale_attn_by_inverse_layer_idx", false)?,
            dropout: (
                r.f64_or("embd_pdrop", Some(0.1))?,
                r.f64_or("attn_pdrop", Some(0.1))?,
                r.f64_or("resid_pdrop", Some(0.1))?,
            ),
            dtype,
        };
        r.finish(FIELDS)?;
        Ok(config)
    }
}

/// transformers' `Conv1D`: a linear layer whose weight is stored `[in, out]`
/// (`y = x @ weight + bias`), as GPT-2's checkpoints hold it.
#[derive(Debug)]
pub struct Conv1D {
    /// `[in, out]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Conv1D {
    /// A layer of `inputs` to `outputs` features at `path`: weight normal with std 0.02, bias
    /// zero (transformers' initialisation).
    pub fn new(path: nn::Path, inputs: i64, outputs: i64) -> Self {
        Self::with_fill(path, inputs, outputs, Fill::INIT)
    }

    /// [`new`](Self::new), or inside a [`Skeleton`] without initializing the tensors.
    pub fn with_fill(path: nn::Path, inputs: i64, outputs: i64, fill: Fill) -> Self {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let weight = load::var(&path, "weight", &[inputs, outputs], init, fill);
        let bias = load::var(&path, "bias", &[outputs], nn::Init::Const(0.0), fill);
        Conv1D { weight, bias }
    }
}

impl nn::Module for Conv1D {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.matmul(&self.weight) + &self.bias
    }
}

impl Parameters for Conv1D {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.tensor("weight", &self.weight, TensorRole::Param);
        visitor.tensor("bias", &self.bias, TensorRole::Param);
    }

    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.tensor("weight", &mut self.weight, TensorRole::Param);
        visitor.tensor("bias", &mut self.bias, TensorRole::Param);
    }
}

/// Linear-like with its weight stored `[in, out]` (PEFT's `fan_in_fan_out`), so LoRA,
/// bias-only tuning and dropout-before patch its slots: a LoRA update of `c_attn` has
/// PEFT's shapes (`A: [r, in]`, `B: [out, r]`) and merges transposed, as PEFT merges it.
impl LinearLike for Conv1D {
    fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn fan_in_fan_out(&self) -> bool {
        true
    }

    fn forward_detached(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.matmul(&self.weight.detach()) + self.bias.detach()
    }

    /// `output − bias`: the forward is `xs @ W + bias` (what DoRA rescales, as in PEFT).
    fn weight_term(&self, _xs: &Tensor, output: &Tensor) -> Tensor {
        output - self.bias.detach()
    }
}

tch_patch::leaf_layer!(Conv1D);
tch_patch::patch_over!(LoraConfig, patch = Lora<_>, over(Conv1D));
tch_patch::patch_over!(DoraConfig, patch = Dora<_>, over(Conv1D));
tch_patch::patch_over!(BiasOnlyConfig, patch = BiasOnly<_>, over(Conv1D));
tch_patch::patch_over!(DropoutBeforeConfig, patch = DropoutBefore<_>, over(Conv1D));

/// Causal self-attention with one `[in, 3 * in]` projection for queries, keys and values.
#[derive(ModuleTree, Parameters)]
pub struct Gpt2Attention {
    /// Query, key and value projection.
    pub c_attn: Slot<Conv1D>,
    /// Output projection.
    pub c_proj: Slot<Conv1D>,
    #[param(skip)]
    heads: i64,
    #[param(skip)]
    scaling: f64,
    #[param(skip)]
    dropout: (f64, f64),
}

impl Gpt2Attention {
    fn forward_t(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        cache: &mut Option<(Tensor, Tensor)>,
        train: bool,
    ) -> Tensor {
        let (b, t, width) = (xs.size()[0], xs.size()[1], xs.size()[2]);
        let head_dim = width / self.heads;
        let qkv = xs.apply_t(&self.c_attn, train).split(width, 2);
        let split = |ys: &Tensor| ys.view([b, t, self.heads, head_dim]).transpose(1, 2);
        let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
        let (k, v) = decoding::append(cache, k, v);
        let scores = q.matmul(&k.transpose(-1, -2)) * self.scaling + mask;
        let weights = scores
            .softmax(-1, scores.kind())
            .to_kind(v.kind())
            .dropout(self.dropout.0, train);
        let out = weights
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .reshape([b, t, width]);
        out.apply_t(&self.c_proj, train)
            .dropout(self.dropout.1, train)
    }
}

/// `c_proj(gelu_new(c_fc(x)))`.
#[derive(ModuleTree, Parameters)]
pub struct Gpt2Mlp {
    /// Up projection.
    pub c_fc: Slot<Conv1D>,
    /// Down projection.
    pub c_proj: Slot<Conv1D>,
    #[param(skip)]
    dropout: f64,
}

/// One block: pre-norm attention and pre-norm MLP, each with a residual.
#[derive(ModuleTree, Parameters)]
pub struct Gpt2Block {
    /// Norm before attention.
    pub ln_1: nn::LayerNorm,
    /// Attention.
    pub attn: Gpt2Attention,
    /// Norm before the MLP.
    pub ln_2: nn::LayerNorm,
    /// MLP.
    pub mlp: Gpt2Mlp,
}

/// The decoder (`GPT2Model`).
#[derive(ModuleTree, Parameters)]
pub struct Gpt2Model {
    /// Token embedding, also the head.
    pub wte: Slot<nn::Embedding>,
    /// Position embedding.
    pub wpe: Slot<nn::Embedding>,
    /// Blocks.
    pub h: Vec<Gpt2Block>,
    /// Final norm.
    pub ln_f: nn::LayerNorm,
}

/// `GPT2LMHeadModel`: the decoder and its head, tied to the token embedding.
#[derive(ModuleTree, Parameters)]
pub struct Gpt2LmHeadModel {
    /// The decoder.
    pub transformer: Gpt2Model,
    #[param(skip)]
    config: Gpt2Config,
}

impl Gpt2LmHeadModel {
    /// A model with fresh weights at `path` (the VarStore root for transformers' names).
    pub fn new(path: &nn::Path, config: &Gpt2Config) -> Self {
        Self::build(path, config, Fill::INIT)
    }

    /// The model at `vs`'s root with its tensors allocated (names, shapes, the VarStore's kind) but not
    /// initialized, for a load to fill (what `from_folder` loads into).
    pub fn skeleton(vs: &nn::VarStore, config: &Gpt2Config) -> Skeleton<Self> {
        Skeleton::build(vs, |fill| Self::build(&vs.root(), config, fill))
    }

    fn build(path: &nn::Path, config: &Gpt2Config, fill: Fill) -> Self {
        let c = config;
        let root = path / "transformer";
        let norm = |p: nn::Path| {
            let config = nn::LayerNormConfig {
                eps: c.layer_norm_epsilon,
                ..Default::default()
            };
            load::layer_norm(&p, vec![c.n_embd], config, fill)
        };
        let h = (0..c.n_layer)
            .map(|i| {
                let p = &root / "h" / i;
                let mut scaling = if c.scale_attn_weights {
                    ((c.n_embd / c.n_head) as f64).powf(-0.5)
                } else {
                    1.0
                };
                if c.scale_attn_by_inverse_layer_idx {
                    scaling /= (i + 1) as f64;
                }
                Gpt2Block {
                    ln_1: norm(&p / "ln_1"),
                    attn: Gpt2Attention {
                        c_attn: Slot::new(Conv1D::with_fill(
                            &p / "attn" / "c_attn",
                            c.n_embd,
                            3 * c.n_embd,
                            fill,
                        )),
                        c_proj: Slot::new(Conv1D::with_fill(
                            &p / "attn" / "c_proj",
                            c.n_embd,
                            c.n_embd,
                            fill,
                        )),
                        heads: c.n_head,
                        scaling,
                        dropout: (c.dropout.1, c.dropout.2),
                    },
                    ln_2: norm(&p / "ln_2"),
                    mlp: Gpt2Mlp {
                        c_fc: Slot::new(Conv1D::with_fill(
                            &p / "mlp" / "c_fc",
                            c.n_embd,
                            c.n_inner,
                            fill,
                        )),
                        c_proj: Slot::new(Conv1D::with_fill(
                            &p / "mlp" / "c_proj",
                            c.n_inner,
                            c.n_embd,
                            fill,
                        )),
                        dropout: c.dropout.2,
                    },
                }
            })
            .collect();
        let embedding = |p: nn::Path, rows| {
            Slot::new(load::embedding(
                &p,
                rows,
                c.n_embd,
                Default::default(),
                fill,
            ))
        };
        let transformer = Gpt2Model {
            wte: embedding(&root / "wte", c.vocab_size),
            wpe: embedding(&root / "wpe", c.n_positions),
            h,
            ln_f: norm(&root / "ln_f"),
        };
        Gpt2LmHeadModel {
            transformer,
            config: c.clone(),
        }
    }

    /// The config the model was built from.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Logits for `input_ids` `[batch, new]` following the tokens in `cache`; see
    /// [`CausalLm::forward_cached`].
    // `xs = xs + ..`: an in-place add would overwrite a tensor the norms keep for backward.
    #[allow(clippy::assign_op_pattern)]
    fn forward_cached_impl(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        train: bool,
    ) -> Tensor {
        let t = input_ids.size()[1];
        let past = attention_mask.size()[1] - t;
        let positions = decoding::positions(attention_mask, past, t);
        let tokens = input_ids.apply_t(&self.transformer.wte, train);
        let mut xs = (tokens + positions.apply_t(&self.transformer.wpe, train))
            .dropout(self.config.dropout.0, train);
        let mask = decoding::additive_mask(attention_mask, past, t, xs.kind());
        for (block, layer_cache) in self.transformer.h.iter().zip(cache.layers_mut()) {
            let h = xs.apply(&block.ln_1);
            xs = xs + block.attn.forward_t(&h, &mask, layer_cache, train);
            let h = xs.apply(&block.ln_2);
            let mlp = &block.mlp;
            let h = h
                .apply_t(&mlp.c_fc, train)
                .gelu("tanh")
                .apply_t(&mlp.c_proj, train)
                .dropout(mlp.dropout, train);
            xs = xs + h;
        }
        let xs = xs.apply(&self.transformer.ln_f);
        xs.matmul(&self.transformer.wte.root().ws.tr())
    }
}

impl CausalLm for Gpt2LmHeadModel {
    fn layers(&self) -> usize {
        self.transformer.h.len()
    }

    fn forward_cached(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        train: bool,
    ) -> Tensor {
        Gpt2LmHeadModel::forward_cached_impl(self, input_ids, attention_mask, cache, train)
    }
}

impl nn::ModuleT for Gpt2LmHeadModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.logits(xs, train)
    }
}

impl std::fmt::Debug for Gpt2LmHeadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2LmHeadModel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
