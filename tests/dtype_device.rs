//! Patched models moved to another dtype or device: through the VarStore (`half`,
//! `bfloat16`, `double`, `float`, `set_kind`, `set_device`) and through
//! `Mutable::to_kind` / `to_device` / `convert`. Every patch tensor follows, integer
//! buffers stay integers, forward and training work in the new dtype, adapters save and
//! load. And the words errors use for dtypes, devices and shapes.
//!
//! float16 on CPU: libtorch 2.13 runs the ops these patches use (linear, matmul,
//! embedding, their backward) in float16 on the CPU, so float16 is tested like bfloat16.
//! Device moves need a GPU: those tests print why they are skipped where there is none.
mod common;

use common::slot_model::Model;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::adapter::{load_model_adapter_with, AdapterDtype};
use tch_patch::patches::Lora;
use tch_patch::{
    adapter::load_model_adapter, adapter::save_model_adapter, apply_patch_string,
    load::load_safetensors, load::LoadOptions, mutable::Mutable, named_tensors,
    parametrize::parametrize, params::unregistered_tensors, registry::parse_patches,
    registry::PatchSpec, save::save_module, swap::replace_tensor, tree::DynLayer, Parameters,
    PatchError,
};

const CPU: Device = Device::Cpu;
const DIM: i64 = 8;
/// 300 rows, so that a trainable token id above 256 tells whether bfloat16 rounded it.
const VOCAB: i64 = 300;
const PATCHES: &str = r#"lora(rank=2, alpha=4, targets="*.attn.{q,v}"); bias_only(targets="*.mlp"); mostly_frozen_embedding(tokens=[3, 257], targets="embed")"#;
const TOKEN_IDS: [i64; 2] = [3, 257];

fn model(vs: &nn::VarStore) -> Model {
    common::slot_model::model(vs, VOCAB, DIM)
}

impl Model {
    /// Every output in (-1, 1), so that low-precision dtypes compare with one tolerance
    /// and a training step cannot overflow.
    fn forward(&self, ids: &Tensor) -> Tensor {
        let mut xs = self.embed.forward_t(ids, false);
        for block in &self.blocks {
            let a = &block.attn;
            xs = (&xs
                + a.q.forward_t(&xs, false) * a.k.forward_t(&xs, false)
                + a.v.forward_t(&xs, false))
            .tanh();
            xs = (&xs + block.mlp.forward_t(&xs, false).relu()).tanh();
        }
        xs
    }
}

/// The model with `patches` applied, every zero-initialised patch tensor given small random
/// values (so each one shows in forward and gets a gradient), and the specs applied.
fn patched_with(vs: &nn::VarStore, patches: &str) -> (Model, Vec<PatchSpec>) {
    let mut m = model(vs);
    apply_patch_string(&mut m, vs, patches).unwrap();
    tch::no_grad(|| {
        for (name, mut tensor) in vs.variables() {
            if name.ends_with("lora_b") || name.ends_with("bias_delta") || name.ends_with("delta") {
                tensor.copy_(&(tensor.randn_like() * 0.1));
            }
        }
    });
    (m, parse_patches(patches).unwrap())
}

fn patched(vs: &nn::VarStore) -> (Model, Vec<PatchSpec>) {
    patched_with(vs, PATCHES)
}

/// Tokens hitting both trainable rows, 256 (which bfloat16 would confuse with 257) and
/// untouched rows.
fn ids() -> Tensor {
    Tensor::from_slice(&[1i64, 3, 256, 257, 7])
}

type Conversion = (Kind, fn(&mut nn::VarStore));

/// The VarStore's floating-point conversions, each with the dtype it gives.
const CONVERSIONS: [Conversion; 3] = [
    (Kind::BFloat16, nn::VarStore::bfloat16),
    (Kind::Half, nn::VarStore::half),
    (Kind::Double, nn::VarStore::double),
];

/// How close a forward in `kind` is to the float32 one.
fn tolerance(kind: Kind) -> f64 {
    match kind {
        Kind::BFloat16 => 5e-2,
        Kind::Half => 1e-2,
        _ => 1e-6,
    }
}

