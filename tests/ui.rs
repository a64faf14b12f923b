//! UI tests: what users see when they misuse `#[patch]` / `#[patch_forward]`
//! (`tests/ui/fail`, each with the expected `.stderr`), `#[derive(ModuleTree)]` and slots
//! (`tests/ui/fail_tree`), `#[derive(PatchArgs)]`'s `patch = ...` (`tests/ui/patch_args`),
//! parametrizations (`tests/ui/fail_parametrize`), and patches that must compile and run
//! (`tests/ui/pass`). Re-bless with `make ui-bless` and review every diff.

#[test]
fn ui() {
    // trybuild builds and runs the pass cases in its own target folder, without the rpath
    // that `build.rs` gives this package's own binaries: point the loader at libtorch.
    let lib = env!("TCH_PATCH_LIBTORCH_LIB");
    let path = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(existing) if !existing.is_empty() => {
            let mut joined = std::ffi::OsString::from(lib);
            joined.push(":");
            joined.push(existing);
            joined
        }
        _ => lib.into(),
    };
    std::env::set_var("LD_LIBRARY_PATH", path);

    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.compile_fail("tests/ui/fail_tree/*.rs");
    t.compile_fail("tests/ui/patch_args/*.rs");
    t.compile_fail("tests/ui/fail_parametrize/*.rs");
    t.compile_fail("tests/ui/delegate/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
