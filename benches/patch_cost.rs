//! Patching cost against parameter size (it must be flat: handles move, storage does not),
//! next to copying the table (what a copy-based patch would pay), and the forward of a
//! delegating patch against the parent's own forward.
//!
//! `make bench` or `cargo bench --bench patch_cost`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{patch, unpatch, Patch};

#[patch(from = nn::Linear)]
struct Passthrough {}

#[patch(from = nn::Embedding)]
struct Tagged {}

const DIM: i64 = 256;
/// Table sizes in bytes (f32): 1 KiB, 1 MiB, 64 MiB, 1 GiB.
const SIZES: [i64; 4] = [1 << 10, 1 << 20, 1 << 26, 1 << 30];

fn label(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

fn table(vs: &nn::VarStore, bytes: i64) -> nn::Embedding {
    let rows = (bytes / 4 / DIM).max(1);
    let config = nn::EmbeddingConfig {
        ws_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::embedding(vs.root() / "emb", rows, DIM.min(bytes / 4), config)
}

fn patching_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("patch_vs_size");
    group.sample_size(20);
    for bytes in SIZES {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut slot = Some(table(&vs, bytes));
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("field-less patch + into_base", label(bytes)),
            &bytes,
            |b, _| {
                b.iter(|| {
                    let patched = Tagged {
                        base: slot.take().expect("table"),
                    };
                    slot = Some(black_box(patched).into_base());
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new(
                "MostlyFrozenEmbedding from_existing + unpatch",
                label(bytes),
            ),
            &bytes,
            |b, _| {
                let path = vs.root() / "emb";
                b.iter(|| {
                    let base = slot.take().expect("table");
                    let patched =
                        MostlyFrozenEmbedding::from_existing(base, &path, &[0]).expect("patch");
                    slot = Some(unpatch(black_box(patched), &vs));
                })
            },
        );
        let ws = slot.as_ref().expect("table").ws.shallow_clone();
        group.bench_with_input(
            BenchmarkId::new("copy of the table (copy-based patch)", label(bytes)),
            &bytes,
            |b, _| b.iter(|| black_box(ws.copy())),
        );
    }
    group.finish();
}

fn delegating_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_linear_64x64");
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root() / "a", 64, 64, Default::default());
    let patched = Passthrough {
        base: nn::linear(vs.root() / "b", 64, 64, Default::default()),
    };
    let xs = Tensor::randn([8, 64], (Kind::Float, Device::Cpu));
    let _guard = tch::no_grad_guard();
    // One intra-op thread: at this size libtorch's thread pool only adds noise.
    tch::set_num_threads(1);
    group.bench_function("nn::Linear", |b| b.iter(|| black_box(linear.forward(&xs))));
    group.bench_function("delegating patch", |b| {
        b.iter(|| black_box(patched.forward(&xs)))
    });
    group.finish();
}

criterion_group!(benches, patching_cost, delegating_forward);
criterion_main!(benches);
