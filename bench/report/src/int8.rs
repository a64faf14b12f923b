//! The section on int8 linear layers (`benches/int8.rs`, `bench/pybench/int8.py`): each
//! int8 forward's time over the float32 layer's, on its own side.
use crate::format::{duration, ratio};
use crate::results::{CaseId, Results, BASELINE};
use std::fmt::Write;

/// Batches of the cases: groups `int8_{b}` and `float32_{b}`.
const BATCHES: [u32; 3] = [1, 8, 128];

/// Columns: side, variant of `int8_{b}`, heading.
const COLUMNS: [(Side, &str, &str); 4] = [
    (Side::Rust, "patched", "Rust `int8` (dynamic)"),
    (
        Side::Rust,
        "weight_only_bf16",
        "Rust `int8` weight-only, bf16 in",
    ),
    (Side::Python, BASELINE, "PyTorch, the same int8 ops"),
    (
        Side::Python,
        "quantize_dynamic",
        "PyTorch `quantize_dynamic` (fbgemm)",
    ),
];

#[derive(Clone, Copy)]
enum Side {
    Rust,
    Python,
}

fn id(group: &str, variant: &str, threads: u32) -> CaseId {
    CaseId {
        group: group.to_owned(),
        variant: variant.to_owned(),
        threads,
    }
}

/// Writes the section, or nothing when neither side ran its cases.
pub(crate) fn section(rust: &Results, python: &Results, out: &mut String) {
    let threads: Vec<u32> = {
        let mut t: Vec<u32> = (rust.keys().chain(python.keys()))
            .filter(|id| id.group.starts_with("float32_"))
            .map(|id| id.threads)
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    if threads.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Int8 linear layers: time / the float32 layer's\n");
    let _ = writeln!(
        out,
        "A 1024 -> 4096 layer under `no_grad`; each int8 forward over the float32 layer it \
         was quantized from, on the same side (below 1: faster).\n"
    );
    let headings: Vec<&str> = COLUMNS.iter().map(|(_, _, h)| *h).collect();
    let _ = writeln!(
        out,
        "| batch | threads | float32 Rust | float32 PyTorch | {} |\n|---|---|---|---|{}",
        headings.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for batch in BATCHES {
        for &t in &threads {
            let float = id(&format!("float32_{batch}"), BASELINE, t);
            let base = |results: &Results| results.get(&float).map(|m| m.median_ns);
            let time = |results: &Results| base(results).map_or("—".to_owned(), duration);
            let cells: Vec<String> = COLUMNS
                .iter()
                .map(|&(side, variant, _)| {
                    let results = match side {
                        Side::Rust => rust,
                        Side::Python => python,
                    };
                    let case = results.get(&id(&format!("int8_{batch}"), variant, t));
                    match (case, base(results)) {
                        (Some(m), Some(b)) => ratio(m.median_ns / b),
                        _ => "—".to_owned(),
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "| {batch} | {t} | {} | {} | {} |",
                time(rust),
                time(python),
                cells.join(" | ")
            );
        }
    }
    out.push('\n');
}
