//! Adapter files: train LoRA patches, save only what they added, load it onto a fresh
//! base built with the same seed, re-creating the patches from the manifest; the outputs
//! match and the adapter is a small fraction of the model. Then every kind of bad input
//! is one typed error listing every problem, and nothing is written or changed.
mod common;

use common::TempDir;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{
    apply_lora_adapter, read_adapter, save_adapter, AdapterEntry, AdapterProblem, MANIFEST_FILE,
    TENSORS_FILE,
};
use tch_patch::patches::{Lora, LoraConfig};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{PatchArgs, PatchSpec, ValidatedArgs};
use tch_patch::PatchError;

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);
const SEED: u64 = 1234;

/// The base model: three linear layers, 128 → 256 → 256 → 32.
struct Base {
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

/// `n` numbers uniform in `[-bound, bound)` from `seed` (splitmix64): a seeded stream of
/// this test's own, since libtorch's global generator is shared by tests running in
/// parallel, which would race between `manual_seed` and the layers' init.
fn seeded(shape: &[i64], seed: u64, bound: f64) -> Tensor {
    let mut state = seed;
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
            ((unit * 2.0 - 1.0) * bound) as f32
        })
        .collect();
    Tensor::from_slice(&values).view(shape)
}

/// A linear layer of `vs` at `name` with weights drawn from `seed` (PyTorch's init range).
fn linear(vs: &nn::VarStore, name: &str, inp: i64, out: i64, seed: u64) -> nn::Linear {
    let mut layer = nn::linear(vs.root() / name, inp, out, Default::default());
    let bound = 1.0 / (inp as f64).sqrt();
    tch::no_grad(|| {
        layer.ws.copy_(&seeded(&[out, inp], seed, bound));
        layer
            .bs
            .as_mut()
            .unwrap()
            .copy_(&seeded(&[out], seed + 1, bound));
    });
    layer
}

/// The base, the same for the same seed.
fn base(vs: &nn::VarStore) -> Base {
    Base {
        fc1: linear(vs, "fc1", 128, 256, SEED),
        fc2: linear(vs, "fc2", 256, 256, SEED + 10),
        fc3: linear(vs, "fc3", 256, 32, SEED + 20),
    }
}

/// The base with LoRA on `fc1` and `fc2`.
#[derive(Debug)]
struct Patched {
    fc1: Lora<nn::Linear>,
    fc2: Lora<nn::Linear>,
    fc3: nn::Linear,
}

impl ModuleT for Patched {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = self.fc1.forward_t(xs, train).relu();
        self.fc3.forward(&self.fc2.forward_t(&hidden, train).relu())
    }
}

fn configs() -> (LoraConfig, LoraConfig) {
    let fc1 = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let fc2 = LoraConfig {
        rank: 8,
        alpha: 16.0,
        use_rslora: true,
        dropout: 0.1,
    };
    (fc1, fc2)
}

