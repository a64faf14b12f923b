//! Training steps (forward, backward, optimizer step), with gradients on, like
//! `bench/pybench/training.py`.
//!
//! Groups `lora_{64,4096}`, variant `by_hand`: a hand-written LoRA on a frozen Linear,
//! `y = base(x) + (x A^T B^T) * alpha / r`, mean squared error, SGD on `A` and `B` only.
//! Variant `patched`: the library's `Lora<nn::Linear>` patch on a frozen Linear of the same size, same
//! rank, alpha, loss and optimizer.
mod common;

use common::{baseline, case, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};
use tch_patch::patches::{Lora, LoraConfig};

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
        let Task {
            _base_vs,
            base,
            xs,
            target,
        } = task(size);
        let patch_vs = nn::VarStore::new(Device::Cpu);
        let config = LoraConfig {
            rank: RANK,
            alpha: ALPHA,
            ..Default::default()
        };
        let patched = Lora::new(base, &patch_vs.root(), &config).expect("a valid LoRA patch");
        let mut patch_opt = nn::Sgd::default()
            .build(&patch_vs, LEARNING_RATE)
            .expect("an optimizer");

        let mut g = group(c, &format!("lora_{size}"), Policy::for_linear(size));
        baseline(&mut g, || {
            let low_rank = hand.xs.matmul(&a.tr()).matmul(&b.tr()) * scale;
            let ys = hand.base.forward(&hand.xs) + low_rank;
            hand_opt.backward_step(&ys.mse_loss(&hand.target, Reduction::Mean));
        });
        case(&mut g, "patched", || {
            let ys = patched.forward_t(&xs, true); // training; dropout 0, as by hand
            patch_opt.backward_step(&ys.mse_loss(&target, Reduction::Mean));
        });
        g.finish();
    }
}

crate::bench_main!(lora_training);
