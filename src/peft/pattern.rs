//! PEFT's `rank_pattern` / `alpha_pattern`: which key gives a module its rank or alpha.
use regex::Regex;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// A PEFT `rank_pattern` or `alpha_pattern`: keys in the order of the file, each a regular
/// expression, matched as PEFT 0.21's `get_pattern_key` matches them: module `path` takes
/// the value of the **first** key `k` for which `re.match(rf"(.*\.)?({k})$", path)`
/// succeeds, else the config's `r` / `lora_alpha`. The order matters when keys overlap
/// (`attn.q` also matches `blocks.1.attn.q`), and PEFT's `save_pretrained` writes the keys
/// sorted (`json.dumps(sort_keys=True)`), so a file written by PEFT lists them sorted.
///
/// ```
/// use tch_patch::peft::PeftPattern;
///
/// let alphas = PeftPattern::new([("attn.q".to_owned(), 16.0), ("blocks.1.attn.q".to_owned(), 2.0)])?;
/// assert_eq!(alphas.get("blocks.1.attn.q"), Some(16.0)); // the first key that matches
/// assert_eq!(alphas.get("blocks.1.attn.v"), None);
/// # Ok::<(), String>(())
/// ```
#[derive(Clone)]
pub struct PeftPattern<T> {
    entries: Vec<(String, T)>,
    matchers: Vec<Regex>,
}

impl<T: Copy> PeftPattern<T> {
    /// The pattern of `entries`, in their order. An error (naming the key) for a repeated
    /// key or a key this library cannot evaluate as Python's `re` would (a syntax error,
    /// or look-around and back-references, which Rust's `regex` does not have).
    pub fn new(entries: impl IntoIterator<Item = (String, T)>) -> Result<Self, String> {
        let entries: Vec<(String, T)> = entries.into_iter().collect();
        let mut matchers = Vec::with_capacity(entries.len());
        for (index, (key, _)) in entries.iter().enumerate() {
            if entries[..index].iter().any(|(earlier, _)| earlier == key) {
                return Err(format!("key {key:?} is given twice"));
            }
            matchers.push(key_matcher(key)?);
        }
        Ok(PeftPattern { entries, matchers })
    }

    /// An empty pattern: every module takes the config's value.
    pub fn empty() -> Self {
        PeftPattern {
            entries: Vec::new(),
            matchers: Vec::new(),
        }
    }

    /// The keys and values, in order.
    pub fn entries(&self) -> &[(String, T)] {
        &self.entries
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of the first key matching `path`, if any.
    pub fn get(&self, path: &str) -> Option<T> {
        self.matchers
            .iter()
            .position(|matcher| matcher.is_match(path))
            .map(|index| self.entries[index].1)
    }
}

/// The regular expression PEFT builds of `key`: `(.*\.)?(key)$` with `re.match` (anchored
/// at the start).
fn key_matcher(key: &str) -> Result<Regex, String> {
    if key.is_empty() {
        return Err("a key is empty".into());
    }
    Regex::new(&format!(r"^(?:.*\.)?(?:{key})$")).map_err(|error| {
        let first = error.to_string();
        let first = first.lines().last().unwrap_or_default().trim().to_owned();
        format!("key {key:?} is not a regular expression this library evaluates like Python's `re` ({first})")
    })
}

/// `key` as a pattern key that matches exactly module `path` and nothing else: `^` and the
/// path with its dots escaped (`^blocks\.1\.attn\.q`).
pub(crate) fn exact_key(path: &str) -> String {
    format!("^{}", regex::escape(path))
}

impl<T: PartialEq> PartialEq for PeftPattern<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<T: fmt::Debug> fmt::Debug for PeftPattern<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// A JSON object's members in the order of the file (serde_json's `Map` sorts them); a
/// repeated key is kept twice, for the reader to refuse.
pub(crate) struct Ordered(pub(crate) Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// The members of the top-level fields `rank_pattern` and `alpha_pattern` of a config, in
/// file order; `None` for a field that is absent, `null` or not an object (the reader
/// reports those).
pub(crate) fn ordered_patterns(bytes: &[u8]) -> [Option<Vec<(String, Value)>>; 2] {
    #[derive(Deserialize)]
    struct Patterns {
        #[serde(default, deserialize_with = "lenient")]
        rank_pattern: Option<Ordered>,
        #[serde(default, deserialize_with = "lenient")]
        alpha_pattern: Option<Ordered>,
    }
    fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Ordered>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Object(Ordered),
            Other(#[allow(dead_code)] Value),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Object(members) => Some(members),
            Either::Other(_) => None,
        })
    }
    match serde_json::from_slice::<Patterns>(bytes) {
        Ok(patterns) => [
            patterns.rank_pattern.map(|o| o.0),
            patterns.alpha_pattern.map(|o| o.0),
        ],
        Err(_) => [None, None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_key_wins_as_in_peft_get_pattern_key() {
        let sorted =
            PeftPattern::new([("attn.q".to_owned(), 16), ("blocks.1.attn.q".to_owned(), 2)])
                .unwrap();
        assert_eq!(sorted.get("blocks.1.attn.q"), Some(16));
        assert_eq!(sorted.get("attn.q"), Some(16));
        let reversed =
            PeftPattern::new([("blocks.1.attn.q".to_owned(), 2), ("attn.q".to_owned(), 16)])
                .unwrap();
        assert_eq!(reversed.get("blocks.1.attn.q"), Some(2));
        assert_eq!(reversed.get("blocks.0.attn.q"), Some(16));
        assert_eq!(
            reversed.get("xattn.q"),
            None,
            "a key matches after a dot only"
        );
    }

    #[test]
    fn keys_are_regular_expressions_and_exact_keys_match_one_path() {
        let pattern = PeftPattern::new([(r"layers\.[01]\.q".to_owned(), 3)]).unwrap();
        assert_eq!(pattern.get("model.layers.1.q"), Some(3));
        assert_eq!(pattern.get("model.layers.2.q"), None);
        let exact = PeftPattern::new([(exact_key("a.q"), 1)]).unwrap();
        assert_eq!(exact.get("a.q"), Some(1));
        assert_eq!(exact.get("b.a.q"), None);
        assert_eq!(exact.get("a_q"), None);
    }

    #[test]
    fn bad_keys_are_named() {
        let error = PeftPattern::new([("(?<=x)q".to_owned(), 1)]).unwrap_err();
        assert!(error.contains("\"(?<=x)q\""), "{error}");
        let error = PeftPattern::new([("q".to_owned(), 1), ("q".to_owned(), 2)]).unwrap_err();
        assert!(error.contains("twice"), "{error}");
    }

    #[test]
    fn patterns_are_read_in_file_order() {
        let bytes = br#"{"r": 8, "alpha_pattern": {"z": 1, "a": 2}, "rank_pattern": null}"#;
        let [rank, alpha] = ordered_patterns(bytes);
        assert!(rank.is_none());
        let keys: Vec<String> = alpha.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["z", "a"]);
    }
}
