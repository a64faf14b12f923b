//! The blog post's `MostlyFrozenEmbedding`, in Rust: fine-tune only a few token rows of an
//! existing `nn::Embedding` through a `delta` parameter, leaving the table untouched.
//!
//! Run with `make demo` (or `cargo run --release --example mostly_frozen_embedding`).
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::prelude::*;

const VOCAB: i64 = 64;
const DIM: i64 = 16;
const NEW_TOKENS: [i64; 3] = [5, 17, 42];
const STEPS: u64 = 300;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let device = Device::Cpu;
    let vs = nn::VarStore::new(device);
    // A "pretrained" table: its values stand for whatever training gave it.
    let table = nn::embedding(vs.root() / "emb", VOCAB, DIM, Default::default());
    let original = table.ws.copy();
    let ptr_before = table.ws.data_ptr();

    let patched = MostlyFrozenEmbedding::from_existing(table, &(vs.root() / "emb"), &NEW_TOKENS)?;
    let ptr_patched = patched.ws.data_ptr();
    println!(
        "patched `emb` as {}: tensors {:?}",
        MostlyFrozenEmbedding::NAME,
        names(&patched)
    );

    // The task: the new tokens must map to given target vectors; every other token must
    // keep its embedding. Batches mix both kinds.
    let targets = Tensor::randn([NEW_TOKENS.len() as i64, DIM], (Kind::Float, device));
    let mut opt = nn::Adam::default().build(&vs, 5e-2)?;
    let bar = ProgressBar::new(STEPS).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} loss {msg}")?.progress_chars("=> "),
    );
    let mut last_loss = f64::NAN;
    for _ in 0..STEPS {
        let xs = Tensor::randint(VOCAB, [128], (Kind::Int64, device));
        let wanted = wanted_output(&original, &targets, &xs);
        let loss = patched.forward(&xs).mse_loss(&wanted, tch::Reduction::Mean);
        opt.backward_step(&loss);
        last_loss = loss.double_value(&[]);
        bar.set_message(format!("{last_loss:.6}"));
        bar.inc(1);
    }
    bar.finish();

    let learned = patched.effective_weight();
    let rows_changed = changed_rows(&original, &learned);
    let base_untouched = patched.ws.equal(&original);
    let base = patched.into_base();
    let checks = [
        ("loss fell below 1e-3", last_loss < 1e-3),
        ("only the chosen rows changed", rows_changed == NEW_TOKENS),
        (
            "base weight data_ptr same before and after patching",
            ptr_before == ptr_patched,
        ),
        ("base weight did not change", base_untouched),
        (
            "into_base gives back the original tensor",
            base.ws.data_ptr() == ptr_before,
        ),
        (
            "into_base gives back the original values",
            base.ws.equal(&original),
        ),
    ];
    println!("rows changed by training: {rows_changed:?}");
    for (what, ok) in &checks {
        println!("check: {what:<52} {}", if *ok { "ok" } else { "FAILED" });
    }
    Ok(checks.iter().all(|(_, ok)| *ok))
}

/// What the patched table should return: the target for a new token, else the old row.
fn wanted_output(original: &Tensor, targets: &Tensor, xs: &Tensor) -> Tensor {
    let mut wanted = original.index_select(0, xs);
    for (slot, &token) in NEW_TOKENS.iter().enumerate() {
        let hit = xs.eq(token).unsqueeze(-1);
        wanted = wanted.where_self(&hit.logical_not(), &targets.get(slot as i64));
    }
    wanted
}

fn changed_rows(before: &Tensor, after: &Tensor) -> Vec<i64> {
    let differs = before.ne_tensor(after).any_dim(1, false);
    Vec::<i64>::try_from(differs.nonzero().squeeze_dim(1)).unwrap_or_default()
}

fn names(module: &MostlyFrozenEmbedding) -> Vec<String> {
    named_tensors(module).into_iter().map(|t| t.name).collect()
}
