//! The patch-cost cases (`patch_cost_{size}/{variant}/tN`) as series over parameter size.
use crate::results::{parse_size, Results};

/// The variants of the patch-cost groups, with what each side measures under that id.
pub(crate) const VARIANTS: [(&str, &str, &str); 3] = [
    (
        "fieldless",
        "field-less patch + `into_base`",
        "field-less `__class__` swap and back",
    ),
    (
        "mostly_frozen_embedding",
        "`MostlyFrozenEmbedding::from_existing` + `unpatch`",
        "blog's `MostlyFrozenEmbedding.from_existing` + undo",
    ),
    (
        "copy",
        "a copy of the table (`empty_like` + `copy_`, one pass)",
        "`copy.deepcopy` of the module",
    ),
];

const PREFIX: &str = "patch_cost_";

/// `(bytes, median ns)` of `variant` at `threads`, by increasing size.
pub(crate) fn series(results: &Results, variant: &str, threads: u32) -> Vec<(u64, f64)> {
    let mut points: Vec<(u64, f64)> = results
        .iter()
        .filter(|(id, _)| id.variant == variant && id.threads == threads)
        .filter_map(|(id, m)| Some((parse_size(id.group.strip_prefix(PREFIX)?)?, m.median_ns)))
        .collect();
    points.sort_by_key(|&(bytes, _)| bytes);
    points
}

/// Every size that either side measured.
pub(crate) fn sizes(sides: &[&Results]) -> Vec<u64> {
    let mut sizes: Vec<u64> = sides
        .iter()
        .flat_map(|results| results.keys())
        .filter_map(|id| parse_size(id.group.strip_prefix(PREFIX)?))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// `1 KiB`, `32 MiB`, `1 GiB`.
pub(crate) fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// The group name of a size, as the benches write it (`patch_cost_32MiB`).
pub(crate) fn group(bytes: u64) -> String {
    format!("{PREFIX}{}", size_label(bytes).replace(' ', ""))
}
