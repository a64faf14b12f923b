//! `functional_call` (the module run with other tensors in place of its own) against the
//! module's direct forward and against the same op on the given tensors, under `no_grad`
//! like `torch.func.functional_call` in `bench/pybench/functional.py`.
//!
//! Groups `functional_{64,4096}`, variants: `by_hand` (`xs.linear(w2, b2)`), `direct` (the
//! module's forward with its own tensors), `functional_call` (strict: weight and bias given).
//!
//! Group `functional_deep_{LAYERS}`: the bookkeeping's growth with the model: a model of
//! `LAYERS` 8x8 Linears whose forward runs its first layer only, called with one weight
//! given (`functional_call`, partial), against that layer's op on the given weight.
mod common;

use common::{baseline, case, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::{functional::functional_call, functional::Strictness, Parameters};

const SIZES: [i64; 2] = [64, 4096];
const LAYERS: usize = 300;
const DEEP_WIDTH: i64 = 8;

/// Many layers, one of which the forward uses: what `functional_call` has to list and check
/// grows with the model, not with the work.
#[derive(Debug, Parameters)]
struct Deep {
    layers: Vec<nn::Linear>,
}

impl Module for Deep {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.layers[0].forward(xs)
    }
}

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
        baseline(&mut g, || xs.linear(&w2, Some(&b2)));
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

fn functional_deep<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = |i: usize| nn::linear(vs.root() / i, DEEP_WIDTH, DEEP_WIDTH, Default::default());
    let mut deep = Deep {
        layers: (0..LAYERS).map(layer).collect(),
    };
    let options = (Kind::Float, Device::Cpu);
    let w2 = Tensor::randn([DEEP_WIDTH, DEEP_WIDTH], options);
    let b = deep.layers[0].bs.as_ref().unwrap().shallow_clone();
    let xs = Tensor::randn([BATCH, DEEP_WIDTH], options);
    let mut g = group(c, &format!("functional_deep_{LAYERS}"), Policy::Fast);
    baseline(&mut g, || xs.linear(&w2, Some(&b)));
    case(&mut g, "functional_call", || {
        let overrides = [("layers.0.weight", &w2)];
        functional_call(&mut deep, overrides, Strictness::Partial, |m| {
            m.forward(&xs)
        })
        .expect("a valid override")
    });
    g.finish();
}

crate::bench_main!(functional_vs_direct, functional_deep);
