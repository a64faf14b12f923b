//! Compile-fail cases of `#[derive(ModuleTree)]` and `Slot` (`tests/ui/fail_tree`, each
//! with the expected `.stderr`). Re-bless with `TRYBUILD=overwrite cargo test --test
//! ui_tree` and review every diff.

#[test]
fn ui_tree() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail_tree/*.rs");
}
