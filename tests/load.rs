//! `load_safetensors(_with)`: real files, every problem at once, nothing changed on error,
//! identity kept, hooks.
mod common;

use common::{assert_unchanged, snapshot, Mlp, TempFile, TiedLm};
use tch::{nn, Device, Kind, Tensor};
use tch_patch::{
    load::load_safetensors, load::load_safetensors_with, load::LoadError, load::LoadOptions,
    load::LoadReport, named_tensors, params::named_tensors_with_prefix, params::TensorProblem,
    PatchError,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn write(file: &TempFile, entries: &[(&str, Tensor)]) {
    Tensor::write_safetensors(entries, file.path()).unwrap();
}

/// A file holding every tensor of a fresh MLP under `prefix`, and that MLP.
fn saved_mlp(file: &TempFile, prefix: &str) -> Mlp {
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let entries: Vec<(String, Tensor)> = named_tensors_with_prefix(&mlp, prefix)
        .into_iter()
        .map(|t| (t.name, t.tensor))
        .collect();
    Tensor::write_safetensors(&entries, file.path()).unwrap();
    mlp
}

fn problems(err: LoadError) -> Vec<TensorProblem> {
    match err {
        LoadError::InvalidTensors { problems, .. } => problems,
        other => panic!("expected InvalidTensors, got {other}"),
    }
}

#[test]
fn loads_every_tensor_in_place_keeping_identity() {
    tch::manual_seed(10);
    let file = TempFile::new("roundtrip");
    let source = saved_mlp(&file, "");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let ptrs: Vec<_> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr())
        .collect();

    let report = load_safetensors(&mut mlp, file.path(), &LoadOptions::new()).unwrap();

    assert_eq!(
        report.loaded,
        ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    );
    for (ours, theirs) in named_tensors(&mlp).iter().zip(named_tensors(&source)) {
        assert!(ours.tensor.equal(&theirs.tensor), "`{}` differs", ours.name);
        assert!(ours.tensor.requires_grad() && ours.tensor.is_leaf());
    }
    let after: Vec<_> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr())
        .collect();
    assert_eq!(
        ptrs, after,
        "values must be copied in, not new tensors put in"
    );
    assert!(tch_patch::params::unregistered_tensors(&vs, &mlp).is_empty());
}

#[test]
fn one_error_names_a_wrong_shape_a_missing_key_an_extra_key_and_a_wrong_dtype() {
    tch::manual_seed(11);
    let file = TempFile::new("four-problems");
    write(
        &file,
        &[
            ("fc1.weight", Tensor::randn([4, 5], CPU)), // wrong shape: [4, 3] expected
            // fc1.bias missing
            (
                "fc2.weight",
                Tensor::randn([2, 4], (Kind::Double, Device::Cpu)),
            ), // wrong dtype
            ("fc2.bias", Tensor::randn([2], CPU)),      // fine
            ("fc3.weight", Tensor::randn([2, 2], CPU)), // unexpected
        ],
    );
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before = snapshot(&mlp);

    let err = load_safetensors(&mut mlp, file.path(), &LoadOptions::new()).unwrap_err();

    let message = err.to_string();
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
    for expected in [
        "`fc1.weight` has shape [4, 5], expected [4, 3]",
        "`fc1.bias` is missing",
        "`fc2.weight` has dtype float64, expected float32",
        "`fc3.weight` is not a tensor of the module",
    ] {
        assert!(message.contains(expected), "`{expected}` not in: {message}");
    }
    let problems = problems(err);
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        matches!(&problems[0], TensorProblem::Shape { name, actual, expected }
        if name == "fc1.weight" && actual == &[4, 5] && expected == &[4, 3])
    );
    assert!(
        matches!(&problems[1], TensorProblem::Kind { name, actual: Kind::Double, expected: Kind::Float }
        if name == "fc2.weight")
    );
    assert!(matches!(&problems[2], TensorProblem::Missing { name } if name == "fc1.bias"));
    assert!(matches!(&problems[3], TensorProblem::Unexpected { name } if name == "fc3.weight"));
    // `fc2.bias` was fine, and was not written either.
    assert_unchanged(&mlp, &before);
}

