//! Arbitrary bytes through the adapter-manifest parser (`AdapterManifest::from_json`, what
//! `read_adapter` checks of `adapter.json`): never a panic; an error is `InvalidAdapter`
//! listing problems that render; a manifest that parses says what its JSON says (paths,
//! patch names, tensor names, shapes, dtypes), and written back with `to_json` it parses
//! to the same manifest.
#![no_main]
use tch_patch::adapter::AdapterError;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tch_patch::adapter::{AdapterManifest, ManifestPatch};
use tch_patch::registry::Registry;
use tch_patch::PatchError;

/// Each field of `patch` is the one written in `raw`, its entry of `patches`.
fn check_against_json(patch: &ManifestPatch, raw: &Value) {
    assert_eq!(raw["path"], patch.path.as_str());
    assert_eq!(raw["patch"], patch.spec.name.as_str());
    let tensors = raw["tensors"]
        .as_array()
        .expect("a parsed patch has tensors");
    assert_eq!(tensors.len(), patch.tensors.len(), "{raw}");
    for (tensor, raw) in patch.tensors.iter().zip(tensors) {
        assert_eq!(raw["name"], tensor.name.as_str());
        assert_eq!(raw["shape"], json!(tensor.shape), "{raw}");
        assert_eq!(raw["dtype"], tensor.dtype.as_str());
        let local = tensor.name.strip_prefix(&patch.path);
        assert!(local.is_some_and(|local| local.starts_with('.')), "{raw}");
    }
}

fuzz_target!(
    init: {
        // The built-in patches are linked in, else every manifest names an unknown patch.
        let registry = Registry::global().expect("the registry builds");
        assert!(registry.schema("lora").is_some(), "the built-in patches are registered");
    },
    |data: &[u8]| {
        match AdapterManifest::from_json(data) {
            Ok(manifest) => {
                let json: Value = serde_json::from_slice(data).expect("a parsed manifest is JSON");
                let patches = json["patches"].as_array().expect("a parsed manifest has patches");
                assert_eq!(patches.len(), manifest.patches.len());
                for (patch, raw) in manifest.patches.iter().zip(patches) {
                    check_against_json(patch, raw);
                }
                let written = manifest.to_json().expect("a checked manifest is written");
                let again = AdapterManifest::from_json(&written).unwrap_or_else(|error| {
                    panic!("{} does not read back: {error}", String::from_utf8_lossy(&written))
                });
                assert_eq!(again, manifest);
            }
            Err(PatchError::Adapter(AdapterError { problems, .. })) => {
                assert!(!problems.is_empty());
                assert!(problems.iter().all(|problem| !problem.to_string().is_empty()));
            }
            Err(other) => panic!("not an InvalidAdapter error: {other:?}"),
        }
    }
);
