//! Bias-only tuning, "dropout before linear" and LoRA on an embedding on real tch layers,
//! built directly and from patch strings.
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{
    BiasOnly, BiasOnlyConfig, BuildPatch, DropoutBefore, DropoutBeforeConfig, LinearLike,
    MostlyFrozenEmbedding,
};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::Registry;
use tch_patch::{named_tensors, Patch, PatchError};

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);

#[test]
fn bias_only_trains_only_its_offset() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 6, 3, Default::default());
    let patched = BiasOnly::new(linear, &path, &BiasOnlyConfig {}).unwrap();
    assert!(vs.variables()["fc.bias_delta"].is_set_to(patched.bias_delta()));
    let names: Vec<String> = named_tensors(&patched)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["weight", "bias", "bias_delta"]);
    let xs = Tensor::randn([8, 6], FLOAT);
    assert!(patched
        .forward_t(&xs, false)
        .equal(&patched.base().forward(&xs)));

    let weight = patched.ws.detach().copy();
    let bias = patched.bs.as_ref().unwrap().detach().copy();
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let loss = (patched.forward_t(&xs, true) - 1.0)
        .square()
        .mean(Kind::Float);
    opt.zero_grad();
    loss.backward();
    assert!(!patched.ws.grad().defined());
    assert!(!patched.bs.as_ref().unwrap().grad().defined());
    assert!(patched.bias_delta().grad().defined());
    opt.step();
    assert!(patched.ws.equal(&weight) && patched.bs.as_ref().unwrap().equal(&bias));
    let shift = patched.bias_delta().detach().copy();
    assert!(shift.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    let expected = patched.base().forward(&xs) + &shift;
    assert!(patched
        .forward_t(&xs, false)
        .allclose(&expected, 1e-6, 1e-6, false));
}

#[test]
fn bias_only_works_on_a_base_without_bias_and_gives_it_back_on_error() {
    let vs = nn::VarStore::new(CPU);
    let config = nn::LinearConfig {
        bias: false,
        ..Default::default()
    };
    let linear = nn::linear(vs.root() / "fc", 4, 2, config);
    let patched = BiasOnly::new(linear, &(vs.root() / "fc"), &BiasOnlyConfig {}).unwrap();
    assert_eq!(patched.bias_delta().size(), [2]);
    // Same path again: `fc.bias_delta` is taken; the base comes back untouched.
    let other = nn::linear(vs.root() / "other", 4, 2, Default::default());
    let ptr = other.ws.data_ptr();
    let failed = BiasOnly::build(other, &(vs.root() / "fc"), &BiasOnlyConfig {}).unwrap_err();
    assert!(matches!(failed.error, PatchError::NameTaken { .. }));
    assert_eq!(failed.base.ws.data_ptr(), ptr);
}

#[test]
fn dropout_before_drops_inputs_in_training_mode_only() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(CPU);
    // An identity layer shows the dropped input itself.
    let identity = nn::Linear {
        ws: Tensor::eye(64, FLOAT),
        bs: None,
    };
    let _ = &vs;
    let patched = DropoutBefore::new(identity, &DropoutBeforeConfig { p: 0.25 }).unwrap();
    let xs = Tensor::ones([32, 64], FLOAT);
    assert!(patched
        .forward_t(&xs, false)
        .equal(&patched.base().forward(&xs)));
    let ys = patched.forward_t(&xs, true);
    let kept = ys.ne(0.0);
    // Kept inputs are scaled by 1 / (1 − p); about a quarter are zeroed.
    let scaled = ys.masked_select(&kept);
    assert!(scaled.allclose(&Tensor::full_like(&scaled, 1.0 / 0.75), 1e-6, 1e-6, false));
    let dropped = 1.0
        - kept
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
    assert!((0.2..0.3).contains(&dropped), "{dropped}");
    assert!(patched.forward_t(&xs, false).equal(&xs));
    assert_eq!((patched.in_features(), patched.p()), (64, 0.25));
    assert!(DropoutBefore::new(
        nn::linear(vs.root(), 2, 2, Default::default()),
        &DropoutBeforeConfig { p: 1.5 }
    )
    .is_err());
}

