//! Path globs: `*.attn.{q,v}`, `blocks.[0-3].mlp.*`, `head`.
//!
//! | syntax     | matches                                                         |
//! |------------|-----------------------------------------------------------------|
//! | `*`, `**`  | any run of characters, dots included (as Python's `fnmatch`)    |
//! | `?`        | any one character                                               |
//! | `[abc]`, `[0-3]`, `[!.]` | one character of (or, with `!` or `^`, not of) the set |
//! | `{a,b}`    | any of the alternatives, which may hold globs and nest (32 deep)|
//! | `\x`       | the character `x` itself                                        |
//!
//! A glob matches a whole path, not a part of it. `*` crosses dots because slot paths
//! nest to any depth (`blocks.0.attn.q`), so `*.attn.q` means "any `attn.q`", as PEFT
//! users expect from `target_modules`.
//!
//! Matching runs an edit-distance table over (glob tokens × path characters), so it takes
//! time linear in each and never backtracks; the same table gives how far a path is from
//! matching, which ranks the nearest paths when a rule matches nothing.
use super::TreeError;
use crate::error::Result;
use std::fmt;

/// A compiled path glob.
///
/// ```
/// use tch_patch::tree::Glob;
///
/// let glob = Glob::new("*.attn.{q,v}")?;
/// assert!(glob.matches("blocks.0.attn.q"));
/// assert!(!glob.matches("blocks.0.attn.k"));
/// assert_eq!(glob.distance("blocks.0.atn.q"), 1); // one character missing
/// assert!(Glob::new("blocks.{0,1").is_err());
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug)]
enum Token {
    Char(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternatives(Vec<Vec<Token>>),
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(expected) => *expected == c,
            Token::AnyChar => true,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Star | Token::Alternatives(_) => false,
        }
    }
}