#[test]
fn the_hook_transforms_each_tensor_and_sees_the_module_names() {
    let file = TempFile::new("hook");
    let source = saved_mlp(&file, "model.mlp");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let mut seen = Vec::new();

    // Fake int8 quantization of the weights on load, biases as they are.
    let scale = 0.05;
    load_safetensors_with(
        &mut mlp,
        file.path(),
        &LoadOptions::new().prefix("model.mlp"),
        |name, tensor| {
            seen.push(name.to_owned());
            if name.ends_with("weight") {
                Ok((tensor / scale).round().clamp(-128, 127) * scale)
            } else {
                Ok(tensor)
            }
        },
    )
    .unwrap();

    assert_eq!(seen, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    let quantized = (&source.fc1.ws / scale).round().clamp(-128, 127) * scale;
    assert!(mlp.fc1.ws.allclose(&quantized, 1e-6, 1e-7, false));
    assert!(mlp
        .fc1
        .bs
        .as_ref()
        .unwrap()
        .equal(source.fc1.bs.as_ref().unwrap()));
}

#[test]
fn hook_errors_and_bad_outputs_are_collected_and_nothing_changes() {
    let file = TempFile::new("hook-errors");
    saved_mlp(&file, "");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before = snapshot(&mlp);

    let err = load_safetensors_with(&mut mlp, file.path(), &LoadOptions::new(), |name, t| {
        match name {
            "fc1.bias" => Err(PatchError::Empty {
                what: "calibration data",
            }),
            "fc2.weight" => Ok(t.to_kind(Kind::Half)), // the module holds Float
            _ => Ok(t),
        }
    })
    .unwrap_err();

    let problems = problems(err);
    assert!(matches!(&problems[..], [
        TensorProblem::Hook { name: a, .. },
        TensorProblem::Kind { name: b, actual: Kind::Half, .. },
    ] if a == "fc1.bias" && b == "fc2.weight"));
    assert_unchanged(&mlp, &before);
}

#[test]
fn a_prefix_selects_a_submodule_and_the_allow_options_report_what_was_skipped() {
    let file = TempFile::new("prefix");
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), 3, 4, 2);
    write(
        &file,
        &[
            ("encoder.fc1.weight", mlp.fc1.ws.shallow_clone()),
            (
                "encoder.fc1.bias",
                mlp.fc1.bs.as_ref().unwrap().shallow_clone(),
            ),
            ("encoder.extra", Tensor::zeros([1], CPU)),
            ("decoder.fc1.weight", Tensor::zeros([9], CPU)), // outside the prefix: ignored
        ],
    );
    let other = nn::VarStore::new(Device::Cpu);
    let mut target = Mlp::new(&other.root(), 3, 4, 2);
    let fc2_before = target.fc2.ws.copy();

    let strict = load_safetensors(
        &mut target,
        file.path(),
        &LoadOptions::new().prefix("encoder"),
    );
    let problems = problems(strict.unwrap_err());
    let names: Vec<_> = problems.iter().map(|p| p.name().to_owned()).collect();
    assert_eq!(names, ["fc2.weight", "fc2.bias", "encoder.extra"]);

    let options = LoadOptions::new()
        .prefix("encoder")
        .allow_missing(true)
        .allow_unexpected(true);
    let report = load_safetensors(&mut target, file.path(), &options).unwrap();
    assert_eq!(
        report,
        LoadReport {
            loaded: vec!["fc1.weight".into(), "fc1.bias".into()],
            missing: vec!["fc2.weight".into(), "fc2.bias".into()],
            unexpected: vec!["encoder.extra".into()],
            mapped: Vec::new(),
        }
    );
    assert!(target.fc1.ws.equal(&mlp.fc1.ws));
    assert!(target.fc2.ws.equal(&fc2_before));
}

#[test]
fn a_missing_or_truncated_file_is_an_error_naming_the_path() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before = snapshot(&mlp);

    let absent = TempFile::new("absent");
    let err = load_safetensors(&mut mlp, absent.path(), &LoadOptions::new()).unwrap_err();
    assert!(matches!(&err, LoadError::Read { path, .. } if path == absent.path()));
    assert!(err
        .to_string()
        .contains(&absent.path().display().to_string()));

    let truncated = TempFile::new("truncated");
    saved_mlp(&truncated, "");
    let bytes = std::fs::read(truncated.path()).unwrap();
    std::fs::write(truncated.path(), &bytes[..bytes.len() - 7]).unwrap();
    let err = load_safetensors(&mut mlp, truncated.path(), &LoadOptions::new()).unwrap_err();
    assert!(matches!(&err, LoadError::Read { path, .. } if path == truncated.path()));

    assert_unchanged(&mlp, &before);
}

#[test]
fn tied_tensors_load_from_one_key_and_reject_two_unequal_ones() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lm = TiedLm::new(&vs.root(), 6, 3);
    let table = Tensor::randn([6, 3], CPU);

    let one = TempFile::new("tied-one");
    write(&one, &[("emb.weight", table.shallow_clone())]);
    let report = load_safetensors(&mut lm, one.path(), &LoadOptions::new()).unwrap();
    assert_eq!(report.loaded, ["emb.weight", "head.weight"]);
    assert!(lm.head.ws.equal(&table) && lm.head.ws.is_set_to(&lm.emb.ws));

    let two = TempFile::new("tied-two");
    write(
        &two,
        &[
            ("emb.weight", table.shallow_clone()),
            ("head.weight", table.zeros_like()),
        ],
    );
    let before = snapshot(&lm);
    let problems =
        problems(load_safetensors(&mut lm, two.path(), &LoadOptions::new()).unwrap_err());
    assert!(
        matches!(&problems[..], [TensorProblem::TiedConflict { name, tied_to }]
        if name == "head.weight" && tied_to == "emb.weight")
    );
    assert_unchanged(&lm, &before);
}
