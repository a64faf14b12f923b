//! "Did you mean": the known name nearest to a misspelt one.

/// The candidate closest to `name` in edit distance (insertions, deletions, substitutions
/// and swaps of neighbours each cost 1), if it is close enough to be a likely typo: at
/// most a third of its length away (at least 1), or a prefix of at least 3 characters.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let distance = edit_distance(name, candidate);
            let limit = (candidate.chars().count() / 3).max(1);
            let prefix =
                name.len() >= 3 && (candidate.starts_with(name) || name.starts_with(candidate));
            (distance <= limit || prefix).then_some((distance, candidate))
        })
        .min()
        .map(|(_, candidate)| candidate.to_owned())
}

/// Optimal-string-alignment distance (Damerau-Levenshtein without repeated edits), by
/// characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, nearest};

    #[test]
    fn distances() {
        assert_eq!(edit_distance("rank", "rank"), 0);
        assert_eq!(edit_distance("rnak", "rank"), 1);
        assert_eq!(edit_distance("lorra", "lora"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("attn", "atn"), 1);
    }

    #[test]
    fn suggestions() {
        let names = ["rank", "alpha", "dropout", "targets"];
        assert_eq!(nearest("rnak", names).as_deref(), Some("rank"));
        assert_eq!(nearest("alpah", names).as_deref(), Some("alpha"));
        assert_eq!(nearest("target", names).as_deref(), Some("targets"));
        assert_eq!(nearest("zzzz", names), None);
    }
}
