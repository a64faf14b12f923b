//! The train flag is tch's: the `train` argument of `nn::ModuleT::forward_t`, and it
//! reaches every patch. Dropout (`DropoutBefore`, `Lora`'s `dropout`) applies iff `train`,
//! whether the patch is called directly, through a `Slot`, inside a stack of patches or as
//! a slot's boxed content; `train = false` gives the base bit for bit; a batch norm under a
//! patch sees the flag too. `p = 1.0` is accepted, as torch accepts it.
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{BuildPatch, DropoutBefore, DropoutBeforeConfig, Lora, LoraConfig};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{PatchArgs, Registry};
use tch_patch::{
    apply_patch_string, tree::DynLayer, Layer, ModuleTree, Parameters, Patch, PatchError, Slot,
};

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);
const DIM: i64 = 64;

/// An identity layer: its output is the (dropped) input itself.
fn identity() -> nn::Linear {
    nn::Linear {
        ws: Tensor::eye(DIM, FLOAT),
        bs: None,
    }
}

fn ones() -> Tensor {
    Tensor::ones([32, DIM], FLOAT)
}

/// `ys` is `ones()` after dropout with p = 0.5: about half the elements zeroed, the others
/// scaled to 2.
fn assert_half_dropped(ys: &Tensor) {
    let kept = ys.ne(0.0);
    let scaled = ys.masked_select(&kept);
    assert!(
        scaled.equal(&Tensor::full_like(&scaled, 2.0)),
        "kept inputs are scaled by 1 / (1 - p)"
    );
    let dropped = 1.0
        - kept
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
    assert!(
        (0.4..0.6).contains(&dropped),
        "dropped {dropped}, not about half"
    );
}

/// Fills `B` so that the LoRA update is not zero.
fn set_lora_b(lora: &Lora<impl tch_patch::patches::LinearLike>) {
    let mut b = lora.lora_b().shallow_clone();
    tch::no_grad(|| b.copy_(&Tensor::randn(b.size(), FLOAT)));
}

/// The LoRA output without dropout, by hand.
fn lora_by_hand<L: tch_patch::patches::LinearLike>(
    lora: &Lora<L>,
    base: &Tensor,
    xs: &Tensor,
) -> Tensor {
    base + xs.matmul(&lora.lora_a().tr()).matmul(&lora.lora_b().tr()) * lora.scaling()
}

#[derive(Debug, ModuleTree, Parameters)]
struct Model {
    fc: Slot<nn::Linear>,
}

/// A model with one identity slot `fc`, patched by `patches`.
fn model(vs: &nn::VarStore, patches: &str) -> Model {
    let mut model = Model {
        fc: Slot::new(identity()),
    };
    apply_patch_string(&mut model, vs, patches).unwrap();
    model
}

#[test]
fn dropout_before_drops_its_input_iff_train() {
    tch::manual_seed(0);
    let patched = DropoutBefore::new(identity(), &DropoutBeforeConfig { p: 0.5 }).unwrap();
    let xs = ones();
    assert_half_dropped(&patched.forward_t(&xs, true));
    assert_half_dropped(&xs.apply_t(&patched, true));
    // Eval: exactly the base's forward.
    assert!(patched
        .forward_t(&xs, false)
        .equal(&patched.base().forward(&xs)));
    assert!(xs.apply_t(&patched, false).equal(&xs));
}

#[test]
fn dropout_before_with_p_one_feeds_the_base_zeros_in_training() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root() / "fc", 8, 3, Default::default());
    let patched = DropoutBefore::new(linear, &DropoutBeforeConfig { p: 1.0 }).unwrap();
    let xs = Tensor::randn([5, 8], FLOAT);
    let base_of_zeros = patched.base().forward(&xs.zeros_like());
    assert!(patched.forward_t(&xs, true).equal(&base_of_zeros));
    assert!(patched
        .forward_t(&xs, false)
        .equal(&patched.base().forward(&xs)));
}

#[test]
fn lora_dropout_applies_to_the_update_iff_train() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, DIM, 16, Default::default());
    let config = LoraConfig {
        rank: 4,
        dropout: 0.5,
        ..Default::default()
    };
    let lora = Lora::new(linear, &path, &config).unwrap();
    set_lora_b(&lora);
    let xs = Tensor::randn([32, DIM], FLOAT);
    let base = lora.base().forward(&xs);
    let eval = lora.forward_t(&xs, false);
    assert!(eval.allclose(&lora_by_hand(&lora, &base, &xs), 1e-5, 1e-5, false));
    assert!(
        lora.forward_t(&xs, false).equal(&eval),
        "eval is deterministic"
    );
    let train = lora.forward_t(&xs, true);
    assert!(
        !train.allclose(&eval, 1e-3, 1e-3, false),
        "dropout in training"
    );
    assert!(!xs.apply_t(&lora, true).allclose(&eval, 1e-3, 1e-3, false));
}

