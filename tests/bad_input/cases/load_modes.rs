//! Loading at scale: sharded checkpoints and their index, assign and mapped loads, dtype
//! conversion, hooks that give several tensors, skeletons, `swap_tensors`.
use crate::case;
use crate::fixture::{floats, set_entry, Fixture};
use crate::{only_problem, Case};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use tch_patch::load::{
    load_safetensors, load_safetensors_with, load_sharded, HookOutput, LoadError, LoadMode,
    LoadOptions, Skeleton,
};
use tch_patch::params::TensorProblem;
use tch_patch::patches::{Int8Config, Int8Linear};
use tch_patch::swap::{swap_tensors, SwapError};
use tch_patch::PatchError;

/// The fixture's checkpoint split in two shards (`emb` and `fc1` in the first), with an
/// index whose `weight_map` is `map` (`None`: the right one).
fn sharded(
    fx: &mut Fixture,
    map: Option<&str>,
    change: impl FnOnce(&mut Vec<(String, Tensor)>),
) -> PathBuf {
    let mut all = Vec::new();
    fx.write_checkpoint("whole.safetensors", |entries| {
        change(entries);
        all = entries
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
    });
    let (first, second): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(name, _)| name.starts_with("emb") || name.starts_with("fc1"));
    Tensor::write_safetensors(&first, fx.file("one.safetensors")).unwrap();
    Tensor::write_safetensors(&second, fx.file("two.safetensors")).unwrap();
    let right: Vec<String> = first
        .iter()
        .map(|(n, _)| format!("\"{n}\": \"one.safetensors\""))
        .chain(
            second
                .iter()
                .map(|(n, _)| format!("\"{n}\": \"two.safetensors\"")),
        )
        .collect();
    let map = map.map_or_else(|| right.join(", "), str::to_owned);
    let index = fx.file("model.safetensors.index.json");
    std::fs::write(&index, format!("{{\"weight_map\": {{{map}}}}}")).unwrap();
    index
}

fn load_index(fx: &mut Fixture, index: &PathBuf) -> Result<(), PatchError> {
    load_sharded(fx.net(), index, &LoadOptions::new())
        .map(drop)
        .map_err(PatchError::from)
}

