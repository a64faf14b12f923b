//! Forward of patched modules against the same computation written by hand without the
//! library (the zero-cost claim), under `no_grad` like `bench/pybench/forward.py`.
//!
//! Groups (`by_hand` is the baseline of each):
//! - `linear_{64,4096}_delegating`: a field-less delegating patch of `nn::Linear`, the
//!   parent's own forward (`parent`) and `xs.linear(w, b)`;
//! - `linear_{64,4096}_custom`: a patch whose forward is `base(xs) * gain`, and that closure;
//! - `embedding_onehot`: `MostlyFrozenEmbedding` (lookup + `one_hot(xs == ids) @ delta`);
//! - `embedding_scatter_add`: the blog post's algorithm (`embedding(scatter_add(W, ids,
//!   delta), xs)`) as a user-written patch;
//! - `slot_dispatch_{64,4096}`: a Linear as a plain struct field (`by_hand`), in a
//!   `Slot<nn::Linear>` (`slot`: one dynamic call), and in a slot under a delegating patch
//!   applied at run time (`patched`: two).
mod common;

use common::{baseline, case, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{patch, patch_forward, Layer, Patch, Slot};

const LINEAR_SIZES: [i64; 2] = [64, 4096];
/// The embedding table: 32768 x 256 f32 (32 MiB), 16 trainable rows, 32 x 64 token ids.
const VOCAB: i64 = 32768;
const DIM: i64 = 256;
const TRAINABLE: i64 = 16;
const TOKENS: [i64; 2] = [32, 64];

#[patch(from = nn::Linear)]
struct Passthrough {}

#[patch(from = nn::Linear)]
struct Gained {
    #[param]
    gain: Tensor,
}

#[patch_forward]
impl Gained {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs) * &self.gain
    }
}

/// A delegating patch for any slot content, applied at run time (`module_t`: what a slot
/// holds is an `nn::ModuleT`, so the patch passes the train flag on).
#[patch(from = L, module_t)]
struct Tagged<L: Layer> {}

/// The blog post's forward: the whole table with `delta` scattered in, then the lookup.
#[patch(from = nn::Embedding)]
struct ScatterAddEmbedding {
    #[param]
    delta: Tensor,
    /// The trainable ids, repeated along the embedding dimension (the blog's buffer).
    #[buffer]
    index: Tensor,
}

#[patch_forward]
impl ScatterAddEmbedding {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let table = self.base.ws.scatter_add(0, &self.index, &self.delta);
        Tensor::embedding(&table, xs, -1, false, false)
    }
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn linear_delegating<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    for size in LINEAR_SIZES {
        let vs = nn::VarStore::new(Device::Cpu);
        let patched = Passthrough {
            base: nn::linear(vs.root(), size, size, Default::default()),
        };
        let (ws, bs) = (patched.ws.shallow_clone(), patched.bs.as_ref().unwrap());
        let xs = randn(&[BATCH, size]);
        let name = format!("linear_{size}_delegating");
        let mut g = group(c, &name, Policy::for_linear(size));
        baseline(&mut g, || xs.linear(&ws, Some(bs)));
        case(&mut g, "parent", || patched.base().forward(&xs));
        case(&mut g, "patched", || patched.forward(&xs));
        g.finish();
    }
}

fn linear_custom<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    for size in LINEAR_SIZES {
        let vs = nn::VarStore::new(Device::Cpu);
        let patched = Gained {
            base: nn::linear(vs.root(), size, size, Default::default()),
            gain: randn(&[size]),
        };
        let (ws, bs) = (patched.ws.shallow_clone(), patched.bs.as_ref().unwrap());
        let gain = patched.gain.shallow_clone();
        let by_hand = |xs: &Tensor| xs.linear(&ws, Some(bs)) * &gain;
        let xs = randn(&[BATCH, size]);
        let name = format!("linear_{size}_custom");
        let mut g = group(c, &name, Policy::for_linear(size));
        baseline(&mut g, || by_hand(&xs));
        case(&mut g, "patched", || patched.forward(&xs));
        g.finish();
    }
}

/// Token ids `(i * 7919) % VOCAB` (no RNG, the same on the PyTorch side), and the trainable
/// ids `0, 2048, 4096, ...`.
fn token_ids() -> (Tensor, Vec<i64>) {
    let count = TOKENS[0] * TOKENS[1];
    let xs = (Tensor::arange(count, (Kind::Int64, Device::Cpu)) * 7919)
        .remainder(VOCAB)
        .reshape(TOKENS);
    let ids = (0..TRAINABLE).map(|i| i * (VOCAB / TRAINABLE)).collect();
    (xs, ids)
}

fn table(vs: &nn::VarStore) -> nn::Embedding {
    nn::embedding(vs.root() / "emb", VOCAB, DIM, Default::default())
}

fn embedding_onehot<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    let vs = nn::VarStore::new(Device::Cpu);
    let (xs, ids) = token_ids();
    let patched = MostlyFrozenEmbedding::from_existing(table(&vs), &(vs.root() / "emb"), &ids)
        .expect("a valid patch");
    let (ws, delta) = (patched.ws.shallow_clone(), patched.delta().shallow_clone());
    let ids = Tensor::from_slice(&ids);
    let by_hand = |xs: &Tensor| {
        let hits = xs.unsqueeze(-1).eq_tensor(&ids).to_kind(Kind::Float);
        Tensor::embedding(&ws, xs, -1, false, false) + hits.matmul(&delta)
    };
    let mut g = group(c, "embedding_onehot", Policy::Fast);
    baseline(&mut g, || by_hand(&xs));
    case(&mut g, "patched", || patched.forward(&xs));
    g.finish();
}

fn embedding_scatter_add<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    let vs = nn::VarStore::new(Device::Cpu);
    let (xs, ids) = token_ids();
    let index = Tensor::from_slice(&ids).unsqueeze(1).repeat([1, DIM]);
    let patched = ScatterAddEmbedding {
        base: table(&vs),
        delta: randn(&[TRAINABLE, DIM]),
        index,
    };
    let (ws, delta, index) = (&patched.ws, &patched.delta, &patched.index);
    let by_hand =
        |xs: &Tensor| Tensor::embedding(&ws.scatter_add(0, index, delta), xs, -1, false, false);
    let mut g = group(c, "embedding_scatter_add", Policy::Slow);
    baseline(&mut g, || by_hand(&xs));
    case(&mut g, "patched", || patched.forward(&xs));
    g.finish();
}

fn slot_dispatch<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    for size in LINEAR_SIZES {
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = || nn::linear(vs.root(), size, size, Default::default());
        let field = linear();
        let slot = Slot::new(linear());
        let mut patched = Slot::new(linear());
        patched
            .replace_with(|content| Ok(Box::new(Tagged { base: content })))
            .expect("a delegating patch");
        let xs = randn(&[BATCH, size]);
        let name = format!("slot_dispatch_{size}");
        let mut g = group(c, &name, Policy::for_linear(size));
        baseline(&mut g, || field.forward(&xs));
        case(&mut g, "slot", || slot.forward_eval(&xs));
        case(&mut g, "patched", || patched.forward_eval(&xs));
        g.finish();
    }
}

crate::bench_main!(
    linear_delegating,
    linear_custom,
    embedding_onehot,
    embedding_scatter_add,
    slot_dispatch
);
