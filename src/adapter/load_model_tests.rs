//! `load_model_adapter` on three bare linear slots `0`, `1`, `2`: each patch goes on its
//! own saved path only, and the adapter's tensors must be exactly those its patches make.
use super::{
    load_model_adapter, load_model_adapter_with, save_adapter, AdapterDtype, AdapterEntry,
};
use crate::error::{PatchError, TensorProblem};
use crate::registry::Registry;
use crate::Slot;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);

/// An adapter folder, removed on drop.
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A LoRA entry of rank 2 at `path` with `targets`, its tensors (ones) changed by `change`.
fn lora(path: &str, targets: &str, change: fn(&mut Vec<(String, Tensor)>)) -> AdapterEntry {
    let text = format!("lora(rank=2, targets=\"{targets}\")");
    let spec = Registry::global().unwrap().parse_one(&text).unwrap();
    let mut tensors = vec![
        ("lora_a".to_owned(), Tensor::ones([2, 4], FLOAT)),
        ("lora_b".to_owned(), Tensor::ones([4, 2], FLOAT)),
    ];
    change(&mut tensors);
    AdapterEntry::new(path, spec, tensors)
}

/// Saves `entries` as adapter `name` and loads it onto a fresh model: the result, the
/// model and its VarStore.
fn load(
    name: &str,
    entries: &[AdapterEntry],
) -> (Result<(), PatchError>, Vec<Slot<nn::Linear>>, nn::VarStore) {
    load_with(name, entries, None)
}

/// [`load`] with the dtype rule `dtype` (`None`: `load_model_adapter`'s default).
fn load_with(
    name: &str,
    entries: &[AdapterEntry],
    dtype: Option<AdapterDtype>,
) -> (Result<(), PatchError>, Vec<Slot<nn::Linear>>, nn::VarStore) {
    let dir = std::env::temp_dir().join(format!("tch-patch-load-{name}-{}", std::process::id()));
    let folder = Folder(dir);
    save_adapter(&folder.0, entries).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model: Vec<Slot<nn::Linear>> = (0..3)
        .map(|i| Slot::new(nn::linear(vs.root() / i, 4, 4, Default::default())))
        .collect();
    let result = match dtype {
        None => load_model_adapter(&mut model, &vs, &folder.0),
        Some(dtype) => load_model_adapter_with(&mut model, &vs, &folder.0, dtype),
    };
    let result = result.map(drop);
    (result, model, vs)
}

fn patch_names(model: &[Slot<nn::Linear>]) -> Vec<Vec<&'static str>> {
    model.iter().map(Slot::patch_names).collect()
}

#[test]
fn each_patch_goes_on_its_own_path_only_whatever_its_targets() {
    let entries = [lora("0", "*", |_| ()), lora("2", "*", |_| ())];
    let (result, model, vs) = load("own-path", &entries);
    result.unwrap();
    assert_eq!(patch_names(&model), [vec!["lora"], vec![], vec!["lora"]]);
    let variables = vs.variables();
    assert!(variables["2.lora_b"].equal(&Tensor::ones([4, 2], FLOAT)));
    assert!(!variables.contains_key("1.lora_a"));
}

#[test]
fn a_base_weight_in_the_adapter_is_refused_and_left_as_it_was() {
    let entries = [lora("1", "1", |t| {
        t.push(("weight".into(), Tensor::zeros([4, 4], FLOAT)))
    })];
    let (result, model, vs) = load("base-weight", &entries);
    let Err(PatchError::InvalidTensors { problems, .. }) = result else {
        panic!("{result:?}")
    };
    assert!(matches!(&problems[..], [TensorProblem::Unexpected { name }] if name == "1.weight"));
    assert!(model.iter().all(|slot| !slot.is_patched()));
    assert!(model[1].root().ws.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(!vs.variables().contains_key("1.lora_a"));
}

#[test]
fn a_missing_tensor_and_another_dtype_under_the_exact_rule_are_refused_by_name() {
    let entries = [
        lora("0", "0", |t| t.retain(|(name, _)| name != "lora_b")),
        lora("1", "1", |t| {
            t[0].1 = Tensor::ones([2, 4], (Kind::Double, Device::Cpu))
        }),
    ];
    let (result, model, _) = load_with("missing-dtype", &entries, Some(AdapterDtype::Exact));
    let Err(PatchError::InvalidTensors { problems, .. }) = result else {
        panic!("{result:?}")
    };
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "`0.lora_b` is missing",
            "`1.lora_a` has dtype float64, expected float32"
        ]
    );
    assert!(model.iter().all(|slot| !slot.is_patched()));
}

#[test]
fn a_bf16_adapter_loads_onto_a_float32_model_converted_as_peft_does() {
    let values = Tensor::randn([2, 4], FLOAT).to_kind(Kind::BFloat16);
    let mut entry = lora("1", "1", |_| ());
    entry.tensors[0].1 = values.shallow_clone();
    let entries = [entry];
    let (result, model, vs) = load("bf16", &entries);
    result.unwrap();
    assert!(model[1].is_patched());
    let lora_a = &vs.variables()["1.lora_a"];
    assert_eq!(lora_a.kind(), Kind::Float, "the model's dtype is kept");
    assert!(
        lora_a.equal(&values.to_kind(Kind::Float)),
        "the values, converted"
    );
    let (result, model, vs) = load_with("bf16-exact", &entries, Some(AdapterDtype::Exact));
    let Err(PatchError::InvalidTensors { problems, .. }) = result else {
        panic!("{result:?}")
    };
    assert!(
        matches!(&problems[..], [TensorProblem::Kind { name, actual: Kind::BFloat16, expected: Kind::Float }] if name == "1.lora_a"),
        "{problems:?}"
    );
    assert!(model.iter().all(|slot| !slot.is_patched()));
    assert_eq!(vs.variables().len(), 6, "only the base's tensors");
}
