//! Arbitrary UTF-8 through the patch-string parser (`parse_calls`) and the global registry
//! (`Registry::global()?.parse`): never a panic, errors that render and point inside the
//! string, and what parses prints back to the same calls and specs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tch_patch::registry::{parse_calls, to_patch_string, PatchCall, Registry};
use tch_patch::PatchError;
use tch_patch::registry::PatchStringError;

/// A call's names and values, without where they were written.
fn unspanned(call: &PatchCall) -> (String, Vec<(String, String)>) {
    let args = call
        .args
        .iter()
        .map(|arg| (arg.name.clone(), format!("{:?}", arg.value)))
        .collect();
    (call.name.clone(), args)
}

/// A syntax error's offset is a char boundary inside `text`, its column counts the chars
/// before it; every error renders to a non-empty message.
fn check_error(text: &str, error: &PatchError) {
    assert!(!error.to_string().is_empty());
    if let PatchError::PatchString(PatchStringError::PatchSyntax {
        input,
        offset,
        column,
        ..
    }) = error
    {
        assert_eq!(input, text);
        assert!(
            text.is_char_boundary(*offset),
            "offset {offset} of {text:?}"
        );
        assert_eq!(*column, text[..*offset].chars().count() + 1);
    }
}

fuzz_target!(
    init: {
        // The registrations of the built-in patches are linked in: otherwise every
        // string fails as an unknown patch and the registry is not fuzzed at all.
        let registry = Registry::global().expect("the registry builds");
        assert!(registry.schema("lora").is_some(), "the built-in patches are registered");
    },
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let calls = parse_calls(text);
        match &calls {
            Ok(calls) => {
                assert!(!calls.is_empty());
                // Each call printed parses back to the same names and values.
                for call in calls {
                    let printed = call.to_string();
                    let again = parse_calls(&printed)
                        .unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
                    assert_eq!(again.len(), 1, "{printed:?}");
                    assert_eq!(unspanned(&again[0]), unspanned(call), "{printed:?}");
                }
            }
            Err(error) => check_error(text, error),
        }
        let registry = Registry::global().expect("the registry builds");
        match registry.parse(text) {
            Ok(specs) => {
                let calls = calls.expect("the registry parsed what the parser refused");
                assert_eq!(specs.len(), calls.len());
                // A printed chain of specs parses back to equal specs.
                let printed = to_patch_string(&specs);
                let again = registry
                    .parse(&printed)
                    .unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
                assert_eq!(again, specs, "{printed:?}");
            }
            Err(error) => check_error(text, &error),
        }
    }
);
