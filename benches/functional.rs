//! `functional_call` (the module run with other tensors in place of its own) against the
//! module's direct forward and against the same op on the given tensors, under `no_grad`
//! like `torch.func.functional_call` in `bench/pybench/functional.py`.
//!
//! Groups `functional_{64,4096}`, variants: `by_hand` (`xs.linear(w2, b2)`), `direct` (the
//! module's forward with its own tensors), `functional_call` (strict: weight and bias given).
mod common;

use common::{case, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::{functional_call, Strictness};

const SIZES: [i64; 2] = [64, 4096];

fn functional_vs_direct<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    for size in SIZES {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut linear = nn::linear(vs.root(), size, size, Default::default());
        let options = (Kind::Float, Device::Cpu);
        let (w2, b2) = (
            Tensor::randn([size, size], options),
            Tensor::randn([size], options),
        );
        let xs = Tensor::randn([BATCH, size], options);
        let mut g = group(c, &format!("functional_{size}"), Policy::for_linear(size));
        case(&mut g, "by_hand", || xs.linear(&w2, Some(&b2)));
        case(&mut g, "direct", || linear.forward(&xs));
        case(&mut g, "functional_call", || {
            let overrides = [("weight", &w2), ("bias", &b2)];
            functional_call(&mut linear, overrides, Strictness::Strict, |m| {
                m.forward(&xs)
            })
            .expect("valid overrides")
        });
        g.finish();
    }
}

crate::bench_main!(functional_vs_direct);
