//! Guarantee 6, walked as a table: every bad input to the public API is a typed error (the
//! exact `PatchError` variant, checked with `matches!`), never a panic or an abort, and
//! leaves every tensor of the model and its VarStore as it was (name, shape, dtype,
//! device, data pointer, `requires_grad`, checksum and values).
//!
//! Real tch tensors, real files in a temporary folder. Cases are grouped by the part of
//! the API they exercise, one file each under `cases/`.
mod cases;
mod fingerprint;
mod fixture;

use fingerprint::{Fingerprint, Labelled};
use fixture::{Fixture, TreeNet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch_patch::{load::LoadError, tree::ModuleTreeExt, Parameters, PatchError};

/// One bad input: what to set up, the call, and the error it must give.
pub struct Case {
    pub name: &'static str,
    /// Run before the fingerprint is taken (a taken name, a file to read).
    pub setup: fn(&mut Fixture),
    /// The bad call. `Ok` is a failure of the case.
    pub run: fn(&mut Fixture) -> Result<(), PatchError>,
    /// Whether the error is the expected variant.
    pub expect: fn(&PatchError) -> bool,
}

/// `case!(name, |fx| call, Pattern)`, optionally `setup: |fx| ...` after the name and
/// `if guard` after the pattern.
#[macro_export]
macro_rules! case {
    ($name:expr, setup: |$sfx:ident| $setup:expr, |$fx:ident| $run:expr, $pattern:pat $(if $guard:expr)?) => {
        $crate::Case {
            name: $name,
            setup: |$sfx: &mut $crate::fixture::Fixture| {
                $setup;
            },
            run: |$fx: &mut $crate::fixture::Fixture| ($run).map(drop).map_err(Into::into),
            expect: |error| matches!(error, $pattern $(if $guard)?),
        }
    };
    ($name:expr, |$fx:ident| $run:expr, $pattern:pat $(if $guard:expr)?) => {
        $crate::case!($name, setup: |_fx| (), |$fx| $run, $pattern $(if $guard)?)
    };
}

/// The one problem of an `InvalidTensors` error (of a load or another operation), if there is exactly one.
pub fn only_problem(error: &PatchError) -> Option<&tch_patch::params::TensorProblem> {
    match error {
        PatchError::InvalidTensors { problems, .. }
        | PatchError::Load(LoadError::InvalidTensors { problems, .. })
            if problems.len() == 1 =>
        {
            problems.first()
        }
        _ => None,
    }
}

/// The fixture's net (unless a case moved it away) and tree (if a case made one).
fn modules(fx: &Fixture) -> Vec<Labelled<'_>> {
    let mut out: Vec<Labelled<'_>> = Vec::new();
    if let Some(net) = &fx.net {
        out.push(("module", net as &dyn Parameters));
    }
    if let Some(tree) = &fx.tree {
        out.push(("tree", tree as &dyn Parameters));
    }
    if let Some(seq) = &fx.seq {
        out.push(("seq", seq as &dyn Parameters));
    }
    out
}

/// Each slot of the tree with its patch names, outermost first: a patch that adds no
/// tensor still shows here.
fn slot_patches(tree: Option<&TreeNet>) -> Vec<(String, Vec<&'static str>)> {
    tree.map(|tree| {
        tree.slots()
            .into_iter()
            .map(|(path, slot)| (path, slot.patch_names()))
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn every_bad_input_is_a_typed_error_and_changes_no_tensor() {
    let cases = cases::all();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name),
            "two cases are named `{}`",
            case.name
        );
        let mut fx = Fixture::new();
        (case.setup)(&mut fx);
        let before = Fingerprint::take_all(&fx.vs, &modules(&fx));
        let patches_before = slot_patches(fx.tree.as_ref());
        let nodes_before = fx.seq.as_mut().map(|seq| seq.node_types());
        let outcome = catch_unwind(AssertUnwindSafe(|| (case.run)(&mut fx)));
        match outcome {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: panicked: {message}", case.name));
                continue;
            }
            Ok(Ok(())) => failures.push(format!("{}: succeeded", case.name)),
            Ok(Err(error)) if !(case.expect)(&error) => {
                failures.push(format!("{}: wrong error: {error:?}", case.name));
            }
            Ok(Err(error)) => {
                // The message is for people: it must render and say something.
                assert!(!error.to_string().is_empty());
            }
        }
        // A net moved into the failed call is dropped with it: the VarStore's handles (the
        // same tensors) still show whether anything was changed.
        let changes = before.differences_all(&fx.vs, &modules(&fx));
        if !changes.is_empty() {
            failures.push(format!("{}: changed the model: {changes:?}", case.name));
        }
        let nodes_after = fx.seq.as_mut().map(|seq| seq.node_types());
        if nodes_after != nodes_before {
            failures.push(format!(
                "{}: changed the nodes: {nodes_before:?} -> {nodes_after:?}",
                case.name
            ));
        }
        let patches_after = slot_patches(fx.tree.as_ref());
        if patches_after != patches_before {
            failures.push(format!(
                "{}: changed the patches of the slots: {patches_before:?} -> {patches_after:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