#[test]
fn every_builtin_is_built_from_its_patch_string() {
    let registry = Registry::global().unwrap();
    let specs = registry
        .parse(concat!(
            r#"bias_only(targets="fc"); dropout_before(p=0.2, targets="fc2"); "#,
            r#"mostly_frozen_embedding(tokens=[1, 4], targets="emb")"#
        ))
        .unwrap();
    let vs = nn::VarStore::new(CPU);
    let root = vs.root();
    let fc = nn::linear(&root / "fc", 3, 3, Default::default());
    let bias_only = BiasOnly::build_from_spec(fc, &(&root / "fc"), &specs[0]).unwrap();
    let fc2 = nn::linear(&root / "fc2", 3, 3, Default::default());
    let dropout = DropoutBefore::build_from_spec(fc2, &(&root / "fc2"), &specs[1]).unwrap();
    assert_eq!(dropout.p(), 0.2);
    let emb = nn::embedding(&root / "emb", 8, 3, Default::default());
    let rows = MostlyFrozenEmbedding::build_from_spec(emb, &(&root / "emb"), &specs[2]).unwrap();
    assert_eq!(rows.token_ids(), [1, 4]);
    assert_eq!(
        <MostlyFrozenEmbedding as Patch>::NAME,
        "mostly_frozen_embedding"
    );
    // A spec of another patch is an error, and the base comes back.
    let emb = nn::embedding(&root / "emb2", 8, 3, Default::default());
    let failed =
        MostlyFrozenEmbedding::build_from_spec(emb, &(&root / "emb2"), &specs[0]).unwrap_err();
    assert!(matches!(
        failed.error,
        PatchError::PatchString(PatchStringError::WrongPatch { .. })
    ));
    // Ids out of range: the error names them; nothing is registered.
    let bad = registry
        .parse_one(r#"mostly_frozen_embedding(tokens=[9], targets="emb")"#)
        .unwrap();
    let failed =
        MostlyFrozenEmbedding::build_from_spec(failed.base, &(&root / "emb2"), &bad).unwrap_err();
    assert_eq!(
        failed.error.to_string(),
        "trainable token id 9 is out of range for 8 rows"
    );
    assert!(!vs.variables().contains_key("emb2.delta"));
    let _ = bias_only;
}

#[derive(tch_patch::ModuleTree, tch_patch::Parameters)]
struct TokensThenLinear {
    emb: tch_patch::Slot<nn::Embedding>,
    proj: tch_patch::Slot<nn::Linear>,
}

#[test]
fn one_lora_string_adapts_an_embedding_and_a_linear_layer() {
    use tch_patch::patches::{Lora, LoraEmbedding};
    let vs = nn::VarStore::new(CPU);
    let root = vs.root();
    let mut model = TokensThenLinear {
        emb: tch_patch::Slot::new(nn::embedding(&root / "emb", 10, 4, Default::default())),
        proj: tch_patch::Slot::new(nn::linear(&root / "proj", 4, 4, Default::default())),
    };
    let table = model.emb.root().ws.data_ptr();
    let reports = tch_patch::apply_patch_string(
        &mut model,
        &vs,
        r#"lora(rank=2, alpha=4, targets="{emb,proj}")"#,
    )
    .unwrap();
    assert_eq!(reports[0].paths(), ["emb", "proj"]);
    let emb = model
        .emb
        .find::<LoraEmbedding>()
        .expect("LoRA of an embedding");
    assert_eq!((emb.config().rank, emb.scaling()), (2, 2.0));
    assert!(model
        .proj
        .find::<Lora<tch_patch::tree::DynLayer<nn::Linear>>>()
        .is_some());
    let printed = tch_patch::tree::print_tree(&model);
    assert!(
        printed.contains("lora_embedding_a [2, 10]") && printed.contains("lora_embedding_b [4, 2]"),
        "{printed}"
    );
    // The spec builds it directly too, from the same config.
    let spec = Registry::global()
        .unwrap()
        .parse_one(r#"lora(rank=3, targets="e")"#)
        .unwrap();
    let other = nn::embedding(&root / "e", 6, 4, Default::default());
    let built = LoraEmbedding::build_from_spec(other, &(&root / "e"), &spec).unwrap();
    assert_eq!(built.lora_embedding_a().size(), [3, 6]);

    use tch_patch::tree::ModuleTreeExt;
    assert_eq!(model.unpatch_all_from(&vs).patches(), 2);
    assert_eq!(model.emb.root().ws.data_ptr(), table);
    assert!(!vs.variables().contains_key("emb.lora_embedding_a"));
}

#[test]
fn dora_comes_from_a_patch_string_and_round_trips_through_an_adapter_folder() {
    use tch_patch::adapter::{load_model_adapter, save_model_adapter};
    use tch_patch::patches::Dora;
    use tch_patch::tree::DynLayer;
    let model_in = |vs: &nn::VarStore| TokensThenLinear {
        emb: tch_patch::Slot::new(nn::embedding(vs.root() / "emb", 10, 4, Default::default())),
        proj: tch_patch::Slot::new(nn::linear(vs.root() / "proj", 4, 4, Default::default())),
    };
    let vs = nn::VarStore::new(CPU);
    let mut model = model_in(&vs);
    // DoRA wraps linear layers only (PEFT's DoRA on embeddings is not implemented).
    let error = tch_patch::apply_patch_string(&mut model, &vs, r#"dora(targets="{emb,proj}")"#)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("patch `dora` cannot wrap `emb`"),
        "{error}"
    );
    let patches = r#"dora(rank=2, alpha=4, targets="proj")"#;
    tch_patch::apply_patch_string(&mut model, &vs, patches).unwrap();
    let dora = model.proj.find::<Dora<DynLayer<nn::Linear>>>().unwrap();
    let _ = tch::no_grad(|| dora.lora_b().shallow_clone().fill_(0.3));
    let printed = tch_patch::tree::print_tree(&model);
    assert!(printed.contains("lora_magnitude [4]"), "{printed}");

    let dir = std::env::temp_dir().join(format!("tch-patch-dora-adapter-{}", std::process::id()));
    let specs = Registry::global().unwrap().parse(patches).unwrap();
    save_model_adapter(&dir, &model, &specs).unwrap();
    let fresh_vs = nn::VarStore::new(CPU);
    let mut fresh = model_in(&fresh_vs);
    tch::no_grad(|| {
        for (name, mut tensor) in fresh_vs.variables() {
            tensor.copy_(&vs.variables()[&name]);
        }
    });
    load_model_adapter(&mut fresh, &fresh_vs, &dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ids = Tensor::from_slice(&[1i64, 7, 3]);
    let run = |m: &TokensThenLinear| ids.apply_t(&m.emb, false).apply_t(&m.proj, false);
    assert!(run(&fresh).equal(&run(&model)));
    assert!(fresh_vs.variables().contains_key("proj.lora_magnitude"));
}
