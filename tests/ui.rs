//! UI tests, one folder per macro, each case with the expected `.stderr`: what users see
//! when they misuse `#[patch]` (`tests/ui/patch`), `#[patch_forward]`
//! (`tests/ui/patch_forward`), `#[derive(Parameters)]` (`tests/ui/parameters`),
//! `#[derive(ModuleTree)]` and slots (`tests/ui/module_tree`), `#[derive(PatchArgs)]`
//! (`tests/ui/patch_args`), `#[delegatable]` / `delegate(...)` (`tests/ui/delegate`), typed
//! parametrizations (`tests/ui/parametrize`), `leaf_layer!(rebuild: T)` (`tests/ui/leaf_layer`);
//! and patches that must compile and run
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
    for folder in [
        "patch",
        "patch_forward",
        "parameters",
        "module_tree",
        "patch_args",
        "delegate",
        "parametrize",
        "leaf_layer",
    ] {
        t.compile_fail(format!("tests/ui/{folder}/*.rs"));
    }
    t.pass("tests/ui/pass/*.rs");
}
