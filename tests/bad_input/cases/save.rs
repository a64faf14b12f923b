//! Atomic saves with bad arguments: the model and the previous file stay as they were.
use crate::case;
use crate::fixture::{floats, Fixture};
use crate::{only_problem, Case};
use tch::{Device, Kind, Tensor};
use tch_patch::save::SaveError;
use tch_patch::{
    load::load_safetensors, load::LoadOptions, params::TensorProblem, save::save_module,
    save::save_safetensors_atomic, save::SaveStep, PatchError,
};

/// The bad save, then a check that the fixture's checkpoint still loads into the net.
fn then_checkpoint_loads(
    fx: &mut Fixture,
    result: Result<(), PatchError>,
) -> Result<(), PatchError> {
    let path = fx.checkpoint.clone();
    load_safetensors(fx.net(), &path, &LoadOptions::new()).expect("the previous file loads");
    result
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "save: target is a folder",
            |fx| {
                let folder = fx.file("a-folder");
                std::fs::create_dir(&folder).unwrap();
                let result = save_module(fx.net(), &folder, "");
                assert!(folder.is_dir() && std::fs::read_dir(&folder).unwrap().next().is_none());
                assert_eq!(
                    std::fs::read_dir(&fx.dir.0).unwrap().count(),
                    2,
                    "no temp file left"
                );
                result
            },
            PatchError::Save(SaveError::Step {
                step: SaveStep::Rename,
                ..
            })
        ),
        case!(
            "save: folder does not exist",
            |fx| {
                let path = fx.file("no-such-folder/net.safetensors");
                save_module(fx.net(), path, "")
            },
            PatchError::Save(SaveError::Step { step: SaveStep::CreateTemp, path, .. }) if path.ends_with("no-such-folder/net.safetensors")
        ),
        case!(
            "save: a name given twice (over an existing file)",
            |fx| {
                let w = floats(&[2]);
                let result = save_safetensors_atomic(fx.checkpoint.clone(), &[("w", &w), ("w", &w)]);
                then_checkpoint_loads(fx, result)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Duplicate { name }) if name == "w")
        ),
        case!(
            "save: a dtype safetensors cannot store (over an existing file)",
            |fx| {
                let z = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
                let result = save_safetensors_atomic(fx.checkpoint.clone(), &[("z", &z)]);
                then_checkpoint_loads(fx, result)
            },
            e if matches!(only_problem(e), Some(TensorProblem::UnsupportedKind { kind: Kind::ComplexFloat, .. }))
        ),
        case!(
            "save: an undefined tensor",
            |fx| save_safetensors_atomic(fx.file("undefined.safetensors"), &[("u", &Tensor::new())]),
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { .. }))
        ),
    ]
}
