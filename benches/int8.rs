//! Int8 linear layers (`Int8Linear`) against float32 and against the same int8
//! computation by hand, like `bench/pybench/int8.py` (which also times PyTorch's
//! `quantize_dynamic` layer, fbgemm's per-channel int8).
//!
//! Groups `int8_{1,8,128}`, a 1024 -> 4096 layer at batch 1, 8 and 128, under `no_grad`:
//! `by_hand` quantizes the rows and multiplies with `_int_mm` as `Int8Linear`'s dynamic
//! forward does; `patched` is `Int8Linear` (dynamic); `weight_only_bf16` is `Int8Linear`
//! with `activations = "weight_only"` on bfloat16 inputs. Groups `float32_{1,8,128}`:
//! `by_hand` is the float32 layer the int8 one was quantized from.
mod common;

use common::{baseline, case, group, Policy};
use criterion::measurement::Measurement;
use criterion::Criterion;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{Int8Config, Int8Linear};

const INPUTS: i64 = 1024;
const OUTPUTS: i64 = 4096;
const BATCHES: [i64; 3] = [1, 8, 128];

fn int8<M: Measurement>(c: &mut Criterion<M>) {
    let _no_grad = tch::no_grad_guard();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let float = nn::linear(vs.root() / "float", INPUTS, OUTPUTS, Default::default());
    let quantized = |name: &str, activations: &str| {
        let path = vs.root() / name;
        let layer = nn::linear(&path, INPUTS, OUTPUTS, Default::default());
        tch::no_grad(|| layer.ws.shallow_clone().copy_(&float.ws));
        tch::no_grad(|| {
            layer
                .bs
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(float.bs.as_ref().unwrap())
        });
        let config = Int8Config {
            activations: activations.into(),
        };
        Int8Linear::new(layer, &path, &config).expect("a float layer quantizes")
    };
    let dynamic = quantized("dynamic", "dynamic");
    let weight_only = quantized("weight_only", "weight_only");
    let (q, scale, bias) = (
        dynamic.ws.shallow_clone(),
        dynamic.weight_scale().shallow_clone(),
        dynamic.bs.as_ref().unwrap().shallow_clone(),
    );
    let by_hand = |xs: &Tensor| {
        let high = xs.amax([1], true);
        let row_scale = high.maximum(&-xs.amin([1], true)) / 127.0;
        let row_scale = row_scale.where_scalarother(&row_scale.gt(0.0), 1.0);
        let xq = (xs / &row_scale)
            .round_()
            .clamp_(-127.0, 127.0)
            .to_kind(Kind::Int8);
        xq.internal_int_mm(&q.tr()).to_kind(Kind::Float) * row_scale * &scale + &bias
    };
    for batch in BATCHES {
        let xs = Tensor::randn([batch, INPUTS], (Kind::Float, Device::Cpu));
        let xs_bf16 = xs.to_kind(Kind::BFloat16);
        let mut g = group(c, &format!("int8_{batch}"), Policy::Slow);
        baseline(&mut g, || by_hand(&xs));
        case(&mut g, "patched", || dynamic.forward(&xs));
        case(&mut g, "weight_only_bf16", || weight_only.forward(&xs_bf16));
        g.finish();
        let mut g = group(c, &format!("float32_{batch}"), Policy::Slow);
        baseline(&mut g, || float.forward(&xs));
        g.finish();
    }
}

crate::bench_main!(int8);
