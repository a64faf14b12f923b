//! What every causal language model here shares: the KV cache, positions and attention
//! masks as transformers' `generate` computes them, and greedy decoding.
use tch::{Kind, Tensor};

/// The keys and values every layer has seen, `[batch, heads, seq, head_dim]` each, for
/// decoding one token at a time.
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for a model of `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: (0..layers).map(|_| None).collect(),
        }
    }

    /// How many positions the cache holds (0 when empty).
    pub fn len(&self) -> i64 {
        self.layers
            .first()
            .and_then(|layer| layer.as_ref())
            .map_or(0, |(k, _)| k.size()[2])
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut Option<(Tensor, Tensor)>> {
        self.layers.iter_mut()
    }
}

/// Appends a layer's new keys and values to its cache entry; returns all of them.
pub(crate) fn append(
    cache: &mut Option<(Tensor, Tensor)>,
    k: Tensor,
    v: Tensor,
) -> (Tensor, Tensor) {
    let (k, v) = match cache.take() {
        Some((past_k, past_v)) => (Tensor::cat(&[past_k, k], 2), Tensor::cat(&[past_v, v], 2)),
        None => (k, v),
    };
    *cache = Some((k.shallow_clone(), v.shallow_clone()));
    (k, v)
}

/// Positions `[batch, t]` of the last `t` of the tokens `attention_mask` `[batch, past + t]`
/// covers: the count of unmasked tokens before each, 0 for padding (as `generate` does).
pub(crate) fn positions(attention_mask: &Tensor, past: i64, t: i64) -> Tensor {
    let absent = attention_mask.eq(0);
    (attention_mask.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1)
        .masked_fill(&absent, 0)
        .narrow(1, past, t)
}

/// Whether `attention_mask` holds a 0 (a padded position).
pub(crate) fn has_padding(attention_mask: &Tensor) -> bool {
    attention_mask.all().int64_value(&[]) == 0
}

/// How the attention of one forward is masked.
pub(crate) enum AttentionMask {
    /// Every query sees every key: one new token, no padding.
    Unmasked,
    /// Causal over the new tokens, nothing cached or padded: the attention kernel's own
    /// `is_causal`, no mask tensor.
    Causal,
    /// [`additive_mask`]: padding, or several new tokens after cached ones.
    Additive(Tensor),
}

impl AttentionMask {
    /// The mask of `t` new tokens after `past` cached ones; `padded`:
    /// [`has_padding`]`(attention_mask)`.
    pub(crate) fn new(
        attention_mask: &Tensor,
        padded: bool,
        past: i64,
        t: i64,
        kind: Kind,
    ) -> Self {
        match (padded, past, t) {
            (false, _, 1) => AttentionMask::Unmasked,
            (false, 0, _) => AttentionMask::Causal,
            _ => AttentionMask::Additive(additive_mask(attention_mask, past, t, kind)),
        }
    }
}

/// The additive mask `[batch, 1, t, past + t]` of causal attention over cached and new
/// tokens: query `i` (at `past + i`) sees key `j` when `j <= past + i` and `j` is not
/// padding; hidden keys get the kind's lowest finite value, as transformers' masks do.
pub(crate) fn additive_mask(attention_mask: &Tensor, past: i64, t: i64, kind: Kind) -> Tensor {
    let total = attention_mask.size()[1];
    let min = match kind {
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        Kind::Half => -65504.0,
        Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    };
    let future = Tensor::ones([t, total], (Kind::Bool, attention_mask.device())).triu(past + 1);
    let hidden = future
        .unsqueeze(0)
        .logical_or(&attention_mask.eq(0).unsqueeze(1));
    hidden.unsqueeze(1).to_kind(kind) * min
}

/// A causal language model that decodes with a [`KvCache`].
pub trait CausalLm {
    /// The number of layers (of cache entries).
    fn layers(&self) -> usize;

    /// Logits `[batch, new, vocab]` for `input_ids` `[batch, new]` following the tokens in
    /// `cache`; `attention_mask` `[batch, cached + new]` is 1 for a token, 0 for padding.
    fn forward_cached(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        train: bool,
    ) -> Tensor;

    /// The logits `[batch, vocab]` of the last of `input_ids` `[batch, new]` (eval mode),
    /// the new keys and values appended to `cache`: what decoding reads. A model may
    /// compute the head for that position only.
    fn last_logits_cached(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        let logits = self.forward_cached(input_ids, attention_mask, cache, false);
        logits.select(1, logits.size()[1] - 1)
    }

    /// Logits `[batch, seq, vocab]` for `input_ids` `[batch, seq]` (int64): causal attention
    /// over the whole sequence, positions `0..seq`, no cache kept.
    fn logits(&self, input_ids: &Tensor, train: bool) -> Tensor {
        let mask = Tensor::ones(input_ids.size(), (Kind::Int64, input_ids.device()));
        let mut cache = KvCache::new(self.layers());
        self.forward_cached(input_ids, &mask, &mut cache, train)
    }

    /// Greedy decoding with a KV cache, as transformers' `generate(do_sample=False)`:
    /// `input_ids` and `attention_mask` `[batch, prompt]` (prompts left-padded), up to
    /// `max_new_tokens` more tokens each, the arg-max of the last logits at every step. A
    /// sequence that produced `eos` is continued with `pad`; decoding stops when all have.
    /// Returns `[batch, prompt + generated]`.
    fn generate_greedy(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        max_new_tokens: i64,
        eos: Option<i64>,
        pad: i64,
    ) -> Tensor {
        tch::no_grad(|| {
            let mut cache = KvCache::new(self.layers());
            let mut sequences = input_ids.shallow_clone();
            let mut mask = attention_mask.to_kind(Kind::Int64);
            let mut next_input = input_ids.shallow_clone();
            let mut finished =
                Tensor::zeros([input_ids.size()[0]], (Kind::Bool, input_ids.device()));
            for _ in 0..max_new_tokens {
                let last = self.last_logits_cached(&next_input, &mask, &mut cache);
                let token = last.argmax(-1, false);
                // Without an end token no sequence finishes: no padding to put in.
                let token = match eos {
                    Some(eos) => {
                        let token =
                            token.where_self(&finished.logical_not(), &token.full_like(pad));
                        finished = finished.logical_or(&token.eq(eos));
                        token
                    }
                    None => token,
                };
                let token = token.unsqueeze(1);
                sequences = Tensor::cat(&[&sequences, &token], 1);
                mask = Tensor::cat(&[&mask, &token.ones_like()], 1);
                next_input = token;
                if eos.is_some() && finished.all().int64_value(&[]) == 1 {
                    break;
                }
            }
            sequences
        })
    }
}