/// A patched model trained for a few steps (so `B` is not zero); only the LoRA
/// matrices train (`fc3`, unpatched, is frozen as a fine-tuning run freezes the base).
fn trained(vs: &mut nn::VarStore) -> Patched {
    let Base { fc1, fc2, fc3 } = base(vs);
    vs.freeze();
    let (c1, c2) = configs();
    let model = Patched {
        fc1: Lora::new(fc1, &(vs.root() / "fc1"), &c1).unwrap(),
        fc2: Lora::new(fc2, &(vs.root() / "fc2"), &c2).unwrap(),
        fc3,
    };
    let mut opt = nn::Adam::default().build(vs, 1e-2).unwrap();
    let xs = Tensor::randn([64, 128], FLOAT);
    let ys = Tensor::randn([64, 32], FLOAT);
    for _ in 0..5 {
        let loss = model
            .forward_t(&xs, true)
            .mse_loss(&ys, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    assert!(
        model.fc1.lora_b().abs().max().double_value(&[]) > 0.0,
        "trained"
    );
    model
}

fn entries(model: &Patched) -> Vec<AdapterEntry> {
    vec![
        AdapterEntry::from_lora("fc1", &model.fc1).unwrap(),
        AdapterEntry::from_lora("fc2", &model.fc2).unwrap(),
    ]
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn adapter_round_trip_onto_a_fresh_base_gives_the_same_outputs() {
    let dir = TempDir::new("adapter-round-trip");
    let mut vs = nn::VarStore::new(CPU);
    let model = trained(&mut vs);
    let xs = Tensor::randn([16, 128], FLOAT);
    let expected = model.forward_t(&xs, false);

    let summary = save_adapter(dir.path(), &entries(&model)).unwrap();
    let full = dir.join("full_model.safetensors");
    vs.save(&full).unwrap();
    let adapter_bytes = file_size(&summary.tensors_file) + file_size(&summary.manifest_file);
    let full_bytes = file_size(&full);
    assert_eq!(adapter_bytes, summary.total_bytes());
    println!("adapter: {adapter_bytes} bytes; full model: {full_bytes} bytes");
    // fc1: 4·(128+256), fc2: 8·(256+256) values, against 107k in the base: about 5 %.
    assert_eq!(summary.values, 4 * (128 + 256) + 8 * (256 + 256));
    assert!(
        adapter_bytes * 10 < full_bytes,
        "adapter {adapter_bytes} B is not under 10 % of the model's {full_bytes} B"
    );

    // A fresh base from the same seed, the patches re-created from the manifest.
    let adapter = read_adapter(dir.path()).unwrap();
    assert_eq!(adapter.paths(), ["fc1", "fc2"]);
    let (c1, c2) = configs();
    assert_eq!(adapter.entries[0].spec, c1.to_spec("fc1").unwrap());
    assert_eq!(adapter.entries[1].spec.config::<LoraConfig>().unwrap(), c2);
    let fresh_vs = nn::VarStore::new(CPU);
    let Base { fc1, fc2, fc3 } = base(&fresh_vs);
    assert!(fc1.ws.equal(&model.fc1.ws), "same seed, same base");
    let mut modules = BTreeMap::from([("fc1".to_owned(), fc1), ("fc2".to_owned(), fc2)]);
    let mut patched = apply_lora_adapter(&adapter.entries, &fresh_vs.root(), &mut modules).unwrap();
    let fresh = Patched {
        fc1: patched.remove("fc1").unwrap(),
        fc2: patched.remove("fc2").unwrap(),
        fc3,
    };
    let actual = fresh.forward_t(&xs, false);
    assert!(actual.allclose(&expected, 1e-6, 1e-6, false));
    assert!(actual.equal(&expected), "in fact bit for bit");
    // The re-created patches are trainable VarStore variables, as the trained ones were.
    let variables = fresh_vs.variables();
    assert!(variables["fc2.lora_a"].is_set_to(fresh.fc2.lora_a()));
    assert!(fresh_vs.trainable_variables().len() == vs.trainable_variables().len());
}

#[test]
fn the_manifest_lists_patch_arguments_and_tensors() {
    let dir = TempDir::new("adapter-manifest");
    let mut vs = nn::VarStore::new(CPU);
    let model = trained(&mut vs);
    save_adapter(dir.path(), &entries(&model)).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["format"], "tch-patch-adapter");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["library_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        manifest["patches"][1],
        json!({
            "path": "fc2",
            "patch": "lora",
            "targets": "fc2",
            "args": {"rank": 8, "alpha": 16.0, "dropout": 0.1, "use_rslora": true},
            "tensors": [
                {"name": "fc2.lora_a", "shape": [8, 256], "dtype": "F32"},
                {"name": "fc2.lora_b", "shape": [256, 8], "dtype": "F32"},
            ],
        })
    );
    // Only the patches' tensors are in the tensors file, under their full names.
    let mut keys: Vec<String> = Tensor::read_safetensors(dir.join(TENSORS_FILE))
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["fc1.lora_a", "fc1.lora_b", "fc2.lora_a", "fc2.lora_b"]
    );
}

// ---- bad inputs -------------------------------------------------------------------

/// A saved adapter of two LoRA patches in a fresh folder.
fn saved() -> TempDir {
    let dir = TempDir::new("adapter-bad");
    let mut vs = nn::VarStore::new(CPU);
    let model = trained(&mut vs);
    save_adapter(dir.path(), &entries(&model)).unwrap();
    dir
}

fn manifest(dir: &TempDir) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

fn write_manifest(dir: &TempDir, manifest: &Value) {
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec(manifest).unwrap(),
    )
    .unwrap();
}

