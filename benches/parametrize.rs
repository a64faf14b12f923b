//! A parametrized forward (50% magnitude pruning of a Linear's weight) uncached, inside a
//! `cached` scope, and after `Removal::Bake`, against the plain module and the same math by
//! hand; under `no_grad`, like `torch.nn.utils.parametrize` in
//! `bench/pybench/parametrize_cases.py`.
//!
//! Groups `parametrize_{64,4096}`, variants: `by_hand` (`xs.linear(w * mask, b)`), `plain`
//! (an unparametrized Linear), `uncached`, `cached` (one scope around all samples, as
//! `with parametrize.cached():` around a loop), `baked`.
mod common;

use common::{baseline, case, full_run, group, Policy, BATCH};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::{
    named_tensors, parametrize::parametrize, parametrize::MagnitudePrune,
    parametrize::Parametrized, parametrize::Removal,
};

const SIZES: [i64; 2] = [64, 4096];
const SPARSITY: f64 = 0.5;

fn pruned(path: nn::Path, size: i64) -> Parametrized<nn::Linear> {
    let linear = nn::linear(path, size, size, Default::default());
    let prune = MagnitudePrune::new(SPARSITY).expect("a valid sparsity");
    parametrize(linear, "weight", prune).expect("a parametrizable weight")
}

fn parametrized_forward<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    // Pruning masks of 4096x4096 weights take seconds to compute: not in `cargo test` runs.
    for size in SIZES.into_iter().filter(|&size| full_run() || size <= 256) {
        let vs = nn::VarStore::new(Device::Cpu);
        let uncached = pruned(vs.root() / "pruned", size);
        let mask = named_tensors(&uncached)
            .into_iter()
            .find(|t| t.name == "weight_mask")
            .expect("the pruning mask")
            .tensor;
        let original = uncached.original_module();
        let (ws, bs) = (original.ws.shallow_clone(), original.bs.as_ref().unwrap());
        let plain = nn::linear(vs.root() / "plain", size, size, Default::default());
        let baked = pruned(vs.root() / "baked", size)
            .remove(Removal::Bake)
            .expect("baking");
        let xs = Tensor::randn([BATCH, size], (Kind::Float, Device::Cpu));
        let mut g = group(c, &format!("parametrize_{size}"), Policy::for_linear(size));
        baseline(&mut g, || xs.linear(&(&ws * &mask), Some(bs)));
        case(&mut g, "plain", || plain.forward(&xs));
        case(&mut g, "uncached", || uncached.forward(&xs));
        // One scope around every sample and thread count: the transform runs once, in the
        // warm-up, as with `with parametrize.cached():` around a timed loop.
        uncached.cached(|scoped| case(&mut g, "cached", || scoped.forward(&xs)));
        case(&mut g, "baked", || baked.forward(&xs));
        g.finish();
    }
}

crate::bench_main!(parametrized_forward);
