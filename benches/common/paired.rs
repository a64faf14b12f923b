//! Timing a variant and its baseline in alternation (`BENCH_MEASURE=paired`): short blocks
//! of each, one after the other, the order flipped every round; the ratio of each round's
//! two blocks, then the median of those ratios. Load that drifts over seconds slows both
//! blocks of a round alike, so the ratio survives a shared machine where two criterion runs
//! minutes apart do not (the same forward measured 5.1 and 9.0 µs in one `make bench`).
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rounds of one baseline block and one variant block (odd: a median of rounds).
const ROUNDS: usize = 31;
/// Warm-up of the pair before the rounds.
const WARM_UP: Duration = Duration::from_millis(300);

/// The outcome for one variant: the median of the per-round ratios, and each side's median
/// time per iteration.
pub(super) struct Paired {
    pub ratio: f64,
    pub baseline_ns: f64,
    pub variant_ns: f64,
    pub iterations_per_block: u64,
}

/// Alternates `baseline` and `variant` for about `total` in all.
pub(super) fn alternate(
    baseline: &mut dyn FnMut(),
    variant: &mut dyn FnMut(),
    total: Duration,
) -> Paired {
    let start = Instant::now();
    let mut warm_up_iterations = 0u64;
    while start.elapsed() < WARM_UP || warm_up_iterations == 0 {
        baseline();
        variant();
        warm_up_iterations += 1;
    }
    let per_pair = start.elapsed().as_secs_f64() / warm_up_iterations as f64;
    let iterations = ((total.as_secs_f64() / ROUNDS as f64 / per_pair) as u64).max(1);
    let block = |routine: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..iterations {
            routine();
        }
        start.elapsed().as_secs_f64() * 1e9 / iterations as f64
    };
    let (mut ratios, mut baselines, mut variants) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (b, v) = if round % 2 == 0 {
            let b = block(baseline);
            (b, block(variant))
        } else {
            let v = block(variant);
            (block(baseline), v)
        };
        ratios.push(v / b);
        baselines.push(b);
        variants.push(v);
    }
    Paired {
        ratio: median(&mut ratios),
        baseline_ns: median(&mut baselines),
        variant_ns: median(&mut variants),
        iterations_per_block: iterations,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes `{dir}/{group}/{variant}.json` (dir: `$BENCH_PAIRED_DIR`, else `target/paired`),
/// which `bench/report` reads, and prints the outcome.
pub(super) fn record(group: &str, variant: &str, threads: i32, paired: &Paired) {
    println!(
        "{group}/{variant}/t{threads}: {:.4} of by_hand in alternation ({:.0} vs {:.0} ns)",
        paired.ratio, paired.variant_ns, paired.baseline_ns
    );
    let dir = std::env::var_os("BENCH_PAIRED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/paired"))
        .join(group);
    let record = json!({
        "id": format!("{group}/{variant}/t{threads}"),
        "ratio": paired.ratio,
        "baseline_ns": paired.baseline_ns,
        "variant_ns": paired.variant_ns,
        "rounds": ROUNDS,
        "iterations_per_block": paired.iterations_per_block,
    });
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{variant}.json")), record.to_string()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", dir.display()));
}