/// The problems of a read that must fail.
fn problems_of(dir: &TempDir) -> Vec<AdapterProblem> {
    match read_adapter(dir.path()) {
        Err(PatchError::Adapter(AdapterError {
            operation,
            problems,
            ..
        })) => {
            assert!(operation.starts_with("read adapter `"), "{operation}");
            problems
        }
        other => panic!("expected InvalidAdapter, got {other:?}"),
    }
}

#[test]
fn a_manifest_naming_an_unknown_patch_is_an_error_naming_the_nearest() {
    let dir = saved();
    let mut value = manifest(&dir);
    value["patches"][0]["patch"] = json!("lorra");
    write_manifest(&dir, &value);
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let AdapterProblem::InvalidPatch { path, error } = &problems[0] else {
        panic!("{problems:?}")
    };
    assert_eq!(path, "fc1");
    assert!(
        matches!(&**error, PatchError::PatchString(PatchStringError::UnknownPatch { name, nearest: Some(n), .. })
        if name == "lorra" && n == "lora")
    );
    assert!(problems[0].to_string().starts_with(
        "patch at `fc1`: unknown patch \"lorra\" (did you mean \"lora\"?); registered patches: "
    ));
}

#[test]
fn bad_json_is_an_error_with_line_and_column() {
    let dir = saved();
    std::fs::write(
        dir.join(MANIFEST_FILE),
        "{\n  \"format\": \"tch-patch-adapter\",\n  oops\n}",
    )
    .unwrap();
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        matches!(&problems[0], AdapterProblem::Json { file, line: 3, column: 3, .. } if file == "adapter.json"),
        "{problems:?}"
    );
    assert_eq!(
        problems[0].to_string(),
        "`adapter.json` is not valid JSON: key must be a string at line 3, column 3"
    );
}

#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let dir = saved();
    let kept: Vec<(String, Tensor)> = Tensor::read_safetensors(dir.join(TENSORS_FILE))
        .unwrap()
        .into_iter()
        .filter(|(key, _)| key != "fc2.lora_b")
        .collect();
    Tensor::write_safetensors(&kept, dir.join(TENSORS_FILE)).unwrap();
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        "tensor `fc2.lora_b` is missing from `adapter.safetensors`: the manifest lists it"
    );
}

#[test]
fn a_wrong_shape_is_an_error_with_both_shapes() {
    let dir = saved();
    let mut value = manifest(&dir);
    value["patches"][0]["tensors"][0]["shape"] = json!([5, 128]);
    write_manifest(&dir, &value);
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        matches!(&problems[0], AdapterProblem::Shape { name, found, .. }
        if name == "fc1.lora_a" && found == &[4, 128])
    );
    assert_eq!(
        problems[0].to_string(),
        "tensor `fc1.lora_a` has shape [4, 128], expected [5, 128] (from the manifest)"
    );
}

