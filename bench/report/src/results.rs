//! Case ids (`group/variant/t{threads}`), measurements, and the order the report lists them in.
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One case of one side: the median of its samples' per-iteration times and their median
/// absolute deviation (criterion's `median_abs_dev`), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measurement {
    pub median_ns: f64,
    pub spread_ns: f64,
}

/// `group/variant/t{threads}`, the id both sides give a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaseId {
    pub group: String,
    pub variant: String,
    pub threads: u32,
}

/// The results of one side, by case id.
pub(crate) type Results = BTreeMap<CaseId, Measurement>;

/// The baseline variant of a group: every other variant is compared with it.
pub(crate) const BASELINE: &str = "by_hand";

impl CaseId {
    /// Parses `group/variant/tN`; `None` for any other shape.
    pub(crate) fn parse(id: &str) -> Option<CaseId> {
        let mut parts = id.split('/');
        let (group, variant, threads) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || group.is_empty() || variant.is_empty() {
            return None;
        }
        let threads = threads.strip_prefix('t')?.parse().ok()?;
        Some(CaseId {
            group: group.to_owned(),
            variant: variant.to_owned(),
            threads,
        })
    }

    /// The same case with another variant.
    pub(crate) fn with_variant(&self, variant: &str) -> CaseId {
        CaseId {
            variant: variant.to_owned(),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/t{}", self.group, self.variant, self.threads)
    }
}

/// A size label of a group name (`1KiB`, `32MiB`, `1GiB`) in bytes.
pub(crate) fn parse_size(label: &str) -> Option<u64> {
    let units = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];
    units.iter().find_map(|(unit, scale)| {
        let number: u64 = label.strip_suffix(unit)?.parse().ok()?;
        Some(number * scale)
    })
}

/// A piece of a group name, for sorting: sizes and numbers by value, then words.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Token<'a> {
    Number(u64),
    Word(&'a str),
}

fn tokens(group: &str) -> Vec<Token<'_>> {
    group
        .split('_')
        .map(
            |part| match parse_size(part).or_else(|| part.parse().ok()) {
                Some(n) => Token::Number(n),
                None => Token::Word(part),
            },
        )
        .collect()
}

/// Groups by name with their numbers in numeric order (`linear_64` before `linear_4096`,
/// `patch_cost_32KiB` before `patch_cost_1MiB`), `by_hand` first in a group, then thread
/// counts.
impl Ord for CaseId {
    fn cmp(&self, other: &Self) -> Ordering {
        let variant_key = |v: &str| (v != BASELINE, v.to_owned());
        tokens(&self.group)
            .cmp(&tokens(&other.group))
            .then_with(|| self.group.cmp(&other.group))
            .then_with(|| variant_key(&self.variant).cmp(&variant_key(&other.variant)))
            .then_with(|| self.threads.cmp(&other.threads))
    }
}

impl PartialOrd for CaseId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_rejects_other_shapes() {
        let id = CaseId::parse("linear_64_custom/patched/t2").unwrap();
        assert_eq!(
            (id.group.as_str(), id.variant.as_str(), id.threads),
            ("linear_64_custom", "patched", 2)
        );
        assert_eq!(id.to_string(), "linear_64_custom/patched/t2");
        for bad in ["a/b", "a/b/2", "a/b/t", "a/b/t1/c", "/b/t1"] {
            assert_eq!(CaseId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sorts_sizes_numerically_and_the_baseline_first() {
        let mut ids: Vec<CaseId> = [
            "patch_cost_1GiB/copy/t1",
            "patch_cost_32KiB/copy/t1",
            "linear_4096_custom/by_hand/t1",
            "linear_64_custom/patched/t1",
            "linear_64_custom/by_hand/t2",
            "linear_64_custom/by_hand/t1",
        ]
        .iter()
        .map(|s| CaseId::parse(s).unwrap())
        .collect();
        ids.sort();
        let sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            sorted,
            [
                "linear_64_custom/by_hand/t1",
                "linear_64_custom/by_hand/t2",
                "linear_64_custom/patched/t1",
                "linear_4096_custom/by_hand/t1",
                "patch_cost_32KiB/copy/t1",
                "patch_cost_1GiB/copy/t1",
            ]
        );
    }

    #[test]
    fn size_labels() {
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("64"), None);
    }
}
