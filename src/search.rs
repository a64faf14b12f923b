//! Search spaces over patch strings (PyGlove's `pg.one_of`, `pg.floatv`, `pg.iter`,
//! `pg.random_sample`): a patch string with choices in it, `one_of(...)` for a patch
//! argument (`lora(rank=one_of(4, 8, 16))`), for a whole patch (`one_of(prelu_activation,
//! gelu_activation, "")`, where `""` is no patch) or for a hyperparameter that a patch sets,
//! and `floatv(low, high)` for a float range. Count it, enumerate every concrete patch
//! string, or sample some with a seed; apply each to a fresh model with
//! [`apply_patch_string`](crate::apply_patch_string).
//!
//! ```
//! use tch_patch::search::SearchSpace;
//!
//! let space = SearchSpace::parse(
//!     r#"one_of(prelu_activation, gelu_activation, ""); dropout_before_linear(p=one_of(0.0, 0.1))"#,
//! )?;
//! assert_eq!(space.count(), Some(6));
//! let all = space.enumerate()?;
//! assert_eq!(all.len(), 6);
//! assert_eq!(all[0].patches, "prelu_activation; dropout_before_linear(p=0.0)");
//! assert_eq!(all[0].to_string(), "choice 1 = prelu_activation, dropout_before_linear.p = 0.0");
//! assert_eq!(all[5].patches, "dropout_before_linear(p=0.1)");
//! // A seeded sample is the same every time.
//! assert_eq!(space.sample(3, 7)?, space.sample(3, 7)?);
//! # Ok::<(), tch_patch::registry::PatchStringError>(())
//! ```
use crate::registry::{PatchStringError, Registry};
use std::fmt;

/// A patch string with choices in it. Every concrete string it gives is checked with the
/// [global registry](Registry::global) (every patch known, every argument valid) when the
/// space is parsed, one choice at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    template: String,
    choices: Vec<Choice>,
}

/// One choice of a space: where it is in the template and what it may be.
#[derive(Debug, Clone, PartialEq)]
struct Choice {
    /// Byte range of `one_of(...)` / `floatv(...)` in the template.
    start: usize,
    end: usize,
    /// What the choice is called in a candidate: `lora.rank`, or `choice 1` for a patch.
    label: String,
    kind: ChoiceKind,
}

#[derive(Debug, Clone, PartialEq)]
enum ChoiceKind {
    /// One of these texts.
    OneOf(Vec<String>),
    /// A float in `[low, high]`.
    Float { low: f64, high: f64 },
}

