//! Training steps (forward, backward, optimizer step), with gradients on, like
//! `bench/pybench/training.py`.
//!
//! Groups `lora_{64,4096}`, variant `by_hand`: a hand-written LoRA on a frozen Linear,
//! `y = base(x) + (x A^T B^T) * alpha / r`, mean squared error, SGD on `A` and `B` only.
//! Variant `patched`: the library's `Lora<nn::Linear>` patch on a frozen Linear of the same size, same
//! rank, alpha, loss and optimizer.
//!
//! Groups `dora_{64,4096}`, variant `by_hand`: DoRA written out as PEFT 0.21 computes it,
//! `base(x) + (s − 1) (base(x) − bias) + s (x A^T B^T) scale` with `s = m / ‖W + B A scale‖`
//! (the norm detached), SGD on `A`, `B` and `m`. Variant `patched`: the library's
//! `Dora<nn::Linear>`. PyTorch's side adds PEFT's own `LoraConfig(use_dora=True)` layer.
mod common;

use common::{baseline, case, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};
use tch_patch::patches::{Dora, DoraConfig, Lora, LoraConfig};

const SIZES: [i64; 2] = [64, 4096];
const RANK: i64 = 8;
const ALPHA: f64 = 16.0;
const LEARNING_RATE: f64 = 1e-3;

/// A frozen `size`x`size` Linear, an input batch and a regression target.
struct Task {
    _base_vs: nn::VarStore,
    base: nn::Linear,
    xs: Tensor,
    target: Tensor,
}

fn task(size: i64) -> Task {
    let mut base_vs = nn::VarStore::new(Device::Cpu);
    let base = nn::linear(base_vs.root(), size, size, Default::default());
    base_vs.freeze();
    let options = (Kind::Float, Device::Cpu);
    Task {
        _base_vs: base_vs,
        base,
        xs: Tensor::randn([BATCH, size], options),
        target: Tensor::randn([BATCH, size], options),
    }
}

/// A patch on a fresh task's frozen Linear (its own tensors in a VarStore of their own), an
/// SGD optimizer over them, and the task's input and target.
struct Patched<P> {
    _base_vs: nn::VarStore,
    _patch_vs: nn::VarStore,
    patch: P,
    opt: nn::Optimizer,
    xs: Tensor,
    target: Tensor,
}

/// The patch `build` makes on the Linear of a fresh `task(size)`, at the root of a new
/// VarStore.
fn patched<P>(size: i64, build: impl FnOnce(nn::Linear, &nn::Path) -> P) -> Patched<P> {
    let Task {
        _base_vs,
        base,
        xs,
        target,
    } = task(size);
    let patch_vs = nn::VarStore::new(Device::Cpu);
    let patch = build(base, &patch_vs.root());
    let opt = nn::Sgd::default()
        .build(&patch_vs, LEARNING_RATE)
        .expect("an optimizer");
    Patched {
        _base_vs,
        _patch_vs: patch_vs,
        patch,
        opt,
        xs,
        target,
    }
}

fn lora_training<M: Measurement>(c: &mut Criterion<M>) {
    for size in SIZES {
        // By hand: `A`, `B` and their optimizer on a frozen Linear.
        let hand = task(size);
        let lora_vs = nn::VarStore::new(Device::Cpu);
        let a = lora_vs.root().randn("a", &[RANK, size], 0.0, 0.01);
        let b = lora_vs.root().zeros("b", &[size, RANK]);
        let mut hand_opt = nn::Sgd::default()
            .build(&lora_vs, LEARNING_RATE)
            .expect("an optimizer");
        let scale = ALPHA / RANK as f64;

        // Patched: the library's LoRA on another frozen Linear of the same size.
        let config = LoraConfig {
            rank: RANK,
            alpha: ALPHA,
            ..Default::default()
        };
        let mut p = patched(size, |base, path| {
            Lora::new(base, path, &config).expect("a valid LoRA patch")
        });

        let mut g = group(c, &format!("lora_{size}"), Policy::for_linear(size));
        baseline(&mut g, || {
            let low_rank = hand.xs.matmul(&a.tr()).matmul(&b.tr()) * scale;
            let ys = hand.base.forward(&hand.xs) + low_rank;
            hand_opt.backward_step(&ys.mse_loss(&hand.target, Reduction::Mean));
        });
        case(&mut g, "patched", || {
            let ys = p.patch.forward_t(&p.xs, true); // training; dropout 0, as by hand
            p.opt
                .backward_step(&ys.mse_loss(&p.target, Reduction::Mean));
        });
        g.finish();
    }
}

fn dora_training<M: Measurement>(c: &mut Criterion<M>) {
    for size in SIZES {
        // By hand: `A`, `B`, `m` and their optimizer on a frozen Linear.
        let hand = task(size);
        let dora_vs = nn::VarStore::new(Device::Cpu);
        let a = dora_vs.root().randn("a", &[RANK, size], 0.0, 0.01);
        let b = dora_vs.root().zeros("b", &[size, RANK]);
        let m = dora_vs
            .root()
            .var_copy("m", &hand.base.ws.norm_scalaropt_dim(2, [1i64], false));
        let mut hand_opt = nn::Sgd::default()
            .build(&dora_vs, LEARNING_RATE)
            .expect("an optimizer");
        let scale = ALPHA / RANK as f64;
        let bias = hand.base.bs.as_ref().expect("a bias");

        // Patched: the library's DoRA on another frozen Linear of the same size.
        let config = DoraConfig {
            rank: RANK,
            alpha: ALPHA,
            ..Default::default()
        };
        let mut p = patched(size, |base, path| {
            Dora::new(base, path, &config).expect("a valid DoRA patch")
        });

        let mut g = group(c, &format!("dora_{size}"), Policy::for_linear(size));
        baseline(&mut g, || {
            let norm = tch::no_grad(|| {
                (&hand.base.ws + b.matmul(&a) * scale).norm_scalaropt_dim(2, [1i64], false)
            });
            let s = &m / norm;
            let base_out = hand.base.forward(&hand.xs);
            let low_rank = hand.xs.matmul(&a.tr()).matmul(&b.tr());
            let ys = &base_out + (&s - 1.0) * (&base_out - bias) + &s * low_rank * scale;
            hand_opt.backward_step(&ys.mse_loss(&hand.target, Reduction::Mean));
        });
        case(&mut g, "patched", || {
            let ys = p.patch.forward_t(&p.xs, true);
            p.opt
                .backward_step(&ys.mse_loss(&p.target, Reduction::Mean));
        });
        g.finish();
    }
}

crate::bench_main!(lora_training, dora_training);
