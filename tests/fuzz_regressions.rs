//! Bugs found while writing the fuzz targets of the patch-string parser, the glob matcher
//! and the adapter manifest (`fuzz/`, run by `scripts/fuzz.sh`), kept as regression tests:
//! each input must give a typed error or a result, never a stack overflow (an abort), a
//! run time that grows with the square of the input, or a field quietly dropped.
//! libFuzzer's inputs (4 KiB at most by default) are too short to show the first two, so
//! those use long inputs.
use std::time::{Duration, Instant};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{AdapterManifest, AdapterProblem};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{parse_calls, Registry};
use tch_patch::tree::TreeError;
use tch_patch::{tree::Glob, tree::Selector, PatchError};

/// Runs `f` on a thread with a small stack (as a program's worker threads may have), so a
/// recursion as deep as the input shows as an overflow here too.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deeply_nested_alternatives_are_refused_not_a_stack_overflow() {
    for pattern in [
        "{".repeat(100_000),
        "{a,".repeat(50_000),
        format!("{}{}", "{".repeat(100_000), "}".repeat(100_000)),
    ] {
        let error = on_small_stack(move || Glob::new(&pattern).map(drop));
        assert!(
            matches!(error, Err(TreeError::BadGlob { reason, .. }) if reason.contains("nest")),
            "{error:?}"
        );
    }
    // Through a patch string's targets too.
    let text = format!("lora(targets=\"{}\")", "{".repeat(100_000));
    let error = on_small_stack(move || {
        let spec = Registry::global().unwrap().parse_one(&text).unwrap();
        Selector::glob(&spec.targets).map(drop)
    });
    assert!(matches!(error, Err(TreeError::BadGlob { .. })));
}

#[test]
fn nesting_up_to_the_limit_still_matches() {
    // 32 levels: `{a{a{...}}}` matches `a` repeated 32 times.
    let depth = 32;
    let pattern = format!("{}{}", "{a".repeat(depth), "}".repeat(depth));
    let glob = on_small_stack(move || Glob::new(&pattern).unwrap());
    assert!(glob.matches(&"a".repeat(depth)));
    assert!(!glob.matches(&"a".repeat(depth - 1)));
    let deeper = format!("{}{}", "{a".repeat(depth + 1), "}".repeat(depth + 1));
    assert!(matches!(
        Glob::new(&deeper),
        Err(TreeError::BadGlob { position, .. }) if position == 2 * depth
    ));
}

/// Parsing time must grow linearly: a string of 200,000 patches (or arguments) parses in
/// well under a second, where counting columns from the start of the string for every
/// token took minutes.
#[test]
fn long_patch_strings_parse_in_linear_time() {
    let limit = Duration::from_secs(5);
    let calls = "a;".repeat(200_000);
    let start = Instant::now();
    assert_eq!(parse_calls(&calls).unwrap().len(), 200_000);
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());

    let args = format!("lora({}x=1)", "r=1, ".repeat(200_000));
    let start = Instant::now();
    let error = Registry::global().unwrap().parse(&args).unwrap_err();
    assert!(matches!(
        error,
        PatchStringError::UnknownArgument {
            column: Some(6),
            ..
        }
    ));
    assert_eq!(parse_calls(&args).unwrap()[0].args.len(), 200_001);
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());

    // An error far into a long string still gives its exact column.
    let bad = format!("{}lora(rank 8)", "a(t=\"é\"); ".repeat(50_000));
    let start = Instant::now();
    match parse_calls(&bad) {
        Err(PatchStringError::PatchSyntax { column, offset, .. }) => {
            assert_eq!(column, bad[..offset].chars().count() + 1);
            assert_eq!(&bad[offset..offset + 1], "8");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());
}

/// The `adapter_manifest` target's seed `broken3`: a dimension past `i64::MAX` made the
/// tensor's shape unknown without a problem, so the manifest read as valid and its shape
/// was never compared with the tensors file's.
#[test]
fn a_manifest_dimension_past_i64_max_is_refused_by_field() {
    let manifest = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/adapter_manifest/broken3"
    ))
    .unwrap();
    let error = AdapterManifest::from_json(&manifest).unwrap_err();
    let PatchError::Adapter(AdapterError { problems, .. }) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(&problems[..], [AdapterProblem::Field { field, message, .. }]
            if field == "patches[0].tensors[0].shape" && message.contains("9223372036854775808")),
        "{problems:?}"
    );
}
