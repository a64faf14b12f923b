//! Atomic saves through the public API, on real files: round trips (a patched model
//! included), replacing an existing file completely, and no temporary file left behind.
//! (Failures injected at every step of a save are in `src/save/fault_tests.rs`,
//! where the file-system seam is.)
mod common;

use common::{Mlp, TempFile, TiedLm};
use tch::nn;
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{
    load::load_safetensors, load::LoadOptions, named_tensors, save::save_module,
    save::save_safetensors_atomic,
};

/// Names of the files in `path`'s folder that start with `.{file name}.tmp`.
fn temp_files_of(path: &std::path::Path) -> Vec<String> {
    let prefix = format!(".{}.tmp", path.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn a_module_saved_under_a_prefix_loads_back_bit_for_bit() {
    tch::manual_seed(21);
    let file = TempFile::new("save-mlp");
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), 3, 5, 2);
    save_module(&mlp, file.path(), "encoder").unwrap();

    let other = nn::VarStore::new(Device::Cpu);
    let mut copy = Mlp::new(&other.root(), 3, 5, 2);
    let report = load_safetensors(
        &mut copy,
        file.path(),
        &LoadOptions::new().prefix("encoder"),
    )
    .unwrap();
    assert_eq!(report.loaded.len(), 4);
    for (a, b) in named_tensors(&mlp).iter().zip(named_tensors(&copy)) {
        assert!(a.tensor.equal(&b.tensor), "`{}`", a.name);
    }
    assert!(temp_files_of(file.path()).is_empty());
}

#[test]
fn saving_over_a_file_replaces_it_whole() {
    let file = TempFile::new("save-replace");
    let big = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
    save_safetensors_atomic(file.path(), &[("a", &big), ("b", &big)]).unwrap();
    let small = Tensor::from_slice(&[1.5f64]);
    save_safetensors_atomic(file.path(), &[("c", &small)]).unwrap();
    let back = Tensor::read_safetensors(file.path()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, "c");
    assert!(back[0].1.equal(&small));
    assert!(temp_files_of(file.path()).is_empty());
}

#[test]
fn tied_tensors_and_a_non_contiguous_view_are_saved_by_value() {
    tch::manual_seed(22);
    let file = TempFile::new("save-tied");
    let vs = nn::VarStore::new(Device::Cpu);
    let lm = TiedLm::new(&vs.root(), 7, 3);
    save_module(&lm, file.path(), "").unwrap();
    let other = nn::VarStore::new(Device::Cpu);
    let mut copy = TiedLm::new(&other.root(), 7, 3);
    load_safetensors(&mut copy, file.path(), &LoadOptions::new()).unwrap();
    assert!(copy.emb.ws.equal(&lm.emb.ws));
    assert!(copy.head.ws.is_set_to(&copy.emb.ws), "still tied");

    let transposed = lm.emb.ws.transpose(0, 1);
    assert!(!transposed.is_contiguous());
    save_safetensors_atomic(file.path(), &[("t", &transposed)]).unwrap();
    let back = Tensor::read_safetensors(file.path()).unwrap();
    assert!(back[0].1.equal(&transposed));
}

#[test]
fn a_patched_model_saves_its_added_tensors_and_loads_into_a_fresh_patch() {
    tch::manual_seed(23);
    let file = TempFile::new("save-patched");
    let vs = nn::VarStore::new(Device::Cpu);
    let emb = nn::embedding(vs.root() / "emb", 12, 4, Default::default());
    let patched = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[2, 5]).unwrap();
    let _ = tch::no_grad(|| patched.delta().shallow_clone().fill_(0.25));
    save_module(&patched, file.path(), "emb").unwrap();
    let names: Vec<String> = Tensor::read_safetensors(file.path())
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for expected in ["emb.weight", "emb.delta", "emb.token_ids"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    let other = nn::VarStore::new(Device::Cpu);
    let fresh = nn::embedding(other.root() / "emb", 12, 4, Default::default());
    let mut copy =
        MostlyFrozenEmbedding::from_existing(fresh, &(other.root() / "emb"), &[2, 5]).unwrap();
    load_safetensors(&mut copy, file.path(), &LoadOptions::new().prefix("emb")).unwrap();
    let xs = Tensor::from_slice(&[0i64, 2, 5, 11]);
    assert!(copy.forward(&xs).equal(&patched.forward(&xs)));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [Kind; 10] = [
        Kind::Bool,
        Kind::Uint8,
        Kind::Int8,
        Kind::Int16,
        Kind::Int,
        Kind::Int64,
        Kind::Half,
        Kind::BFloat16,
        Kind::Float,
        Kind::Double,
    ];

    proptest! {
        /// Any set of tensors of safetensors' kinds and any shapes (empty ones included)
        /// comes back from a save exactly: names, kinds, shapes and values.
        #[test]
        fn every_kind_and_shape_round_trips(
            specs in prop::collection::vec(
                (0..KINDS.len(), prop::collection::vec(0i64..4, 0..4)),
                0..6,
            ),
        ) {
            let file = TempFile::new("save-property");
            let tensors: Vec<(String, Tensor)> = specs
                .iter()
                .enumerate()
                .map(|(i, (kind, shape))| {
                    let values = Tensor::randn(shape.as_slice(), (Kind::Double, Device::Cpu)) * 50;
                    (format!("t{i}"), values.to_kind(KINDS[*kind]))
                })
                .collect();
            let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
            save_safetensors_atomic(file.path(), &refs).unwrap();
            let mut back = Tensor::read_safetensors(file.path()).unwrap();
            back.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(back.len(), tensors.len());
            for ((name, ours), (their_name, theirs)) in tensors.iter().zip(&back) {
                prop_assert_eq!(name, their_name);
                prop_assert_eq!(ours.kind(), theirs.kind());
                prop_assert_eq!(ours.size(), theirs.size());
                prop_assert!(ours.equal(theirs), "`{}` differs", name);
            }
        }
    }
}