/// Every tensor of the model is `kind` on `device`, but `token_ids`, which stays int64
/// with its exact ids; the same for every VarStore variable.
fn assert_converted(m: &Model, vs: &nn::VarStore, kind: Kind, device: Device) {
    let all = named_tensors(m)
        .into_iter()
        .map(|t| (t.name, t.tensor))
        .chain(vs.variables());
    for (name, tensor) in all {
        assert_eq!(tensor.device(), device, "{name}");
        if name.ends_with("token_ids") {
            assert_eq!(tensor.kind(), Kind::Int64, "{name} must stay int64");
            let ids = Vec::<i64>::try_from(&tensor.to_device(CPU)).unwrap();
            assert_eq!(ids, TOKEN_IDS, "{name} kept its exact ids");
        } else {
            assert_eq!(tensor.kind(), kind, "{name}");
        }
    }
}

#[test]
fn var_store_conversions_reach_every_patch_tensor_and_keep_integer_buffers() {
    for (kind, convert) in CONVERSIONS {
        let mut vs = nn::VarStore::new(CPU);
        let (m, _) = patched(&vs);
        // Every patch registered its tensors, so the VarStore's conversions reach them.
        assert!(unregistered_tensors(&vs, &m).is_empty());
        let reference = m.forward(&ids());

        convert(&mut vs);
        assert_converted(&m, &vs, kind, CPU);
        let out = m.forward(&ids());
        assert_eq!(out.kind(), kind);
        let tol = tolerance(kind);
        assert!(
            out.to_kind(Kind::Float)
                .allclose(&reference, tol, tol, false),
            "{kind:?}: forward strays from float32"
        );
        // Row 256 is not trainable: it must not get row 257's delta.
        let frozen_row = m
            .embed
            .root()
            .forward_t(&Tensor::from_slice(&[256i64]), false);
        assert!(m
            .embed
            .forward_t(&Tensor::from_slice(&[256i64]), false)
            .equal(&frozen_row));

        vs.float();
        assert_converted(&m, &vs, Kind::Float, CPU);
        let back = m.forward(&ids());
        assert!(
            back.allclose(&reference, tol, tol, false),
            "{kind:?} and back"
        );
    }
}

/// The names a training step must change: the patches' own tensors and the unpatched
/// layers (`attn.k`); the patched layers' bases and the token ids must stay.
fn should_train(name: &str) -> bool {
    ["lora_a", "lora_b", "bias_delta", "embed.delta"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
        || name.contains("attn.k.")
}

/// One SGD step on the VarStore (its optimizer built before anything changed kind); the
/// names of the VarStore variables it changed.
fn sgd_step(vs: &nn::VarStore, sgd: &mut nn::Optimizer, loss: &Tensor) -> BTreeSet<String> {
    let before: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    sgd.backward_step(loss);
    let now = vs.variables();
    before
        .into_iter()
        .filter(|(name, old)| !now[name].equal(old))
        .map(|(name, _)| name)
        .collect()
}

fn expected_trained(vs: &nn::VarStore) -> BTreeSet<String> {
    vs.variables()
        .into_keys()
        .filter(|name| should_train(name))
        .collect()
}

#[test]
fn a_training_step_after_a_conversion_changes_exactly_the_trainable_tensors() {
    for (kind, convert) in CONVERSIONS {
        let mut vs = nn::VarStore::new(CPU);
        let (m, _) = patched(&vs);
        let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
        convert(&mut vs);
        let loss = m.forward(&ids()).square().mean(Kind::Float);
        let trained = sgd_step(&vs, &mut sgd, &loss);
        assert_eq!(trained, expected_trained(&vs), "{kind:?}");
        for name in &trained {
            assert_eq!(vs.variables()[name].grad().kind(), kind, "{name}");
        }
        assert_converted(&m, &vs, kind, CPU);
    }
}

/// Every floating-point variable of `vs` set to fixed values of magnitude below 0.5: the
/// default generator is shared by the tests running in parallel, so a seed would not fix
/// the draws, and a bfloat16 comparison needs values that are the same on every run.
fn fill_deterministic(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (i, (_, mut tensor)) in vs.variables().into_iter().enumerate() {
            if tensor.is_floating_point() {
                let n = tensor.numel() as i64;
                let values = (Tensor::arange(n, (Kind::Float, CPU)) * 0.37 + i as f64).sin() * 0.45;
                tensor.copy_(&values.view(tensor.size().as_slice()));
            }
        }
    });
}