#[test]
fn lora_dropout_of_one_leaves_the_base_alone_in_training() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, DIM, 16, Default::default());
    let config = LoraConfig {
        rank: 4,
        dropout: 1.0,
        ..Default::default()
    };
    let lora = Lora::new(linear, &path, &config).unwrap();
    set_lora_b(&lora);
    let xs = Tensor::randn([32, DIM], FLOAT);
    let base = lora.base().forward(&xs);
    // Every input of the update is dropped: the update is zero, the output the base's.
    assert!(lora.forward_t(&xs, true).equal(&base));
    assert!(!lora
        .forward_t(&xs, false)
        .allclose(&base, 1e-3, 1e-3, false));
}

#[test]
fn a_slot_passes_train_to_dropout_before() {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(CPU);
    let model = model(&vs, r#"dropout_before(p=0.5, targets="fc")"#);
    let xs = ones();
    assert_half_dropped(&model.fc.forward_t(&xs, true));
    assert_half_dropped(&xs.apply_t(&model.fc, true));
    assert!(model.fc.forward_t(&xs, false).equal(&xs));
}

#[test]
fn a_slot_passes_train_to_lora() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(CPU);
    let model = model(&vs, r#"lora(rank=4, dropout=0.5, targets="fc")"#);
    let lora = model
        .fc
        .downcast_ref::<Lora<DynLayer<nn::Linear>>>()
        .unwrap();
    set_lora_b(lora);
    let xs = Tensor::randn([32, DIM], FLOAT);
    let eval = model.fc.forward_t(&xs, false);
    assert!(eval.allclose(&lora_by_hand(lora, &xs, &xs), 1e-5, 1e-5, false));
    let train = model.fc.forward_t(&xs, true);
    assert!(
        !train.allclose(&eval, 1e-3, 1e-3, false),
        "dropout in training"
    );
}

/// Dropout-before (p = 0: it never drops) over LoRA with dropout: the flag reaches the
/// inner patch, through the outer one and the slot's boxed content.
#[test]
fn a_stack_passes_train_down_to_lora() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(CPU);
    let model = model(
        &vs,
        r#"lora(rank=4, dropout=0.5, targets="fc"); dropout_before(p=0.0, targets="fc")"#,
    );
    assert_eq!(model.fc.patch_names(), ["dropout_before", "lora"]);
    set_lora_b(model.fc.find::<Lora<DynLayer<nn::Linear>>>().unwrap());
    let xs = Tensor::randn([32, DIM], FLOAT);
    let eval = model.fc.forward_t(&xs, false);
    assert!(!model
        .fc
        .forward_t(&xs, true)
        .allclose(&eval, 1e-3, 1e-3, false));
}

/// LoRA (a fresh one, whose update is zero) over dropout-before: LoRA's frozen forward of
/// its base passes the flag on, so the input is dropped in training.
#[test]
fn a_stack_passes_train_down_to_dropout_before() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(CPU);
    let model = model(
        &vs,
        r#"dropout_before(p=0.5, targets="fc"); lora(rank=4, targets="fc")"#,
    );
    assert_eq!(model.fc.patch_names(), ["lora", "dropout_before"]);
    let xs = ones();
    assert_half_dropped(&model.fc.forward_t(&xs, true));
    assert!(model.fc.forward_t(&xs, false).equal(&xs));
    // The same content out of its slot: the boxed content passes the flag on by itself.
    let content: DynLayer<nn::Linear> = model.fc.into_content();
    assert_half_dropped(&content.forward_t(&xs, true));
    assert!(content.forward_t(&xs, false).equal(&xs));
}

#[test]
fn a_static_stack_passes_train_down() {
    tch::manual_seed(6);
    let vs = nn::VarStore::new(CPU);
    let dropped = DropoutBefore::new(identity(), &DropoutBeforeConfig { p: 0.5 }).unwrap();
    let lora = Lora::new(dropped, &(vs.root() / "fc"), &LoraConfig::default()).unwrap();
    let xs = ones();
    assert_half_dropped(&lora.forward_t(&xs, true));
    assert!(lora.forward_t(&xs, false).equal(&xs));
}

/// A batch norm boxed as a slot's content, under dropout-before: the train flag reaches
/// it, so its running stats move in training only.
#[test]
fn batch_norm_under_dropout_before_updates_its_stats_iff_train() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(CPU);
    let bn = nn::batch_norm1d(vs.root() / "bn", 4, Default::default());
    let content: DynLayer<nn::BatchNorm> = bn.into_content();
    let patched = DropoutBefore::new(content, &DropoutBeforeConfig { p: 0.5 }).unwrap();
    let stats = |patched: &DropoutBefore<DynLayer<nn::BatchNorm>>| {
        let bn = patched.base().root();
        (bn.running_mean.copy(), bn.running_var.copy())
    };
    let xs = Tensor::randn([16, 4], FLOAT) * 3.0 + 1.0;
    let (mean, var) = stats(&patched);
    let _ = patched.forward_t(&xs, false);
    let (eval_mean, eval_var) = stats(&patched);
    assert!(
        eval_mean.equal(&mean) && eval_var.equal(&var),
        "eval leaves them"
    );
    let _ = patched.forward_t(&xs, true);
    let (train_mean, train_var) = stats(&patched);
    assert!(
        !train_mean.equal(&mean) && !train_var.equal(&var),
        "training moves them"
    );
}

