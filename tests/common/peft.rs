//! What the PEFT cross-checks (tests/peft_real.rs, peft_embedding.rs, peft_dora.rs) share:
//! reading tensor files, comparing outputs, and handing Rust's outputs to the Python side.
use super::run_python;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// The tensors of a safetensors file, by name.
pub(crate) fn read_tensors(file: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(file)
        .unwrap()
        .into_iter()
        .collect()
}

/// The largest absolute difference between two tensors.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The keys of the adapter folder's `adapter_model.safetensors`, sorted.
pub(crate) fn saved_keys(adapter: &Path) -> Vec<String> {
    read_tensors(&adapter.join("adapter_model.safetensors"))
        .into_keys()
        .collect()
}

/// The adapter folder's `adapter_config.json`.
pub(crate) fn saved_config(adapter: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap()
}

/// Writes Rust's outputs `out` and `merged` to `adapter/rust.safetensors`, then runs
/// `tests/python/<script>.py check dir adapter`, which must say PEFT loads the adapter
/// with them; returns what it said.
pub(crate) fn python_checks_rust(
    script: &str,
    dir: &Path,
    adapter: &Path,
    out: &Tensor,
    merged: &Tensor,
) -> String {
    Tensor::write_safetensors(
        &[("out", out), ("merged", merged)],
        adapter.join("rust.safetensors"),
    )
    .unwrap();
    let said = run_python(
        &format!("{script}.py"),
        &["check".as_ref(), dir.as_os_str(), adapter.as_os_str()],
    );
    assert!(
        said.contains(&format!("{script}: OK, PEFT loads the Rust adapter")),
        "{said}"
    );
    said
}