/// `VarStore::set_kind` converts every variable, integer ones too (tch's documented
/// behaviour): fine for LoRA and bias-only tuning, whose tensors are all floating point.
/// The embedding patch's int64 ids would be rounded (bfloat16: 257 becomes 256), and the
/// patch would add a delta to the wrong rows; it refuses to run instead.
#[test]
fn set_kind_converts_float_patches_and_the_embedding_patch_refuses_rounded_ids() {
    let mut vs = nn::VarStore::new(CPU);
    let (m, _) = patched_with(
        &vs,
        r#"lora(rank=2, alpha=4, targets="*.attn.{q,v}"); bias_only(targets="*.mlp")"#,
    );
    fill_deterministic(&vs);
    let reference = m.forward(&ids());
    vs.set_kind(Kind::BFloat16);
    assert_converted(&m, &vs, Kind::BFloat16, CPU);
    let out = m.forward(&ids());
    assert_eq!(out.kind(), Kind::BFloat16);
    let tol = tolerance(Kind::BFloat16);
    let diff = (out.to_kind(Kind::Float) - &reference)
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        out.to_kind(Kind::Float)
            .allclose(&reference, tol, tol, false),
        "max |bfloat16 - float32| = {diff}"
    );

    let mut vs = nn::VarStore::new(CPU);
    let (m, _) = patched(&vs);
    vs.set_kind(Kind::BFloat16);
    assert_eq!(vs.variables()["embed.token_ids"].kind(), Kind::BFloat16);
    let forward = catch_unwind(AssertUnwindSafe(|| m.forward(&ids())));
    let message = match forward {
        Ok(_) => panic!("forward ran on rounded token ids"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(
        message.contains("`token_ids` is bfloat16, not int64") && message.contains("bfloat16()"),
        "{message}"
    );
}

#[test]
fn a_merged_lora_unmerges_after_a_kind_change() {
    let mut vs = nn::VarStore::new(CPU);
    let (mut m, _) = patched(&vs);
    let original = m.blocks[0].attn.q.root().ws.copy();
    let lora = m.blocks[0]
        .attn
        .q
        .find_mut::<Lora<DynLayer<nn::Linear>>>()
        .unwrap();
    lora.merge().unwrap();
    vs.double();
    let lora = m.blocks[0]
        .attn
        .q
        .find_mut::<Lora<DynLayer<nn::Linear>>>()
        .unwrap();
    lora.unmerge().unwrap();
    let weight = &m.blocks[0].attn.q.root().ws;
    assert_eq!(weight.kind(), Kind::Double);
    assert!(weight
        .to_kind(Kind::Float)
        .allclose(&original, 1e-6, 1e-6, false));
}

/// A fresh copy of `vs`'s model without patches, with `vs`'s base values, converted by
/// `convert`.
fn fresh_base(vs: &nn::VarStore, convert: fn(&mut nn::VarStore)) -> (Model, nn::VarStore) {
    let mut fresh_vs = nn::VarStore::new(CPU);
    let fresh = model(&fresh_vs);
    fresh_vs.copy(vs).unwrap();
    convert(&mut fresh_vs);
    (fresh, fresh_vs)
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tch-patch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_adapter_of_a_converted_model_loads_onto_a_converted_base_and_converts_onto_another_dtype() {
    let dir = TempDir::new("dtype-adapter");
    let mut vs = nn::VarStore::new(CPU);
    let (m, specs) = patched(&vs);
    let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
    vs.bfloat16();
    sgd_step(&vs, &mut sgd, &m.forward(&ids()).square().mean(Kind::Float));
    let adapter = dir.0.join("adapter");
    save_model_adapter(&adapter, &m, &specs).unwrap();

    let (mut fresh, fresh_vs) = fresh_base(&vs, nn::VarStore::bfloat16);
    load_model_adapter(&mut fresh, &fresh_vs, &adapter).unwrap();
    assert_converted(&fresh, &fresh_vs, Kind::BFloat16, CPU);
    assert!(
        fresh.forward(&ids()).equal(&m.forward(&ids())),
        "bit for bit"
    );

    // The same adapter onto a float32 base: converted, as PEFT converts on load...
    let (mut float, float_vs) = fresh_base(&vs, nn::VarStore::float);
    load_model_adapter(&mut float, &float_vs, &adapter).unwrap();
    let lora_a = &float_vs.variables()["blocks.0.attn.q.lora_a"];
    assert_eq!(lora_a.kind(), Kind::Float);
    let saved = &fresh_vs.variables()["blocks.0.attn.q.lora_a"];
    assert!(
        lora_a.equal(&saved.to_kind(Kind::Float)),
        "the bfloat16 values, converted"
    );

    // ...and refused by name and dtype under AdapterDtype::Exact, nothing patched.
    let (mut float, float_vs) = fresh_base(&vs, nn::VarStore::float);
    let error =
        load_model_adapter_with(&mut float, &float_vs, &adapter, AdapterDtype::Exact).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`blocks.0.attn.q.lora_a` has dtype bfloat16, expected float32"),
        "{message}"
    );
    assert!(!float.embed.is_patched() && !float.blocks[0].attn.q.is_patched());
    assert_clean(&message);
}

/// The name, `requires_grad` and leaf-ness of every tensor of a module.
fn grad_state<M: Parameters>(m: &M) -> Vec<(String, bool, bool)> {
    named_tensors(m)
        .into_iter()
        .map(|t| (t.name, t.tensor.requires_grad(), t.tensor.is_leaf()))
        .collect()
}

#[test]
fn mutable_to_kind_converts_a_patched_model_and_training_still_reaches_the_var_store() {
    let vs = nn::VarStore::new(CPU);
    let (m, _) = patched(&vs);
    let reference = m.forward(&ids());
    let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let mut m = Mutable::new(m).unwrap();
    let state = grad_state(&m);
    let ids_before = m.get("embed.token_ids").unwrap();

    m.to_kind(Kind::Double).unwrap();
    assert_eq!(
        grad_state(&m),
        state,
        "requires_grad and leaves as they were"
    );
    for t in named_tensors(&m) {
        let want = if t.name.ends_with("token_ids") {
            Kind::Int64
        } else {
            Kind::Double
        };
        assert_eq!(t.tensor.kind(), want, "{}", t.name);
    }
    assert!(m.get("embed.token_ids").unwrap().is_set_to(&ids_before));
    let out = m.forward(&ids());
    assert_eq!(out.kind(), Kind::Double);
    assert!(out
        .to_kind(Kind::Float)
        .allclose(&reference, 1e-5, 1e-5, false));

    // Assignment and in-place changes take the new dtype, and stay recorded.
    let name = "blocks.0.attn.q.lora_b";
    let lora_b = m.get(name).unwrap();
    assert!(m.set(name, &lora_b.to_kind(Kind::Float)).is_err());
    m.set(name, &(lora_b * 1.5)).unwrap();
    *m.get_mut("blocks.1.mlp.bias_delta").unwrap() *= 2.0;

    // The VarStore's leaves are still float32 and train through the conversion.
    let loss = m.forward(&ids()).square().mean(Kind::Double);
    let trained = sgd_step(&vs, &mut sgd, &loss);
    assert_eq!(trained, expected_trained(&vs));
    for (name, leaf) in vs.variables() {
        assert_eq!(leaf.kind(), leaf_kind(&name), "{name}");
        assert!(!leaf.grad().defined() || leaf.grad().kind() == Kind::Float);
    }
    let restored = m.restore();
    assert!(unregistered_tensors(&vs, &restored).is_empty());
}

fn leaf_kind(name: &str) -> Kind {
    if name.ends_with("token_ids") {
        Kind::Int64
    } else {
        Kind::Float
    }
}

#[test]
fn mutable_conversions_that_cannot_be_done_change_nothing() {
    let vs = nn::VarStore::new(CPU);
    let (m, _) = patched(&vs);
    let mut m = Mutable::new(m).unwrap();
    let before: Vec<(String, Tensor)> = named_tensors(&m)
        .into_iter()
        .map(|t| (t.name, t.tensor))
        .collect();
    let unchanged = |m: &Mutable<Model>| {
        named_tensors(m)
            .into_iter()
            .zip(&before)
            .all(|(now, (name, old))| &now.name == name && now.tensor.is_set_to(old))
    };

    let error = m.to_kind(Kind::Int64).unwrap_err();
    let PatchError::NotFloatingKind { requires_grad, .. } = &error else {
        panic!("{error}")
    };
    assert!(requires_grad.contains(&"blocks.0.attn.q.lora_a".to_owned()));
    assert!(!requires_grad.contains(&"embed.token_ids".to_owned()));
    assert!(error.to_string().contains("to int64"), "{error}");
    assert!(unchanged(&m));
    assert!(m.convert(Kind::Bool, CPU).is_err() && unchanged(&m));

    let gpus = tch::Cuda::device_count();
    let error = m.to_device(Device::Cuda(gpus as usize)).unwrap_err();
    assert!(
        matches!(error, PatchError::UnavailableDevice { device: Device::Cuda(i), .. } if i as i64 == gpus)
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("device cuda:{gpus} is not available")),
        "{message}"
    );
    assert_clean(&message);
    assert!(unchanged(&m));
}