/// One point of a space: the concrete patch string and the choice made for each
/// placeholder, in the template's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The patch string to apply (`""` is no patch: the identity).
    pub patches: String,
    /// `(label, value)` of each choice: `("lora.rank", "8")`, `("choice 1", "prelu_activation")`.
    pub choices: Vec<(String, String)>,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .choices
            .iter()
            .map(|(label, value)| {
                let value = if value.is_empty() { "none" } else { value };
                format!("{label} = {value}")
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

impl SearchSpace {
    /// Reads a template. An error names the choice that is malformed (`one_of()` with no
    /// alternative, an unclosed parenthesis, a `floatv` whose bounds are not two finite
    /// floats in order) or the alternative whose patch string the registry refuses.
    pub fn parse(template: &str) -> Result<Self, PatchStringError> {
        let choices = find_choices(template)?;
        let space = SearchSpace {
            template: template.to_owned(),
            choices,
        };
        space.check_alternatives()?;
        Ok(space)
    }

    /// How many candidates the space has; `None` when a `floatv` makes it infinite.
    pub fn count(&self) -> Option<u64> {
        self.choices
            .iter()
            .try_fold(1u64, |count, choice| match &choice.kind {
                ChoiceKind::OneOf(options) => count.checked_mul(options.len() as u64),
                ChoiceKind::Float { .. } => None,
            })
    }

    /// Every candidate, the first choice varying slowest (PyGlove's `pg.iter`). An error
    /// for an infinite space or one of more than a million candidates.
    pub fn enumerate(&self) -> Result<Vec<Candidate>, PatchStringError> {
        let count = self.count().filter(|&n| n <= 1_000_000).ok_or_else(|| {
            self.error("the space is infinite (a `floatv`) or has more than 1000000 candidates: sample it instead")
        })?;
        Ok((0..count).map(|index| self.nth(index)).collect())
    }

    /// `n` candidates drawn at random with `seed` (each choice uniformly, a `floatv`
    /// uniformly in its range), the same for the same seed on every machine (SplitMix64,
    /// not the platform's generator). Candidates may repeat, as in PyGlove's
    /// `random_sample`.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<Candidate>, PatchStringError> {
        let mut state = seed;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let picks: Vec<String> = self
                .choices
                .iter()
                .map(|choice| match &choice.kind {
                    ChoiceKind::OneOf(options) => {
                        options[(splitmix(&mut state) % options.len() as u64) as usize].clone()
                    }
                    ChoiceKind::Float { low, high } => {
                        let unit = (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                        format!("{:?}", low + (high - low) * unit)
                    }
                })
                .collect();
            out.push(self.candidate(&picks));
        }
        Ok(out)
    }

    /// The candidate at `index` in enumeration order (every choice finite).
    fn nth(&self, mut index: u64) -> Candidate {
        let mut picks = vec![String::new(); self.choices.len()];
        for (slot, choice) in picks.iter_mut().zip(&self.choices).rev() {
            if let ChoiceKind::OneOf(options) = &choice.kind {
                let len = options.len() as u64;
                *slot = options[(index % len) as usize].clone();
                index /= len;
            }
        }
        self.candidate(&picks)
    }

    /// The template with `picks[i]` in place of choice `i`.
    fn candidate(&self, picks: &[String]) -> Candidate {
        let mut text = String::new();
        let mut at = 0;
        for (choice, pick) in self.choices.iter().zip(picks) {
            text.push_str(&self.template[at..choice.start]);
            text.push_str(pick);
            at = choice.end;
        }
        text.push_str(&self.template[at..]);
        let patches: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        Candidate {
            patches: patches.join("; "),
            choices: (self.choices.iter().map(|c| c.label.clone()))
                .zip(picks.iter().cloned())
                .collect(),
        }
    }

    /// Each alternative of each choice, the others at their first: the registry must
    /// accept the string it makes.
    fn check_alternatives(&self) -> Result<(), PatchStringError> {
        let registry = Registry::global()?;
        let first: Vec<String> = self.choices.iter().map(first_pick).collect();
        registry.parse(&self.candidate(&first).patches)?;
        for (index, choice) in self.choices.iter().enumerate() {
            if let ChoiceKind::OneOf(options) = &choice.kind {
                for option in &options[1..] {
                    let mut picks = first.clone();
                    picks[index] = option.clone();
                    registry.parse(&self.candidate(&picks).patches)?;
                }
            }
        }
        Ok(())
    }

    fn error(&self, message: &str) -> PatchStringError {
        PatchStringError::PatchSyntax {
            input: self.template.clone(),
            offset: 0,
            column: 1,
            message: message.to_owned(),
        }
    }
}

fn first_pick(choice: &Choice) -> String {
    match &choice.kind {
        ChoiceKind::OneOf(options) => options[0].clone(),
        ChoiceKind::Float { low, .. } => format!("{low:?}"),
    }
}

/// SplitMix64: a small generator whose sequence is fixed by its seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Every `one_of(...)` and `floatv(...)` of `template`, outside quoted strings.
fn find_choices(template: &str) -> Result<Vec<Choice>, PatchStringError> {
    let syntax = |offset: usize, message: String| PatchStringError::PatchSyntax {
        input: template.to_owned(),
        offset,
        column: template[..offset].chars().count() + 1,
        message,
    };
    let bytes = template.as_bytes();
    let mut choices = Vec::new();
    let mut at = 0;
    let mut patches_before = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at =
                    skip_string(template, at).ok_or_else(|| syntax(at, "unclosed string".into()))?
            }
            b';' => {
                patches_before += 1;
                at += 1;
            }
            _ => {
                let rest = &template[at..];
                let word = ["one_of(", "floatv("]
                    .into_iter()
                    .find(|w| rest.starts_with(w));
                let starts_word = at == 0 || !is_name_char(bytes[at - 1]);
                let Some(word) = word.filter(|_| starts_word) else {
                    at += 1;
                    continue;
                };
                let open = at + word.len();
                let (parts, end) = split_args(template, open).ok_or_else(|| {
                    syntax(at, format!("`{}` is not closed", &word[..word.len() - 1]))
                })?;
                let label = label_at(template, at, patches_before);
                let kind = if word == "one_of(" {
                    if parts.iter().all(|p| p.is_empty()) {
                        return Err(syntax(
                            at,
                            "`one_of()` needs at least one alternative".into(),
                        ));
                    }
                    ChoiceKind::OneOf(parts.into_iter().map(|p| unquote_empty(&p)).collect())
                } else {
                    let bounds: Vec<f64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
                    match bounds[..] {
                        [low, high]
                            if parts.len() == 2
                                && low.is_finite()
                                && high.is_finite()
                                && low <= high =>
                        {
                            ChoiceKind::Float { low, high }
                        }
                        _ => {
                            return Err(syntax(
                                at,
                                "`floatv(low, high)` takes two finite floats, low <= high".into(),
                            ))
                        }
                    }
                };
                choices.push(Choice {
                    start: at,
                    end,
                    label,
                    kind,
                });
                at = end;
            }
        }
    }
    Ok(choices)
}

