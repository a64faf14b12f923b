//! Arbitrary bytes as a checkpoint file through `load_safetensors` (copying, assigning and
//! mapping) onto a small model (and
//! through `read_adapter` as an adapter's tensors file): never a panic, never a libtorch
//! exception's stack trace in a message; an error is a typed one (`LoadError::Read`,
//! `InvalidTensors`, `InvalidAdapter`) and leaves the model exactly as it was; a load that
//! succeeds wrote the file's values.
#![no_main]
use tch_patch::adapter::AdapterError;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use tch::{nn, Device, Tensor};
use tch_patch::{load::load_safetensors, load::LoadError, load::LoadMode, load::LoadOptions, PatchError};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tch-patch-fuzz-{}-{name}", std::process::id()))
}

/// The model's tensors, deep-copied.
fn values(linear: &nn::Linear) -> Vec<Tensor> {
    let mut all = vec![linear.ws.copy()];
    all.extend(linear.bs.as_ref().map(Tensor::copy));
    all
}

fuzz_target!(|data: &[u8]| {
    let path = scratch("checkpoint.safetensors");
    std::fs::write(&path, data).unwrap();
    // Every mode: copying into the tensors, assigning the file's, mapping the file.
    for mode in [LoadMode::Copy, LoadMode::Assign, LoadMode::Map] {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
        let before = values(&linear);
        let options = LoadOptions::new().allow_missing(true).allow_unexpected(true).mode(mode);
        match load_safetensors(&mut linear, &path, &options) {
            Ok(_) => {}
            Err(error @ (LoadError::Read { .. } | LoadError::InvalidTensors { .. })) => {
                let text = error.to_string();
                assert!(!text.contains("Exception raised from"), "a C++ stack trace: {text}");
                let after = values(&linear);
                assert!(before.iter().zip(&after).all(|(b, a)| b.equal(a)), "changed on error");
            }
            Err(other) => panic!("not a load error: {other:?}"),
        }
    }

    // The same bytes as an adapter's tensors file, next to a valid manifest.
    let dir = scratch("adapter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(tch_patch::adapter::TENSORS_FILE), data).unwrap();
    std::fs::write(
        dir.join(tch_patch::adapter::MANIFEST_FILE),
        br#"{"format":"tch-patch-adapter","format_version":1,"library_version":"0","patches":[]}"#,
    )
    .unwrap();
    match tch_patch::adapter::read_adapter(&dir) {
        Ok(_) | Err(PatchError::Adapter(AdapterError { .. })) => {}
        Err(other) => panic!("not an adapter error: {other:?}"),
    }
});