/// Device moves: only where libtorch sees a GPU.
fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        println!("skipped: no CUDA device, so nothing can move off the CPU here");
        None
    }
}

#[test]
fn set_device_moves_every_patch_tensor_and_training_and_adapters_still_work() {
    let Some(gpu) = cuda() else { return };
    let dir = TempDir::new("device-adapter");
    let mut vs = nn::VarStore::new(CPU);
    let (mut m, specs) = patched(&vs);
    let reference = m.forward(&ids());
    // A merged LoRA keeps copies of its matrices outside the VarStore: unmerging after the
    // move must still work.
    m.blocks[1]
        .attn
        .v
        .find_mut::<Lora<DynLayer<nn::Linear>>>()
        .unwrap()
        .merge()
        .unwrap();
    let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
    vs.set_device(gpu);
    assert_converted(&m, &vs, Kind::Float, gpu);
    m.blocks[1]
        .attn
        .v
        .find_mut::<Lora<DynLayer<nn::Linear>>>()
        .unwrap()
        .unmerge()
        .unwrap();
    let out = m.forward(&ids().to_device(gpu));
    assert_eq!(out.device(), gpu);
    assert!(out.to_device(CPU).allclose(&reference, 1e-4, 1e-4, false));

    let loss = m.forward(&ids().to_device(gpu)).square().mean(Kind::Float);
    assert_eq!(sgd_step(&vs, &mut sgd, &loss), expected_trained(&vs));

    let adapter = dir.0.join("adapter");
    save_model_adapter(&adapter, &m, &specs).unwrap();
    let (mut fresh, fresh_vs) = fresh_base(&vs, |vs| vs.set_device(Device::Cuda(0)));
    load_model_adapter(&mut fresh, &fresh_vs, &adapter).unwrap();
    assert_converted(&fresh, &fresh_vs, Kind::Float, gpu);
    let ids = ids().to_device(gpu);
    assert!(fresh.forward(&ids).equal(&m.forward(&ids)));
}

