//! Patch strings applied to a whole model: rules from the registry, all or nothing.
mod common;

use common::slot_model::Model;
use std::collections::BTreeSet;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::tree::TreeError;
use tch_patch::{apply_patch_string, named_tensors, tree::ModuleTreeExt, PatchError, Slot};

const CPU: Device = Device::Cpu;
const DIM: i64 = 8;

fn model(vs: &nn::VarStore) -> Model {
    common::slot_model::model(vs, 16, DIM)
}

impl Model {
    fn forward(&self, ids: &Tensor) -> Tensor {
        let mut xs = self.embed.forward_t(ids, false);
        for block in &self.blocks {
            let a = &block.attn;
            xs = &xs
                + a.q.forward_t(&xs, false) * a.k.forward_t(&xs, false)
                + a.v.forward_t(&xs, false);
            xs = &xs + block.mlp.forward_t(&xs, false).relu();
        }
        xs
    }
}

fn snapshot(m: &Model) -> Vec<(String, usize, Tensor)> {
    named_tensors(m)
        .into_iter()
        .map(|t| (t.name, t.tensor.data_ptr() as usize, t.tensor.copy()))
        .collect()
}

fn assert_same(a: &[(String, usize, Tensor)], b: &[(String, usize, Tensor)]) {
    assert_eq!(a.len(), b.len());
    for ((na, pa, ta), (nb, pb, tb)) in a.iter().zip(b) {
        assert_eq!((na, pa), (nb, pb));
        assert!(ta.equal(tb), "{na} changed");
    }
}

const CHAIN: &str = r#"lora(rank=2, alpha=4, targets="*.attn.{q,v}"); bias_only(targets="*.mlp"); mostly_frozen_embedding(tokens=[3, 5], targets="embed")"#;

#[test]
fn a_chain_patches_every_match_and_names_what_it_patched() {
    let vs = nn::VarStore::new(CPU);
    let mut m = model(&vs);
    let reports = apply_patch_string(&mut m, &vs, CHAIN).unwrap();
    assert_eq!(
        reports[0].paths(),
        [
            "blocks.0.attn.q",
            "blocks.0.attn.v",
            "blocks.1.attn.q",
            "blocks.1.attn.v"
        ]
    );
    assert_eq!(reports[1].paths(), ["blocks.0.mlp", "blocks.1.mlp"]);
    assert_eq!(reports[2].paths(), ["embed"]);
    assert_eq!(m.blocks[1].attn.v.patch_name(), Some("lora"));
    assert!(!m.blocks[1].attn.k.is_patched());
    let names: BTreeSet<String> = vs.variables().into_keys().collect();
    assert!(names.contains("blocks.1.attn.v.lora_a") && names.contains("embed.delta"));
}