impl Glob {
    /// Compiles a glob; [`TreeError::BadGlob`] says where it is malformed.
    pub fn new(pattern: &str) -> Result<Self, TreeError> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() {
            return Err(bad(pattern, 0, "an empty glob matches no slot path"));
        }
        let mut parser = Parser {
            pattern,
            chars: &chars,
            at: 0,
        };
        let tokens = parser.sequence(0)?;
        Ok(Glob {
            pattern: pattern.to_owned(),
            tokens,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the glob matches the whole `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.distance(path) == 0
    }

    /// The fewest single-character insertions, deletions or substitutions in `path` that
    /// make the glob match it (0 when it matches).
    pub fn distance(&self, path: &str) -> usize {
        let text: Vec<char> = path.chars().collect();
        let mut start = vec![INFINITE; text.len() + 1];
        start[0] = 0;
        let end = run(&self.tokens, &text, start);
        end[text.len()] as usize
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

const INFINITE: u32 = u32::MAX / 4;

/// How deep `{...}` may nest. Parsing and matching recurse once per level, so a limit keeps
/// a glob such as 100,000 `{` from overflowing the stack (an abort, not an error).
pub(crate) const MAX_NESTING: usize = 32;

/// Advances a row of costs (cost of having matched the tokens so far against each prefix of
/// `text`) through `tokens`.
fn run(tokens: &[Token], text: &[char], mut costs: Vec<u32>) -> Vec<u32> {
    skip_text(&mut costs);
    for token in tokens {
        costs = match token {
            Token::Star => {
                let mut best = INFINITE;
                costs
                    .iter()
                    .map(|&cost| {
                        best = best.min(cost);
                        best
                    })
                    .collect()
            }
            Token::Alternatives(alternatives) => {
                let mut best = vec![INFINITE; costs.len()];
                for alternative in alternatives {
                    let end = run(alternative, text, costs.clone());
                    for (b, e) in best.iter_mut().zip(end) {
                        *b = (*b).min(e);
                    }
                }
                best
            }
            single => {
                let mut next: Vec<u32> = costs.iter().map(|&cost| cost + 1).collect();
                for j in 1..costs.len() {
                    let step = u32::from(!single.accepts(text[j - 1]));
                    next[j] = next[j].min(costs[j - 1] + step);
                }
                skip_text(&mut next);
                next
            }
        };
    }
    costs
}

/// Lets path characters be skipped (inserted) at cost 1 each.
fn skip_text(costs: &mut [u32]) {
    for j in 1..costs.len() {
        costs[j] = costs[j].min(costs[j - 1] + 1);
    }
}

fn bad(pattern: &str, position: usize, reason: &'static str) -> TreeError {
    TreeError::BadGlob {
        pattern: pattern.to_owned(),
        position,
        reason,
    }
}

struct Parser<'p> {
    pattern: &'p str,
    chars: &'p [char],
    at: usize,
}

impl Parser<'_> {
    /// Tokens up to the end, or (inside `{...}`, `depth > 0`) up to an unescaped `,` or `}`.
    fn sequence(&mut self, depth: usize) -> Result<Vec<Token>, TreeError> {
        let mut tokens = Vec::new();
        while let Some(&c) = self.chars.get(self.at) {
            match c {
                ',' | '}' if depth > 0 => break,
                '}' => return Err(bad(self.pattern, self.at, "`}` without an opening `{`")),
                '*' => {
                    self.at += 1;
                    if !matches!(tokens.last(), Some(Token::Star)) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => {
                    self.at += 1;
                    tokens.push(Token::AnyChar);
                }
                '[' => tokens.push(self.class()?),
                '{' => tokens.push(self.alternatives(depth)?),
                '\\' => {
                    let escaped = self.chars.get(self.at + 1).copied().ok_or_else(|| {
                        bad(self.pattern, self.at, "a `\\` at the end escapes nothing")
                    })?;
                    self.at += 2;
                    tokens.push(Token::Char(escaped));
                }
                _ => {
                    self.at += 1;
                    tokens.push(Token::Char(c));
                }
            }
        }
        Ok(tokens)
    }

    fn alternatives(&mut self, depth: usize) -> Result<Token, TreeError> {
        let open = self.at;
        if depth >= MAX_NESTING {
            return Err(bad(
                self.pattern,
                open,
                "`{...}` alternatives nest more than 32 deep",
            ));
        }
        self.at += 1;
        let mut alternatives = vec![self.sequence(depth + 1)?];
        loop {
            match self.chars.get(self.at) {
                Some(',') => {
                    self.at += 1;
                    alternatives.push(self.sequence(depth + 1)?);
                }
                Some('}') => {
                    self.at += 1;
                    return Ok(Token::Alternatives(alternatives));
                }
                _ => return Err(bad(self.pattern, open, "`{` is never closed by `}`")),
            }
        }
    }

    fn class(&mut self) -> Result<Token, TreeError> {
        let open = self.at;
        self.at += 1;
        let negated = matches!(self.chars.get(self.at), Some('!' | '^'));
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(&c) = self.chars.get(self.at) else {
                return Err(bad(self.pattern, open, "`[` is never closed by `]`"));
            };
            if c == ']' && !first {
                self.at += 1;
                break;
            }
            first = false;
            let lo = if c == '\\' {
                self.at += 1;
                *self
                    .chars
                    .get(self.at)
                    .ok_or_else(|| bad(self.pattern, open, "`[` is never closed by `]`"))?
            } else {
                c
            };
            self.at += 1;
            let is_range = self.chars.get(self.at) == Some(&'-')
                && self.chars.get(self.at + 1).is_some_and(|&next| next != ']');
            if is_range {
                let hi_at = self.at + 1;
                let hi = self.chars[hi_at];
                if hi < lo {
                    return Err(bad(
                        self.pattern,
                        hi_at,
                        "the range's end comes before its start",
                    ));
                }
                self.at += 2;
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Token::Class { negated, ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;
    use crate::tree::TreeError;
    use proptest::prelude::*;

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).unwrap()
    }

    #[test]
    fn literals_match_whole_paths_only() {
        assert!(glob("head").matches("head"));
        assert!(!glob("head").matches("lm_head"));
        assert!(!glob("head").matches("head.x"));
        assert!(!glob("blocks.0").matches("blocks.0.attn"));
    }

    #[test]
    fn star_crosses_dots_and_may_be_empty() {
        let g = glob("*.attn.q");
        assert!(g.matches("blocks.0.attn.q"));
        assert!(g.matches("x.attn.q"));
        assert!(!g.matches("attn.q")); // the literal dot is still required
        assert!(glob("blocks.*").matches("blocks.0.attn.q"));
        assert!(glob("**").matches(""));
        assert!(glob("a*b*c").matches("abc"));
        assert!(glob("a*b*c").matches("a.x.b.y.c"));
        assert!(!glob("a*b*c").matches("a.x.c"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(glob("blocks.?.attn").matches("blocks.3.attn"));
        assert!(!glob("blocks.?.attn").matches("blocks.12.attn"));
        assert!(!glob("?").matches(""));
    }

    #[test]
    fn classes_ranges_and_negation() {
        let g = glob("blocks.[0-1].mlp");
        assert!(g.matches("blocks.0.mlp"));
        assert!(g.matches("blocks.1.mlp"));
        assert!(!g.matches("blocks.2.mlp"));
        assert!(glob("[!0-9]").matches("a"));
        assert!(!glob("[^0-9]").matches("5"));
        assert!(glob("[]]").matches("]"));
        assert!(glob("[a-]").matches("-"));
        assert!(glob("[\\]]").matches("]"));
    }

    #[test]
    fn alternatives_nest_and_hold_globs() {
        let g = glob("*.attn.{q,v}");
        assert!(g.matches("blocks.0.attn.q"));
        assert!(g.matches("blocks.11.attn.v"));
        assert!(!g.matches("blocks.0.attn.k"));
        let nested = glob("{embed,blocks.{0,1}.{attn.*,mlp}}");
        assert!(nested.matches("embed"));
        assert!(nested.matches("blocks.1.attn.o"));
        assert!(nested.matches("blocks.0.mlp"));
        assert!(!nested.matches("blocks.2.mlp"));
        assert!(glob("a{,b}").matches("a"));
        assert!(glob("a{,b}").matches("ab"));
    }

    #[test]
    fn escapes_make_specials_literal() {
        assert!(glob("a\\*").matches("a*"));
        assert!(!glob("a\\*").matches("ab"));
        assert!(glob("\\{x\\}").matches("{x}"));
        assert!(glob("a,b").matches("a,b"));
    }

    #[test]
    fn distance_counts_edits() {
        let g = glob("*.attn.{q,v}");
        assert_eq!(g.distance("blocks.0.attn.q"), 0);
        assert_eq!(g.distance("blocks.0.atn.q"), 1);
        assert_eq!(g.distance("blocks.0.attn.k"), 1);
        assert_eq!(glob("head").distance("lm_head"), 3);
        assert_eq!(glob("abc").distance(""), 3);
    }

    #[test]
    fn malformed_globs_say_where() {
        let cases = [
            ("", 0, "an empty glob matches no slot path"),
            ("a.{q,v", 2, "`{` is never closed by `}`"),
            ("a}", 1, "`}` without an opening `{`"),
            ("blocks.[0-1", 7, "`[` is never closed by `]`"),
            ("[z-a]", 3, "the range's end comes before its start"),
            ("abc\\", 3, "a `\\` at the end escapes nothing"),
            (
                "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
                32,
                "`{...}` alternatives nest more than 32 deep",
            ),
        ];
        for (pattern, at, why) in cases {
            match Glob::new(pattern) {
                Err(TreeError::BadGlob {
                    position, reason, ..
                }) => assert_eq!((position, reason), (at, why), "{pattern}"),
                other => panic!("{pattern}: {other:?}"),
            }
        }
        assert_eq!(
            Glob::new("a.{q,v").unwrap_err().to_string(),
            "bad glob `a.{q,v` at character 2: `{` is never closed by `}`"
        );
    }

    proptest! {
        #[test]
        fn never_panics(pattern in ".{0,24}", path in "[a-z0-9.{}\\[\\]*?,!^\\\\-]{0,24}") {
            if let Ok(glob) = Glob::new(&pattern) {
                let distance = glob.distance(&path);
                prop_assert_eq!(distance == 0, glob.matches(&path));
            }
        }

        #[test]
        fn glob_syntax_soup_never_panics(pattern in "[a.{}\\[\\]*?,!^\\\\-]{0,24}", path in "[a.]{0,12}") {
            if let Ok(glob) = Glob::new(&pattern) {
                let _ = glob.distance(&path);
            }
        }

        #[test]
        fn escaped_text_matches_itself_only(text in ".{1,16}", other in ".{0,16}") {
            let escaped: String = text.chars().flat_map(|c| ['\\', c]).collect();
            let glob = Glob::new(&escaped).unwrap();
            prop_assert!(glob.matches(&text));
            prop_assert_eq!(glob.matches(&other), other == text);
        }
    }
}