#[test]
fn mutable_to_device_moves_every_tensor_and_training_still_reaches_the_var_store() {
    let Some(gpu) = cuda() else { return };
    let vs = nn::VarStore::new(CPU);
    let (m, _) = patched(&vs);
    let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let mut m = Mutable::new(m).unwrap();
    let state = grad_state(&m);
    m.to_device(gpu).unwrap();
    assert_eq!(grad_state(&m), state);
    assert!(named_tensors(&m).iter().all(|t| t.tensor.device() == gpu));
    let loss = m.forward(&ids().to_device(gpu)).square().mean(Kind::Float);
    assert_eq!(sgd_step(&vs, &mut sgd, &loss), expected_trained(&vs));
    assert!(vs.variables().values().all(|leaf| leaf.device() == CPU));
}

// ---- Error text: dtypes, devices and shapes as a user reads them ----

/// No Rust `Debug` of tch's types or of `Option` in a message.
fn assert_clean(message: &str) {
    for debug in [
        "Some(", "None", "Kind::", "Float", "Double", "Int64", "Cpu", "Cuda(",
    ] {
        assert!(!message.contains(debug), "`{debug}` in: {message}");
    }
}

#[test]
fn errors_write_dtypes_devices_and_shapes_as_pytorch_does() {
    let dir = TempDir::new("error-text");
    let float = (Kind::Float, CPU);
    let vs = nn::VarStore::new(CPU);
    let linear = || nn::linear(vs.root(), 2, 1, Default::default());
    let mut messages: Vec<(String, Vec<&str>)> = Vec::new();
    let mut expect = |error: PatchError, wanted: Vec<&'static str>| {
        messages.push((error.to_string(), wanted));
    };

    // A shape and a dtype mismatch.
    let mut m = Mutable::new(linear()).unwrap();
    let wrong_shape = m.set("weight", &Tensor::zeros([2, 2], float));
    expect(
        wrong_shape.unwrap_err(),
        vec!["`weight` has shape [2, 2], expected [1, 2]"],
    );
    let wrong_kind = m.set("weight", &Tensor::zeros([1, 2], (Kind::Double, CPU)));
    expect(
        wrong_kind.unwrap_err(),
        vec!["`weight` has dtype float64, expected float32"],
    );

    // A transform whose output changes the dtype.
    let to_double = parametrize(linear(), "weight", |w: &Tensor| w.to_kind(Kind::Double));
    expect(
        to_double.err().unwrap(),
        vec!["gives shape [1, 2], dtype float64, device cpu, but must keep its input's shape [1, 2], dtype float32, device cpu"],
    );

    // A checkpoint with another dtype.
    let mut double_vs = nn::VarStore::new(CPU);
    let double = nn::linear(double_vs.root(), 2, 1, Default::default());
    double_vs.double();
    let file = dir.0.join("double.safetensors");
    save_module(&double, &file, "").unwrap();
    let mut target = linear();
    let load = load_safetensors(&mut target, &file, &LoadOptions::new());
    expect(
        load.unwrap_err().into(),
        vec!["`weight` has dtype float64, expected float32"],
    );

    // An integer value for a tensor that requires grad; an integer weight for LoRA.
    let mut plain = linear();
    let ints = Tensor::zeros([1, 2], (Kind::Int64, CPU));
    expect(
        replace_tensor(&mut plain, "weight", &ints).unwrap_err(),
        vec!["requires grad, so its dtype must be floating point or complex, not int64"],
    );
    let int_linear = nn::Linear {
        ws: ints.shallow_clone(),
        bs: None,
    };
    let lora = Lora::new(int_linear, &(vs.root() / "int"), &Default::default());
    expect(
        lora.err().unwrap(),
        vec!["`weight` has dtype int64, expected a floating-point dtype"],
    );
    let flat_linear = nn::Linear {
        ws: Tensor::zeros([3], float),
        bs: None,
    };
    let lora = Lora::new(flat_linear, &(vs.root() / "flat"), &Default::default());
    expect(
        lora.err().unwrap(),
        vec!["`weight` has shape [3], expected [out_features, in_features]"],
    );

    assert_eq!(messages.len(), 7);
    for (message, wanted) in &messages {
        for part in wanted {
            assert!(message.contains(part), "`{part}` not in: {message}");
        }
        assert_clean(message);
    }
}
