//! An arbitrary glob and path (the input split at its first newline) through `Glob::new`,
//! `matches` and `distance`: never a panic, `matches` agrees with `distance == 0`, a glob
//! prints back to itself, and a path escaped as a glob matches exactly that path.
#![no_main]
use tch_patch::tree::TreeError;
use libfuzzer_sys::fuzz_target;
use tch_patch::{tree::Glob, PatchError, tree::Selector};

/// `text` as a glob that matches exactly `text`.
fn escaped(text: &str) -> String {
    text.chars().flat_map(|c| ['\\', c]).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, ""));
    match Glob::new(pattern) {
        Ok(glob) => {
            let distance = glob.distance(path);
            assert_eq!(distance == 0, glob.matches(path), "{pattern:?} {path:?}");
            // Never more edits than deleting the whole path and writing every char the
            // glob needs, which is at most one per char of the pattern.
            assert!(
                distance <= path.chars().count() + pattern.chars().count(),
                "{pattern:?} {path:?}: {distance}"
            );
            assert_eq!(glob.to_string(), pattern);
            assert!(Selector::glob(pattern).is_ok());
        }
        Err(error) => {
            let PatchError::Tree(TreeError::BadGlob { position, .. }) = &error else {
                panic!("{pattern:?}: not a BadGlob: {error:?}");
            };
            assert!(
                *position <= pattern.chars().count(),
                "{pattern:?}: {position}"
            );
            assert!(!error.to_string().is_empty());
            assert!(Selector::glob(pattern).is_err());
        }
    }
    if !path.is_empty() {
        let exact = Glob::new(&escaped(path)).expect("an escaped path is a glob");
        assert!(exact.matches(path), "{path:?}");
        assert_eq!(exact.matches(pattern), pattern == path);
    }
});