#[test]
fn an_unknown_format_version_is_the_only_problem_reported() {
    let dir = saved();
    let mut value = manifest(&dir);
    value["format_version"] = json!(2);
    value["patches"][0]["patch"] = json!("whatever version 2 means");
    write_manifest(&dir, &value);
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(matches!(
        problems[0],
        AdapterProblem::FormatVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert_eq!(
        problems[0].to_string(),
        "`adapter.json`: format version 2 is not supported; this library reads version 1"
    );
}

#[test]
fn several_problems_are_all_listed_in_one_error() {
    let dir = saved();
    let mut value = manifest(&dir);
    value["patches"][0]["patch"] = json!("nope");
    value["patches"][1]["args"]["rank"] = json!(0);
    value["patches"][1]["tensors"][1]["dtype"] = json!("F16");
    value["patches"][1]["tensors"][0]["shape"] = json!([8, "256"]);
    value["patches"][0].as_object_mut().unwrap().remove("path");
    value["extra"] = json!(true);
    write_manifest(&dir, &value);
    let problems = problems_of(&dir);
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "`adapter.json`: field `extra` is not a known field; the known fields are: format, format_version, library, library_version, patches, save_id",
            "`adapter.json`: field `patches[0].path` is missing",
            "`adapter.json`: field `patches[1].tensors[0].shape` must be a non-negative integer, found the string \"256\"",
            "patch at `fc2`: argument \"rank\" of patch \"lora\" is 0, but must be in 1..=4096",
            "tensor `fc2.lora_b` has dtype F32, expected F16 (from the manifest)",
        ],
        "{texts:#?}"
    );
    let error = read_adapter(dir.path()).unwrap_err().to_string();
    assert!(error.contains(": 5 problem(s): "), "{error}");
}

#[test]
fn a_tensor_the_manifest_does_not_list_is_an_error() {
    let dir = saved();
    let mut tensors = Tensor::read_safetensors(dir.join(TENSORS_FILE)).unwrap();
    tensors.push(("fc3.weight".into(), Tensor::zeros([2], FLOAT)));
    Tensor::write_safetensors(&tensors, dir.join(TENSORS_FILE)).unwrap();
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        "tensor `fc3.weight` in `adapter.safetensors` is not expected: the manifest does not list it"
    );
}

#[test]
fn missing_or_corrupt_files_are_read_problems() {
    let nothing = TempDir::new("adapter-nothing");
    let problems = problems_of(&nothing);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| matches!(p, AdapterProblem::Read { .. })));

    let dir = saved();
    let bytes = std::fs::read(dir.join(TENSORS_FILE)).unwrap();
    std::fs::write(dir.join(TENSORS_FILE), &bytes[..bytes.len() / 2]).unwrap();
    let problems = problems_of(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .to_string()
            .starts_with("cannot read `adapter.safetensors`: "),
        "{}",
        problems[0]
    );
}

#[test]
fn saving_bad_entries_lists_every_problem_and_writes_nothing() {
    let dir = TempDir::new("adapter-save-bad");
    let lora = LoraConfig::default().to_spec("*").unwrap();
    let not_registered = PatchSpec {
        name: "nope".into(),
        args: ValidatedArgs::default(),
        targets: "x".into(),
    };
    let a = Tensor::zeros([2, 3], FLOAT);
    let entries = [
        AdapterEntry::new(
            "a",
            lora.clone(),
            vec![("lora_a".into(), a.shallow_clone())],
        ),
        AdapterEntry::new("a", lora.clone(), vec![]),
        AdapterEntry::new("b..c", lora, vec![]),
        AdapterEntry::new("d", not_registered, vec![("x".into(), Tensor::new())]),
        AdapterEntry::new(
            "e",
            LoraConfig::default().to_spec("e").unwrap(),
            vec![
                (
                    "complex".into(),
                    Tensor::zeros([1], (Kind::ComplexFloat, CPU)),
                ),
                ("has.dot".into(), a),
            ],
        ),
        AdapterEntry::new("f", LoraConfig::default().to_spec("g").unwrap(), vec![]),
    ];
    let error = save_adapter(dir.path(), &entries).unwrap_err();
    let PatchError::Adapter(AdapterError { problems, .. }) = &error else {
        panic!("{error:?}")
    };
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "patched path `a` is given more than once",
            "patched path `b..c` is not a dotted module path: segment 2 is empty",
            "patch at `d`: expected the arguments of patch \"nope\", found those of \"\"",
            "tensor `d.x` is an undefined tensor",
            "tensor `e.complex` has dtype complex64, which safetensors cannot hold",
            "tensor `e.has.dot` has local name \"has.dot\", which is not one segment of letters, digits, `_` and `-`",
            "patch at `f`: its targets \"g\" do not select its patched path",
        ],
        "{texts:#?}"
    );
    assert!(!dir.path().exists(), "nothing written");
}