/// The same in a slot, where the patch is applied at run time.
#[test]
fn batch_norm_in_a_slot_under_dropout_before_updates_its_stats_iff_train() {
    tch::manual_seed(8);
    let vs = nn::VarStore::new(CPU);
    let mut slot = Slot::new(nn::batch_norm1d(vs.root() / "bn", 4, Default::default()));
    slot.replace_with(|content| {
        let config = DropoutBeforeConfig { p: 0.5 };
        Ok(Box::new(DropoutBefore::new(content, &config).unwrap()))
    })
    .unwrap();
    let xs = Tensor::randn([16, 4], FLOAT) * 3.0 + 1.0;
    let mean = slot.root().running_mean.copy();
    let _ = slot.forward_t(&xs, false);
    assert!(slot.root().running_mean.equal(&mean), "eval leaves them");
    let _ = xs.apply_t(&slot, true);
    assert!(
        !slot.root().running_mean.equal(&mean),
        "training moves them"
    );
}

/// A batch norm is an `nn::ModuleT` only: dropout-before patches it directly and passes the
/// flag to it.
#[test]
fn dropout_before_patches_a_batch_norm_and_passes_it_train() {
    tch::manual_seed(9);
    let vs = nn::VarStore::new(CPU);
    let bn = nn::batch_norm1d(vs.root() / "bn", 4, Default::default());
    let patched = DropoutBefore::new(bn, &DropoutBeforeConfig { p: 0.5 }).unwrap();
    let xs = Tensor::randn([16, 4], FLOAT) * 3.0 + 1.0;
    let mean = patched.running_mean.copy();
    let eval = patched.forward_t(&xs, false);
    assert!(eval.equal(&patched.base().forward_t(&xs, false)));
    assert!(patched.running_mean.equal(&mean), "eval leaves them");
    let _ = patched.forward_t(&xs, true);
    assert!(!patched.running_mean.equal(&mean), "training moves them");
}

#[test]
fn p_of_one_is_accepted_and_above_one_refused() {
    let registry = Registry::global().unwrap();
    let spec = registry
        .parse_one(r#"dropout_before(p=1.0, targets="fc")"#)
        .unwrap();
    assert_eq!(spec.config::<DropoutBeforeConfig>().unwrap().p, 1.0);
    let spec = registry
        .parse_one(r#"lora(dropout=1.0, targets="fc")"#)
        .unwrap();
    assert_eq!(spec.config::<LoraConfig>().unwrap().dropout, 1.0);
    DropoutBeforeConfig { p: 1.0 }.validate().unwrap();
    let vs = nn::VarStore::new(CPU);
    let model = model(&vs, r#"dropout_before(p=1.0, targets="fc")"#);
    assert!(model
        .fc
        .forward_t(&ones(), true)
        .equal(&ones().zeros_like()));

    // Above one (or below zero): a typed error naming the argument and its range.
    let error = registry
        .parse_one(r#"dropout_before(p=1.5, targets="fc")"#)
        .unwrap_err();
    assert!(
        matches!(&error, PatchStringError::ArgumentOutOfRange { name, allowed, .. }
            if name == "p" && allowed == "in 0.0..=1.0"),
        "{error}"
    );
    for p in [1.5, -0.1, f64::NAN, f64::INFINITY] {
        let error = DropoutBefore::new(identity(), &DropoutBeforeConfig { p }).unwrap_err();
        assert!(
            matches!(&error, PatchError::PatchString(PatchStringError::ArgumentOutOfRange { name, .. }) if name == "p"),
            "{p}: {error}"
        );
    }
    let failed =
        DropoutBefore::build(identity(), &vs.root(), &DropoutBeforeConfig { p: 1.5 }).unwrap_err();
    assert_eq!(failed.base.ws.size(), [DIM, DIM], "the base comes back");
    let config = LoraConfig {
        dropout: 1.5,
        ..Default::default()
    };
    let error = Lora::new(identity(), &(vs.root() / "q"), &config).unwrap_err();
    assert!(
        matches!(&error, PatchError::PatchString(PatchStringError::ArgumentOutOfRange { name, allowed, .. })
            if name == "dropout" && allowed == "in 0.0..=1.0"),
        "{error}"
    );
}