fn index_error(error: &PatchError, says: &str) -> bool {
    matches!(error, PatchError::Load(LoadError::Index { message, .. }) if message.contains(says))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "sharded load: an index that is not JSON",
            |fx| {
                let index = fx.write_bytes("model.safetensors.index.json", b"{weight_map");
                load_index(fx, &index)
            },
            e if index_error(e, "not valid JSON")
        ),
        case!(
            "sharded load: an index without a weight_map",
            |fx| {
                let index = fx.write_bytes("model.safetensors.index.json", b"{}");
                load_index(fx, &index)
            },
            e if index_error(e, "no `weight_map` object")
        ),
        case!(
            "sharded load: an index naming a shard that is not there",
            |fx| {
                let index = sharded(fx, Some(r#""fc1.weight": "three.safetensors""#), |_| ());
                load_index(fx, &index)
            },
            e if index_error(e, "names shard \"three.safetensors\"")
        ),
        case!(
            "sharded load: an index placing a key in a shard that lacks it",
            |fx| {
                let index = sharded(fx, None, |_| ());
                let text = std::fs::read_to_string(&index).unwrap();
                std::fs::write(&index, text.replacen("\"fc2.bias\": \"two.safetensors\"", "\"fc2.bias\": \"one.safetensors\"", 1)).unwrap();
                load_index(fx, &index)
            },
            e if index_error(e, "places `fc2.bias` in \"one.safetensors\"")
        ),
        case!(
            "sharded load: a shard holding a key its index does not place there",
            |fx| {
                let index = sharded(fx, None, |_| ());
                let text = std::fs::read_to_string(&index).unwrap();
                std::fs::write(&index, text.replacen(", \"fc2.bias\": \"two.safetensors\"", "", 1)).unwrap();
                load_index(fx, &index)
            },
            e if index_error(e, "holds `fc2.bias`")
        ),
        case!(
            "sharded load: a shard outside the index's folder",
            |fx| {
                let index = sharded(fx, Some(r#""fc1.weight": "../one.safetensors""#), |_| ());
                load_index(fx, &index)
            },
            e if index_error(e, "is not a file of the folder")
        ),
        case!(
            "sharded load: a shard with a wrong shape (all shards or none)",
            |fx| {
                let index = sharded(fx, None, |entries| set_entry(entries, "fc2.weight", floats(&[3, 3])));
                load_index(fx, &index)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Shape { name, .. }) if name == "fc2.weight")
        ),
        case!(
            "assign load: an integer tensor for a tensor that requires grad",
            |fx| {
                let path = fx.write_checkpoint("ints.safetensors", |entries| {
                    set_entry(entries, "fc1.bias", Tensor::ones([8], (Kind::Int64, Device::Cpu)))
                });
                load_safetensors(fx.net(), &path, &LoadOptions::new().mode(LoadMode::Assign)).map(drop)
            },
            e if matches!(only_problem(e), Some(TensorProblem::NotDifferentiable { name, .. }) if name == "fc1.bias")
        ),
        case!(
            "mapped load: a path that is not UTF-8 (libtorch maps by name)",
            |fx| {
                use std::os::unix::ffi::OsStrExt;
                let name = std::ffi::OsStr::from_bytes(b"net-\xff.safetensors");
                let path = fx.dir.0.join(name);
                std::fs::copy(&fx.checkpoint, &path).unwrap();
                load_safetensors(fx.net(), &path, &LoadOptions::new().mode(LoadMode::Map)).map(drop)
            },
            PatchError::Load(LoadError::Read { source, .. }) if source.to_string().contains("not UTF-8")
        ),
        case!(
            "load with convert_dtype: an integer tensor for a float one",
            |fx| {
                let path = fx.write_checkpoint("int-for-float.safetensors", |entries| {
                    set_entry(entries, "fc1.bias", Tensor::ones([8], (Kind::Int64, Device::Cpu)))
                });
                load_safetensors(fx.net(), &path, &LoadOptions::new().convert_dtype(true)).map(drop)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Kind { name, actual: Kind::Int64, .. }) if name == "fc1.bias")
        ),
        case!(
            "load hook: an output named after a tensor the module lacks",
            |fx| {
                let path = fx.checkpoint.clone();
                load_safetensors_with(fx.net(), &path, &LoadOptions::new(), |name, t| {
                    let extra = (name == "fc1.bias").then(|| ("fc1.scale".to_owned(), t.copy()));
                    Ok::<_, PatchError>(HookOutput::from(std::iter::once((name.to_owned(), t)).chain(extra).collect::<Vec<_>>()))
                })
                .map(drop)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Unexpected { name }) if name == "fc1.scale")
        ),
        case!(
            "load hook: two outputs for one tensor",
            |fx| {
                let path = fx.checkpoint.clone();
                load_safetensors_with(fx.net(), &path, &LoadOptions::new(), |name, t| {
                    let twice = (name == "fc1.weight").then(|| ("fc2.bias".to_owned(), Tensor::zeros([4], (Kind::Float, Device::Cpu))));
                    Ok::<_, PatchError>(HookOutput::from(std::iter::once((name.to_owned(), t)).chain(twice).collect::<Vec<_>>()))
                })
                .map(drop)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Duplicate { name }) if name == "fc2.bias")
        ),
        case!(
            "skeleton: a checkpoint without every tensor, allow_missing notwithstanding",
            |fx| {
                let path = fx.write_checkpoint("partial.safetensors", |entries| entries.retain(|(n, _)| n != "fc2.bias"));
                let root = fx.vs.root() / "skeleton";
                Skeleton::build(&fx.vs, |fill| tch_patch::load::linear(&(&root / "fc2"), 8, 4, Default::default(), fill))
                    .load(&path, &LoadOptions::new().prefix("fc2").allow_missing(true))
                    .map(drop)
            },
            PatchError::Load(LoadError::InvalidTensors { problems, .. })
                if matches!(&problems[..], [TensorProblem::Missing { name }] if name == "bias")
        ),
        case!(
            "swap_tensors: a tensor with a grad_fn",
            |fx| {
                let computed = &fx.net().fc1.ws * 2.0;
                swap_tensors(&computed, &fx.net().fc2.ws)
            },
            PatchError::Swap(SwapError::NotLeaf { which: "first" })
        ),
        case!(
            "swap_tensors: a gradient on one side only",
            |fx| {
                let trained =
                    Tensor::zeros([8, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
                trained.sum(Kind::Float).backward();
                swap_tensors(&fx.net().fc1.ws, &trained)
            },
            PatchError::Swap(SwapError::GradOnOneSide { which: "second" })
        ),
        case!(
            "int8 load hook: a float weight of another shape than the int8 layer's",
            |fx| {
                let path = fx.file("wide.safetensors");
                let weight = floats(&[4, 9]);
                Tensor::write_safetensors(&[("weight", &weight), ("bias", &floats(&[4]))], &path).unwrap();
                let vs = tch::nn::VarStore::new(Device::Cpu);
                let layer = tch::nn::linear(vs.root(), 8, 4, Default::default());
                let mut int8 = Int8Linear::new(layer, &vs.root(), &Int8Config::default())?;
                let hook = Int8Linear::load_hook(&int8);
                load_safetensors_with(&mut int8, &path, &LoadOptions::new(), hook).map(drop)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Shape { name, .. }) if name == "weight")
        ),
        case!(
            "swap_tensors: an undefined tensor",
            |fx| swap_tensors(&fx.net().fc1.ws, &Tensor::new()),
            PatchError::Swap(SwapError::Undefined { which: "second" })
        ),
    ]
}
