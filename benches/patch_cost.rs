//! Patching cost against parameter size, 1 KiB to 1 GiB (it must be flat: handles move,
//! storage does not), next to copying the table (what a copy-based patch pays).
//! `bench/pybench/patch_cost.py` does the same with `__class__` swaps and `copy.deepcopy`.
//!
//! Groups `patch_cost_{size}`, variants: `fieldless` (a field-less patch and `into_base`),
//! `mostly_frozen_embedding` (`from_existing` and `unpatch`, which registers and removes two
//! VarStore entries), `copy` (a copy of the table's tensor, as `clone` makes it).
mod common;

use common::{case, full_run, group, Policy};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tch::nn;
use tch::Device;
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{patch, unpatch, Patch};

#[patch(from = nn::Embedding)]
struct Tagged {}

/// Columns of the table (fewer for the 1 KiB one).
const DIM: i64 = 256;
/// Table sizes in bytes (f32): 1 KiB, 32 KiB, 1 MiB, 32 MiB, 1 GiB.
const SIZES: [i64; 5] = [1 << 10, 1 << 15, 1 << 20, 1 << 25, 1 << 30];
/// Larger tables are left out of `cargo test` runs (allocating and copying them takes seconds).
const TEST_RUN_LIMIT: i64 = 1 << 25;

/// `1KiB`, `32MiB`, `1GiB`: the size part of the group name, parsed back by the report.
fn label(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 => format!("{}MiB", b >> 20),
        b => format!("{}KiB", b >> 10),
    }
}

fn table(vs: &nn::VarStore, bytes: i64) -> nn::Embedding {
    let dim = DIM.min(bytes / 4);
    let config = nn::EmbeddingConfig {
        ws_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::embedding(vs.root() / "emb", bytes / 4 / dim, dim, config)
}

fn copy_policy(bytes: i64) -> Policy {
    match bytes {
        b if b >= 1 << 30 => Policy::Huge,
        b if b >= 1 << 25 => Policy::Slow,
        _ => Policy::Fast,
    }
}

fn patching_cost(c: &mut Criterion) {
    let sizes = SIZES
        .into_iter()
        .filter(|&bytes| full_run() || bytes <= TEST_RUN_LIMIT);
    for bytes in sizes {
        let vs = nn::VarStore::new(Device::Cpu);
        let path = vs.root() / "emb";
        let mut slot = Some(table(&vs, bytes));
        let mut g = group(c, &format!("patch_cost_{}", label(bytes)), Policy::Fast);
        case(&mut g, "fieldless", || {
            let patched = Tagged {
                base: slot.take().expect("the table"),
            };
            slot = Some(black_box(patched).into_base());
        });
        case(&mut g, "mostly_frozen_embedding", || {
            let base = slot.take().expect("the table");
            let patched = MostlyFrozenEmbedding::from_existing(base, &path, &[0]).expect("patch");
            slot = Some(unpatch(black_box(patched), &vs));
        });
        g.finish();
        let ws = slot.as_ref().expect("the table").ws.shallow_clone();
        let mut g = group(
            c,
            &format!("patch_cost_{}", label(bytes)),
            copy_policy(bytes),
        );
        // `empty_like` + `copy_`, one pass like PyTorch's `clone` (tch's `Tensor::copy`
        // zero-fills its result first: a second pass over the table).
        case(&mut g, "copy", || {
            tch::no_grad(|| {
                let mut copy = ws.empty_like();
                copy.copy_(&ws);
                copy
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = patching_cost
}
criterion_main!(benches);