#[test]
fn applying_an_adapter_that_does_not_fit_changes_nothing() {
    let dir = saved();
    let adapter = read_adapter(dir.path()).unwrap();
    let vs = nn::VarStore::new(CPU);
    // fc1 has the wrong input size, fc2 is not given, and `fc1.lora_a` is taken.
    let wrong = nn::linear(vs.root() / "fc1", 64, 256, Default::default());
    let _taken = vs.root().sub("fc1").zeros("lora_a", &[1]);
    let mut modules = BTreeMap::from([("fc1".to_owned(), wrong)]);
    let error = apply_lora_adapter(&adapter.entries, &vs.root(), &mut modules).unwrap_err();
    let PatchError::Adapter(AdapterError { problems, .. }) = &error else {
        panic!("{error:?}")
    };
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "tensor `fc1.lora_a` is already a variable of the VarStore",
            "tensor `fc1.lora_a` has shape [4, 128], expected [4, 64]",
            "no module was given for patched path `fc2`",
        ],
        "{texts:#?}"
    );
    assert!(modules.contains_key("fc1"), "the module is given back");
    assert_eq!(
        vs.variables().len(),
        3,
        "weight, bias and the taken name only"
    );
}

/// A token embedding and a linear layer after it, as slots.
#[derive(tch_patch::ModuleTree, tch_patch::Parameters)]
struct Embedder {
    emb: tch_patch::Slot<nn::Embedding>,
    proj: tch_patch::Slot<nn::Linear>,
}

impl Embedder {
    fn new(vs: &nn::VarStore) -> Self {
        Embedder {
            emb: tch_patch::Slot::new(nn::embedding(vs.root() / "emb", 20, 6, Default::default())),
            proj: tch_patch::Slot::new(nn::linear(vs.root() / "proj", 6, 6, Default::default())),
        }
    }

    fn eval(&self, ids: &Tensor) -> Tensor {
        tch::no_grad(|| ids.apply_t(&self.emb, false).apply_t(&self.proj, false))
    }
}

#[test]
fn a_lora_on_an_embedding_round_trips_through_an_adapter_folder() {
    use tch_patch::adapter::{load_model_adapter, save_model_adapter};
    use tch_patch::patches::LoraEmbedding;
    let vs = nn::VarStore::new(CPU);
    let mut model = Embedder::new(&vs);
    let specs = tch_patch::registry::Registry::global()
        .unwrap()
        .parse(r#"lora(rank=3, alpha=6, targets="{emb,proj}")"#)
        .unwrap();
    tch_patch::registry::apply_specs(&mut model, &vs, &specs).unwrap();
    let lora = model.emb.find::<LoraEmbedding>().unwrap();
    let a = lora.lora_embedding_a();
    tch::no_grad(|| a.shallow_clone().copy_(&seeded(&a.size(), SEED, 1.0)));
    let dir = TempDir::new("adapter-embedding");
    save_model_adapter(dir.path(), &model, &specs).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["patches"][0]["path"], "emb");
    assert_eq!(manifest["patches"][0]["patch"], "lora");
    assert_eq!(
        manifest["patches"][0]["tensors"][0]["name"],
        "emb.lora_embedding_a"
    );

    let mut fresh_vs = nn::VarStore::new(CPU);
    let mut fresh = Embedder::new(&fresh_vs);
    fresh_vs.copy(&vs).unwrap();
    load_model_adapter(&mut fresh, &fresh_vs, dir.path()).unwrap();
    assert!(fresh.emb.find::<LoraEmbedding>().is_some());
    let ids = Tensor::from_slice(&[0i64, 4, 19, 7]);
    assert!(fresh.eval(&ids).equal(&model.eval(&ids)));
}