fn is_name_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The index just past the string starting at `at` (a `"`), escapes skipped.
fn skip_string(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The comma-separated parts after `open` (just past a `(`) up to its `)`, trimmed, and
/// the index past the `)`.
fn split_args(text: &str, open: usize) -> Option<(Vec<String>, usize)> {
    let bytes = text.as_bytes();
    let (mut depth, mut i, mut start) = (0usize, open, open);
    let mut parts = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(text, i)?;
                continue;
            }
            b'(' => depth += 1,
            b')' if depth == 0 => {
                parts.push(text[start..i].trim().to_owned());
                return Some((parts, i + 1));
            }
            b')' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(text[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `""` is the empty alternative (no patch); any other text stays as written.
fn unquote_empty(part: &str) -> String {
    if part == "\"\"" {
        String::new()
    } else {
        part.to_owned()
    }
}

/// `patch.arg` for a choice written as an argument's value, `choice N` otherwise.
fn label_at(template: &str, at: usize, patches_before: usize) -> String {
    let Some(before_eq) = template[..at].trim_end().strip_suffix('=') else {
        return format!("choice {}", patches_before + 1);
    };
    // The argument name (a dotted path for `rebind`) and the patch it is an argument of.
    let arg_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let arg = before_eq
        .trim_end()
        .rsplit(|c| !arg_char(c))
        .next()
        .unwrap_or_default();
    let segment = before_eq
        .rsplit(';')
        .next()
        .unwrap_or_default()
        .trim_start();
    let patch = segment
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    format!("{patch}.{arg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_choices_are_refused_by_what_is_wrong() {
        for (template, message) in [
            ("one_of(", "is not closed"),
            ("one_of()", "at least one alternative"),
            ("dropout_before_linear(p=floatv(0.5, 0.1))", "low <= high"),
            ("dropout_before_linear(p=floatv(0.1))", "two finite floats"),
        ] {
            let error = SearchSpace::parse(template).unwrap_err().to_string();
            assert!(error.contains(message), "{template}: {error}");
        }
        let space = SearchSpace::parse("rebind(2.out_features=one_of(1, 2))").unwrap();
        assert_eq!(
            space.enumerate().unwrap()[0].to_string(),
            "rebind.2.out_features = 1"
        );
        let unknown = SearchSpace::parse("one_of(prelu_activation, selu_activation)").unwrap_err();
        assert!(unknown.to_string().contains("selu_activation"), "{unknown}");
    }

    #[test]
    fn a_float_range_is_sampled_not_enumerated() {
        let space = SearchSpace::parse("dropout_before_linear(p=floatv(0.1, 0.3))").unwrap();
        assert_eq!(space.count(), None);
        assert!(space.enumerate().is_err());
        for candidate in space.sample(20, 1).unwrap() {
            let p: f64 = candidate.choices[0].1.parse().unwrap();
            assert!((0.1..=0.3).contains(&p), "{p}");
        }
    }
}
