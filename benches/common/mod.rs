//! What every bench file shares with the others and with `bench/compare.py`: the iteration
//! policy and thread counts of `bench/policy.json`, and case ids `group/variant/t{threads}`
//! (the report pairs Rust and PyTorch results by these ids, and compares every variant of a
//! group with the group's `by_hand` variant).
#![allow(dead_code)] // each bench file uses a part of it

mod instructions;
mod paired;

pub(crate) use instructions::Instructions;

use criterion::measurement::Measurement;
use criterion::{Bencher, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use serde_json::Value;
use std::time::Duration;

const POLICY_JSON: &str = include_str!("../../bench/policy.json");

/// Rows of the input batch of the forward cases (both sides).
pub(crate) const BATCH: i64 = 16;

/// An iteration policy of `bench/policy.json`: `Fast` for sub-millisecond cases, `Slow` for
/// multi-millisecond ones, `Huge` for second-long ones (copies of 1 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    Fast,
    Slow,
    Huge,
}

impl Policy {
    fn key(self) -> &'static str {
        match self {
            Policy::Fast => "fast",
            Policy::Slow => "slow",
            Policy::Huge => "huge",
        }
    }

    /// For a `size`x`size` Linear: `Fast` up to 256, else `Slow`.
    pub(crate) fn for_linear(size: i64) -> Self {
        if size <= 256 {
            Policy::Fast
        } else {
            Policy::Slow
        }
    }
}

fn policy_file() -> Value {
    serde_json::from_str(POLICY_JSON).expect("bench/policy.json is valid JSON")
}

/// The intra-op thread counts every case runs with: those of the policy file when timing,
/// 1 when counting instructions (the counter sees the calling thread only) or alternating.
pub(crate) fn thread_counts() -> Vec<i32> {
    if counting_instructions() || alternating() {
        return vec![1];
    }
    policy_file()["threads"]
        .as_array()
        .expect("bench/policy.json: `threads` is a list")
        .iter()
        .map(|t| t.as_i64().expect("a thread count") as i32)
        .collect()
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs each case once without it.
/// Cases too slow for a test run (1 GiB tables) are left out then.
pub(crate) fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// `BENCH_MEASURE=instructions`: the bench files count instructions instead of timing (see
/// [`Instructions`]; `make bench` runs them so with `CRITERION_HOME=target/criterion-instructions`).
pub(crate) fn counting_instructions() -> bool {
    std::env::var("BENCH_MEASURE").is_ok_and(|m| m == "instructions")
}

/// `BENCH_MEASURE=paired`: each variant is timed in alternation with its group's baseline
/// instead of by criterion (see `paired.rs`).
pub(crate) fn alternating() -> bool {
    std::env::var("BENCH_MEASURE").is_ok_and(|m| m == "paired")
}

/// The criterion configuration of every bench file: fewer bootstrap resamples than the
/// default (the report uses the point estimates only), so that analysis stays short.
pub(crate) fn criterion() -> Criterion {
    Criterion::default().nresamples(10_000).without_plots()
}

/// [`criterion`] counting instructions, or `None` (with the reason on stderr) where perf
/// events cannot count.
pub(crate) fn instruction_criterion() -> Option<Criterion<Instructions>> {
    match Instructions::new() {
        Ok(counter) => Some(criterion().with_measurement(counter)),
        Err(error) => {
            eprintln!("instruction counts skipped: perf events cannot count here ({error})");
            None
        }
    }
}

/// `crate::bench_main!(a, b)`: the `main` of a bench file whose functions are generic over
/// criterion's measurement. It times them, or counts their instructions when
/// [`counting_instructions`].
#[macro_export]
macro_rules! bench_main {
    ($($target:path),+ $(,)?) => {
        fn main() {
            if common::counting_instructions() {
                if let Some(criterion) = common::instruction_criterion() {
                    let mut criterion = criterion.configure_from_args();
                    $($target(&mut criterion);)+
                }
            } else {
                let mut criterion = common::criterion().configure_from_args();
                $($target(&mut criterion);)+
            }
            criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}

/// A benchmark group configured with `policy`, and (when [`alternating`]) its baseline.
pub(crate) struct Group<'c, 'f, M: Measurement> {
    criterion: BenchmarkGroup<'c, M>,
    name: String,
    /// How long a variant and the baseline alternate: twice the policy's measurement time.
    alternation: Duration,
    baseline: Option<Box<dyn FnMut() + 'f>>,
}

impl<M: Measurement> Group<'_, '_, M> {
    pub(crate) fn finish(self) {
        self.criterion.finish();
    }
}

/// A benchmark group configured with `policy`.
pub(crate) fn group<'c, 'f, M: Measurement>(
    c: &'c mut Criterion<M>,
    name: &str,
    policy: Policy,
) -> Group<'c, 'f, M> {
    let config = &policy_file()["policies"][policy.key()];
    let seconds =
        |key: &str| Duration::from_secs_f64(config[key].as_f64().expect("a duration in seconds"));
    let measurement = seconds("measurement_s");
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(seconds("warm_up_s"))
        .measurement_time(measurement)
        .sample_size(config["samples"].as_u64().expect("a sample count") as usize)
        .sampling_mode(match config["sampling"].as_str() {
            Some("flat") => SamplingMode::Flat,
            _ => SamplingMode::Linear,
        });
    Group {
        criterion: group,
        name: name.to_owned(),
        alternation: 2 * measurement,
        baseline: None,
    }
}

/// Benchmarks the group's baseline, `by_hand` (the same computation without the library),
/// which every other variant of the group is compared with. Call it before the variants.
pub(crate) fn baseline<'f, M: Measurement, O>(
    group: &mut Group<'_, 'f, M>,
    mut routine: impl FnMut() -> O + 'f,
) {
    if alternating() {
        group.baseline = Some(Box::new(move || drop(std::hint::black_box(routine()))));
    } else {
        case(group, BASELINE, routine);
    }
}

/// The name of every group's baseline variant (`bench/report` compares the others with it).
pub(crate) const BASELINE: &str = "by_hand";

/// Benchmarks `routine` as `variant/t{n}` once per thread count of the policy file; when
/// [`alternating`], times it in alternation with the group's [`baseline`] instead.
pub(crate) fn case<M: Measurement, O>(
    group: &mut Group<'_, '_, M>,
    variant: &str,
    mut routine: impl FnMut() -> O,
) {
    if alternating() {
        if let Some(baseline) = group.baseline.as_mut() {
            for threads in thread_counts() {
                tch::set_num_threads(threads);
                let mut variant_routine = || drop(std::hint::black_box(routine()));
                let outcome = paired::alternate(baseline, &mut variant_routine, group.alternation);
                paired::record(&group.name, variant, threads, &outcome);
            }
        }
        return;
    }
    case_with(group, variant, |b| b.iter(&mut routine));
}

/// Like [`case`], for a routine that drives criterion's `Bencher` itself (`iter_batched`
/// with a fresh input per iteration, `iter_custom`). Not alternated.
pub(crate) fn case_with<M: Measurement>(
    group: &mut Group<'_, '_, M>,
    variant: &str,
    mut bench: impl FnMut(&mut Bencher<'_, M>),
) {
    if alternating() {
        return;
    }
    for threads in thread_counts() {
        tch::set_num_threads(threads);
        group
            .criterion
            .bench_function(BenchmarkId::new(variant, format!("t{threads}")), &mut bench);
    }
}
