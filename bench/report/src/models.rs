//! The section on a real architecture: the small Llama of `models/benches/llama.rs` against
//! transformers and PEFT (`bench/pybench/llama.py`), with decoding in tokens per second.
use crate::format::{duration, ratio};
use crate::results::{CaseId, Results};
use std::fmt::Write;

/// The cases of the section: group, variant, what it is, the tokens one call makes (for
/// tokens per second; 0 for none): batch x `NEW_TOKENS` of `models/benches/llama.rs`.
const CASES: &[(&str, &str, &str, f64)] = &[
    (
        "llama_greedy_b1",
        "generate",
        "greedy decoding, KV cache, batch 1, 32 new tokens",
        32.0,
    ),
    (
        "llama_greedy_b8",
        "generate",
        "greedy decoding, KV cache, batch 8, 32 new tokens",
        256.0,
    ),
    (
        "llama_lora_step",
        "train_step",
        "LoRA step: r=8 on q,v, batch 4 x 128, AdamW",
        0.0,
    ),
    (
        "llama_load",
        "load_to_logits",
        "folder + PEFT adapter from disk to the first logits",
        0.0,
    ),
];

/// Writes the section, or nothing when neither side ran its cases.
pub(crate) fn section(rust: &Results, python: &Results, out: &mut String) {
    let present = |results: &Results| {
        results
            .keys()
            .any(|id| CASES.iter().any(|(group, ..)| id.group == *group))
    };
    if !present(rust) && !present(python) {
        return;
    }
    let _ = writeln!(
        out,
        "## A small Llama: Rust vs transformers + PEFT\n\n\
         `bench/llama_config.json` (hidden 256, 4 layers, 8 heads, 2 KV heads, vocab 4096), \
         random weights; `models/benches/llama.rs` and `bench/pybench/llama.py`. Below 1 in the \
         last column: Rust takes less time.\n"
    );
    let _ = writeln!(
        out,
        "| case | threads | Rust | transformers + PEFT | tokens/s Rust | tokens/s Python | Rust / Python |\n\
         |---|---|---|---|---|---|---|"
    );
    for (group, variant, about, tokens) in CASES {
        // The thread counts either side ran the case with (the policy file's).
        let threads: std::collections::BTreeSet<u32> = rust
            .keys()
            .chain(python.keys())
            .filter(|id| id.group == *group && id.variant == *variant)
            .map(|id| id.threads)
            .collect();
        for threads in threads {
            let id = CaseId {
                group: (*group).to_owned(),
                variant: (*variant).to_owned(),
                threads,
            };
            let (ours, theirs) = (rust.get(&id), python.get(&id));
            let time = |m: Option<&crate::results::Measurement>| {
                m.map_or("—".to_owned(), |m| duration(m.median_ns))
            };
            let rate = |m: Option<&crate::results::Measurement>| match m {
                Some(m) if *tokens > 0.0 => format!("{:.0}", tokens / (m.median_ns * 1e-9)),
                _ => "—".to_owned(),
            };
            let versus = match (ours, theirs) {
                (Some(r), Some(p)) => ratio(r.median_ns / p.median_ns),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {about} | {threads} | {} | {} | {} | {} | {versus} |",
                time(ours),
                time(theirs),
                rate(ours),
                rate(theirs)
            );
        }
    }
    let _ = writeln!(out);
}