/// A patch freezes the layer it wraps (its parent's tensors get no gradient); layers no
/// patch touches stay as trainable as they were.
#[test]
fn patched_layers_train_only_their_added_tensors() {
    let vs = nn::VarStore::new(CPU);
    let mut m = model(&vs);
    apply_patch_string(&mut m, &vs, CHAIN).unwrap();
    let before = snapshot(&m);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let ids = Tensor::from_slice(&[1i64, 3, 5, 7]);
    let target = Tensor::randn([4, DIM], (Kind::Float, CPU));
    for _ in 0..3 {
        let loss = m.forward(&ids).mse_loss(&target, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let added = ["lora_a", "lora_b", "bias_delta", "delta", "token_ids"];
    let patched = ["attn.q.", "attn.v.", "mlp.", "embed."];
    let mut unpatched_moved = false;
    for (name, _, value) in &before {
        let now = named_tensors(&m)
            .into_iter()
            .find(|t| &t.name == name)
            .unwrap()
            .tensor;
        let is_added = added.iter().any(|suffix| name.ends_with(suffix));
        let in_patched = patched.iter().any(|part| name.contains(part));
        if in_patched && !is_added {
            assert!(
                now.equal(value),
                "{name} is frozen by its patch but changed"
            );
        }
        unpatched_moved |= name.contains("attn.k.") && !now.equal(value);
    }
    assert!(unpatched_moved, "an unpatched layer still trains");
    let lora_b = named_tensors(&m)
        .into_iter()
        .find(|t| t.name == "blocks.0.attn.q.lora_b")
        .unwrap();
    assert!(
        lora_b.tensor.abs().sum(Kind::Float).double_value(&[]) > 0.0,
        "lora_b trained"
    );
}

#[test]
fn a_failing_spec_undoes_the_whole_chain_and_unpatch_all_restores_the_model() {
    let vs = nn::VarStore::new(CPU);
    let mut m = model(&vs);
    let before = snapshot(&m);
    let vars_before: BTreeSet<String> = vs.variables().into_keys().collect();
    let error = apply_patch_string(
        &mut m,
        &vs,
        r#"lora(rank=2, targets="*.attn.q"); bias_only(targets="*.attn.qq")"#,
    )
    .unwrap_err();
    assert!(
        matches!(error, PatchError::Tree(TreeError::NoMatch { .. })),
        "{error}"
    );
    assert!(
        error.to_string().contains("blocks.0.attn.q"),
        "nearest paths listed: {error}"
    );
    assert!(!m.blocks[0].attn.q.is_patched());
    assert_eq!(
        vs.variables().into_keys().collect::<BTreeSet<_>>(),
        vars_before
    );
    assert_same(&before, &snapshot(&m));

    apply_patch_string(&mut m, &vs, CHAIN).unwrap();
    let again = apply_patch_string(&mut m, &vs, r#"lora(rank=2, targets="*.attn.q")"#);
    assert!(matches!(
        again,
        Err(PatchError::Tree(TreeError::AlreadyPatched { .. }))
    ));
    m.unpatch_all_from(&vs);
    assert_same(&before, &snapshot(&m));
    assert_eq!(
        vs.variables().into_keys().collect::<BTreeSet<_>>(),
        vars_before
    );
}

#[test]
fn patches_of_different_names_stack_in_one_slot() {
    let vs = nn::VarStore::new(CPU);
    let mut m = model(&vs);
    let ids = Tensor::from_slice(&[1i64, 2]);
    let plain = m.forward(&ids);
    apply_patch_string(
        &mut m,
        &vs,
        r#"bias_only(targets="*.mlp"); lora(rank=2, targets="*.mlp")"#,
    )
    .unwrap();
    assert_eq!(m.blocks[0].mlp.patch_names(), ["lora", "bias_only"]);
    // Fresh adapters change nothing: B and the bias delta start at zero.
    assert!(m.forward(&ids).allclose(&plain, 1e-6, 1e-6, false));
}

#[test]
fn a_model_adapter_round_trips_onto_a_fresh_base() {
    let dir = std::env::temp_dir().join(format!("tch-patch-model-adapter-{}", std::process::id()));
    let vs = nn::VarStore::new(CPU);
    let mut m = model(&vs);
    let base_file = dir.join("base.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    let specs = tch_patch::registry::Registry::global()
        .unwrap()
        .parse(CHAIN)
        .unwrap();
    tch_patch::registry::apply_specs(&mut m, &vs, &specs).unwrap();
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let ids = Tensor::from_slice(&[1i64, 3, 5, 7]);
    let target = Tensor::randn([4, DIM], (Kind::Float, CPU));
    for _ in 0..3 {
        opt.backward_step(&m.forward(&ids).mse_loss(&target, tch::Reduction::Mean));
    }
    let adapter = dir.join("adapter");
    tch_patch::adapter::save_model_adapter(&adapter, &m, &specs).unwrap();
    // Unpatched layers trained too: the base checkpoint is the trained model's (its patch
    // tensors are skipped when loading it into the bare model).
    tch_patch::save::save_module(&m, &base_file, "").unwrap();

    let fresh_vs = nn::VarStore::new(CPU);
    let mut fresh = model(&fresh_vs);
    let options = tch_patch::load::LoadOptions::new().allow_unexpected(true);
    tch_patch::load::load_safetensors(&mut fresh, &base_file, &options).unwrap();
    let reports = tch_patch::adapter::load_model_adapter(&mut fresh, &fresh_vs, &adapter).unwrap();
    assert_eq!(reports.iter().map(|r| r.len()).sum::<usize>(), 7);
    assert!(
        fresh.forward(&ids).equal(&m.forward(&ids)),
        "same outputs, bit for bit"
    );

    // A base whose layers have another width cannot take the adapter: nothing stays patched.
    let narrow_vs = nn::VarStore::new(CPU);
    let root = narrow_vs.root();
    let mut narrow = model(&narrow_vs);
    narrow.blocks[0].attn.q = Slot::new(nn::linear(&root / "x", DIM, DIM / 2, Default::default()));
    let before = snapshot(&narrow);
    let error =
        tch_patch::adapter::load_model_adapter(&mut narrow, &narrow_vs, &adapter).unwrap_err();
    assert!(
        matches!(error, PatchError::InvalidTensors { .. }),
        "{error}"
    );
    assert!(!narrow.blocks[0].attn.v.is_patched() && !narrow.embed.is_patched());
    assert_same(&before, &snapshot(&narrow));
    std::fs::remove_dir_all(&dir).unwrap();
}
