//! Training steps (forward, backward, optimizer step), with gradients on, like
//! `bench/pybench/training.py`.
//!
//! Groups `lora_{64,4096}`, variant `by_hand`: a hand-written LoRA on a frozen Linear,
//! `y = base(x) + (x A^T B^T) * alpha / r`, mean squared error, SGD on `A` and `B` only.
//! The library's LoRA patch joins as variant `patched` of the same groups.
mod common;

use common::{case, group, Policy, BATCH};
use criterion::{criterion_group, criterion_main, Criterion};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

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

fn lora_by_hand(c: &mut Criterion) {
    for size in SIZES {
        let task = task(size);
        let lora_vs = nn::VarStore::new(Device::Cpu);
        let a = lora_vs.root().randn("a", &[RANK, size], 0.0, 0.01);
        let b = lora_vs.root().zeros("b", &[size, RANK]);
        let mut opt = nn::Sgd::default()
            .build(&lora_vs, LEARNING_RATE)
            .expect("an optimizer");
        let scale = ALPHA / RANK as f64;
        let mut g = group(c, &format!("lora_{size}"), Policy::for_linear(size));
        case(&mut g, "by_hand", || {
            let low_rank = task.xs.matmul(&a.tr()).matmul(&b.tr()) * scale;
            let ys = task.base.forward(&task.xs) + low_rank;
            opt.backward_step(&ys.mse_loss(&task.target, Reduction::Mean));
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = lora_by_hand
}
criterion_main!(benches);
