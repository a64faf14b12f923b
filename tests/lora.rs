//! LoRA on real tch layers: merge/unmerge in place, exactness of unmerge, disable,
//! gradients only to the adapter through an optimizer built from the VarStore, rsLoRA,
//! dropout in training mode only, undo with the same tensors, errors that change nothing.
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{BuildPatch, LinearLike, Lora, LoraConfig};
use tch_patch::registry::Registry;
use tch_patch::{named_tensors, unpatch, Patch, PatchError};

const CPU: Device = Device::Cpu;
const FLOAT: (Kind, Device) = (Kind::Float, CPU);

fn config(rank: i64) -> LoraConfig {
    LoraConfig {
        rank,
        ..Default::default()
    }
}

/// A LoRA adapter on `fc` (16 → 12) whose `B` is random, so the update is not zero.
fn trained_lora(vs: &nn::VarStore, config: &LoraConfig) -> Lora<nn::Linear> {
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 16, 12, Default::default());
    let lora = Lora::new(linear, &path, config).unwrap();
    let mut b = lora.lora_b().shallow_clone();
    tch::no_grad(|| b.copy_(&(Tensor::randn(b.size(), FLOAT) * 0.5)));
    lora
}

fn copy(tensor: &Tensor) -> Tensor {
    tensor.detach().copy()
}

#[test]
fn registers_a_and_b_under_the_base_path_with_peft_shapes_and_init() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "blocks" / 0 / "attn" / "q";
    let linear = nn::linear(&path, 64, 32, Default::default());
    let lora = Lora::new(linear, &path, &config(4)).unwrap();
    let variables = vs.variables();
    assert_eq!(variables["blocks.0.attn.q.lora_a"].size(), [4, 64]); // PEFT's lora_A: [r, in]
    assert_eq!(variables["blocks.0.attn.q.lora_b"].size(), [32, 4]); // PEFT's lora_B: [out, r]
    assert!(variables["blocks.0.attn.q.lora_a"].is_set_to(lora.lora_a()));
    // PEFT's init: A ~ U(±1/√in) (kaiming_uniform, a = √5), B = 0.
    let bound = 1.0 / 64f64.sqrt();
    assert!(lora.lora_a().abs().max().double_value(&[]) <= bound);
    assert!(lora.lora_a().abs().max().double_value(&[]) > bound / 2.0);
    assert_eq!(lora.lora_b().abs().sum(Kind::Float).double_value(&[]), 0.0);
    let names: Vec<String> = named_tensors(&lora).into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["weight", "bias", "lora_a", "lora_b"]);
    assert_eq!(<Lora<nn::Linear> as Patch>::NAME, "lora");
}

#[test]
fn a_fresh_adapter_is_the_base_bit_for_bit() {
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root() / "fc", 16, 12, Default::default());
    let lora = Lora::new(linear, &(vs.root() / "fc"), &config(8)).unwrap();
    let xs = Tensor::randn([5, 16], FLOAT);
    assert!(lora.forward_t(&xs, false).equal(&lora.base().forward(&xs)));
}

#[test]
fn merged_output_equals_unmerged_output_and_merging_is_in_place() {
    let vs = nn::VarStore::new(CPU);
    let mut lora = trained_lora(&vs, &config(4));
    let xs = Tensor::randn([7, 16], FLOAT);
    let unmerged = lora.forward_t(&xs, false);
    assert!(!unmerged.allclose(&lora.base().forward(&xs), 1e-3, 1e-3, false));
    let weight_ptr = lora.ws.data_ptr();
    let weight_before = copy(&lora.ws);

    lora.merge().unwrap();
    assert!(lora.is_merged());
    assert_eq!(lora.ws.data_ptr(), weight_ptr, "merged in place");
    assert!(vs.variables()["fc.weight"].is_set_to(&lora.ws));
    assert!(
        !lora.ws.equal(&weight_before),
        "the weight holds the update"
    );
    let merged = lora.forward_t(&xs, false);
    assert!(merged.allclose(&unmerged, 1e-5, 1e-5, false));
    // The base alone now gives the adapted output: the update is not counted twice.
    assert!(lora
        .base()
        .forward(&xs)
        .allclose(&unmerged, 1e-5, 1e-5, false));
    // Merging again changes nothing.
    lora.merge().unwrap();
    assert!(lora.forward_t(&xs, false).equal(&merged));

    lora.unmerge().unwrap();
    assert!(!lora.is_merged());
    assert_eq!(lora.ws.data_ptr(), weight_ptr);
    assert!(lora
        .forward_t(&xs, false)
        .allclose(&unmerged, 1e-5, 1e-5, false));
    lora.unmerge().unwrap(); // no-op
}

#[test]
fn unmerge_is_exact_when_the_arithmetic_is() {
    // A zero update (a fresh adapter): bit for bit.
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root() / "fc", 16, 12, Default::default());
    let mut lora = Lora::new(linear, &(vs.root() / "fc"), &config(4)).unwrap();
    let before = copy(&lora.ws);
    lora.merge().unwrap();
    lora.unmerge().unwrap();
    assert!(lora.ws.equal(&before));

    // Values that add without rounding (small integers, scale 1): bit for bit.
    let vs = nn::VarStore::new(CPU);
    let cfg = LoraConfig {
        rank: 2,
        alpha: 2.0,
        ..Default::default()
    };
    let mut lora = trained_lora(&vs, &cfg);
    tch::no_grad(|| {
        lora.ws
            .shallow_clone()
            .copy_(&Tensor::randint_low(-50, 50, [12, 16], FLOAT));
        lora.lora_a()
            .shallow_clone()
            .copy_(&Tensor::randint_low(-4, 4, [2, 16], FLOAT));
        lora.lora_b()
            .shallow_clone()
            .copy_(&Tensor::randint_low(-4, 4, [12, 2], FLOAT));
    });
    let before = copy(&lora.ws);
    lora.merge().unwrap();
    lora.unmerge().unwrap();
    assert!(lora.ws.equal(&before));
}

#[test]
fn unmerge_of_a_random_update_is_within_one_rounding_per_operation() {
    let vs = nn::VarStore::new(CPU);
    let mut lora = trained_lora(&vs, &config(8));
    let before = copy(&lora.ws);
    let delta = lora.delta_weight().unwrap();
    let one_rounding = (before.abs() + delta.abs()) * f64::from(f32::EPSILON);
    lora.merge().unwrap();
    lora.unmerge().unwrap();
    let error = (&lora.ws - &before).abs();
    assert!(bool::try_from(error.le_tensor(&one_rounding).all()).unwrap());
    for _ in 1..10 {
        lora.merge().unwrap();
        lora.unmerge().unwrap();
    }
    let error = (&lora.ws - &before).abs();
    // float32: each of `w + Δ` and `(w + Δ) − Δ` rounds once, by at most half an ulp of
    // its result, so one cycle errs by at most 2⁻²³ (|w| + |Δ|); ten cycles by ten times.
    let bound = (before.abs() + delta.abs()) * (10.0 * f64::from(f32::EPSILON));
    assert!(bool::try_from(error.le_tensor(&bound).all()).unwrap());
    let max_error = error.max().double_value(&[]);
    let scale = (before.abs() + delta.abs()) * f64::from(f32::EPSILON);
    let max_ulps = (error / scale.clamp_min(1e-30)).max().double_value(&[]);
    eprintln!(
        "10 merge/unmerge cycles: max |w' - w| = {max_error:e}, \
         at most {max_ulps:.2} x 2^-23 (|w| + |delta|)"
    );
    assert!(max_error < 1e-6, "{max_error}");
}

#[test]
fn disabled_adapter_gives_the_base_output_bit_for_bit() {
    let vs = nn::VarStore::new(CPU);
    let mut lora = trained_lora(&vs, &config(4));
    let xs = Tensor::randn([3, 16], FLOAT);
    let adapted = lora.forward_t(&xs, false);
    lora.set_enabled(false).unwrap();
    assert!(lora.forward_t(&xs, false).equal(&lora.base().forward(&xs)));
    // Merging a disabled adapter is an error that changes nothing.
    let before = copy(&lora.ws);
    assert!(matches!(lora.merge(), Err(PatchError::MergeState { .. })));
    assert!(lora.ws.equal(&before));
    lora.set_enabled(true).unwrap();
    assert!(lora.forward_t(&xs, false).equal(&adapted));

    // Disabling a merged adapter unmerges it first.
    lora.merge().unwrap();
    lora.set_enabled(false).unwrap();
    assert!(!lora.is_merged());
    assert!(lora.forward_t(&xs, false).equal(&lora.base().forward(&xs)));
    assert!(lora.ws.allclose(&before, 1e-6, 1e-6, false));
}

/// Two linear layers, each with LoRA: the gradient reaches the first adapter through the
/// second, frozen, base.
#[test]
fn only_the_adapters_train_with_an_optimizer_built_from_the_var_store() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(CPU);
    let root = vs.root();
    let fc1 = nn::linear(&root / "fc1", 8, 16, Default::default());
    let fc2 = nn::linear(&root / "fc2", 16, 4, Default::default());
    let fc1 = Lora::new(fc1, &(&root / "fc1"), &config(2)).unwrap();
    let fc2 = Lora::new(fc2, &(&root / "fc2"), &config(2)).unwrap();
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let base_names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
    let frozen: Vec<(String, Tensor, Tensor)> = base_names
        .iter()
        .map(|name| {
            let tensor = vs.variables()[*name].shallow_clone();
            (name.to_string(), copy(&tensor), tensor)
        })
        .collect();
    let xs = Tensor::randn([32, 8], FLOAT);
    let ys = Tensor::randn([32, 4], FLOAT);
    let adapters_before: Vec<Tensor> = [fc1.lora_a(), fc1.lora_b(), fc2.lora_a(), fc2.lora_b()]
        .into_iter()
        .map(copy)
        .collect();
    for step in 0..5 {
        let out = fc2.forward_t(&fc1.forward_t(&xs, true).relu(), true);
        let loss = out.mse_loss(&ys, tch::Reduction::Mean);
        opt.zero_grad();
        loss.backward();
        for (name, _, tensor) in &frozen {
            assert!(
                !tensor.grad().defined(),
                "{name} got a gradient at step {step}"
            );
        }
        for adapter in [fc1.lora_a(), fc1.lora_b(), fc2.lora_a(), fc2.lora_b()] {
            assert!(adapter.grad().defined());
        }
        opt.step();
    }
    for (name, was, tensor) in &frozen {
        assert!(tensor.equal(was), "{name} changed");
    }
    for (now, was) in [fc1.lora_a(), fc1.lora_b(), fc2.lora_a(), fc2.lora_b()]
        .into_iter()
        .zip(&adapters_before)
    {
        assert!(!now.equal(was), "every adapter matrix trained");
    }
    // The base tensors are untouched: still trainable variables of the VarStore.
    assert!(vs.variables()["fc1.weight"].requires_grad());
}

#[test]
fn rslora_scales_by_alpha_over_sqrt_rank() {
    let plain = LoraConfig {
        rank: 16,
        alpha: 8.0,
        ..Default::default()
    };
    let rs = LoraConfig {
        use_rslora: true,
        ..plain.clone()
    };
    assert_eq!(plain.scaling(), 0.5);
    assert_eq!(rs.scaling(), 2.0);
    let vs = nn::VarStore::new(CPU);
    let lora = trained_lora(&vs, &rs);
    assert_eq!(lora.scaling(), 2.0);
    let xs = Tensor::randn([4, 16], FLOAT);
    let update = lora.forward_t(&xs, false) - lora.base().forward(&xs);
    let expected = xs.matmul(&lora.lora_a().tr()).matmul(&lora.lora_b().tr()) * 2.0;
    assert!(update.allclose(&expected, 1e-5, 1e-5, false));
    let delta = lora.delta_weight().unwrap();
    assert!(delta.allclose(
        &(lora.lora_b().matmul(lora.lora_a()) * 2.0),
        1e-6,
        1e-6,
        false
    ));
}

#[test]
fn dropout_applies_to_the_update_in_training_mode_only() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(CPU);
    let cfg = LoraConfig {
        rank: 4,
        dropout: 0.5,
        ..Default::default()
    };
    let mut lora = trained_lora(&vs, &cfg);
    let xs = Tensor::randn([64, 16], FLOAT);
    let expected_eval = lora.base().forward(&xs)
        + xs.matmul(&lora.lora_a().tr()).matmul(&lora.lora_b().tr()) * lora.scaling();
    let eval = lora.forward_t(&xs, false);
    assert!(eval.allclose(&expected_eval, 1e-5, 1e-5, false));
    assert!(
        lora.forward_t(&xs, false).equal(&eval),
        "eval mode is deterministic"
    );

    let train = lora.forward_t(&xs, true);
    assert!(!train.allclose(&eval, 1e-3, 1e-3, false));
    // The dropout is on the update's input only: a zero update makes training mode the base.
    lora.set_enabled(false).unwrap();
    assert!(lora.forward_t(&xs, true).equal(&lora.base().forward(&xs)));
    lora.set_enabled(true).unwrap();
    assert!(lora.forward_t(&xs, false).equal(&eval));
}

#[test]
fn into_base_and_unpatch_give_back_the_same_tensors() {
    let vs = nn::VarStore::new(CPU);
    let lora = trained_lora(&vs, &config(4));
    let pointers: Vec<usize> = named_tensors(lora.base())
        .iter()
        .map(|t| t.tensor.data_ptr() as usize)
        .collect();
    let linear = lora.into_base();
    let after: Vec<usize> = named_tensors(&linear)
        .iter()
        .map(|t| t.tensor.data_ptr() as usize)
        .collect();
    assert_eq!(pointers, after);

    let vs = nn::VarStore::new(CPU);
    let mut lora = trained_lora(&vs, &config(4));
    let before = copy(&lora.ws);
    lora.merge().unwrap();
    let ptr = lora.ws.data_ptr();
    let linear = lora.unload().unwrap(); // unmerges first
    assert_eq!(linear.ws.data_ptr(), ptr);
    assert!(linear.ws.allclose(&before, 1e-6, 1e-6, false));

    let vs = nn::VarStore::new(CPU);
    let lora = trained_lora(&vs, &config(4));
    assert_eq!(vs.variables().len(), 4);
    let linear = unpatch(lora, &vs);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["fc.bias", "fc.weight"]);
    assert!(vs.variables()["fc.weight"].is_set_to(&linear.ws));

    let vs = nn::VarStore::new(CPU);
    let lora = trained_lora(&vs, &config(4));
    let xs = Tensor::randn([2, 16], FLOAT);
    let adapted = lora.forward_t(&xs, false);
    let merged = lora.merge_and_unload().unwrap();
    assert!(merged.forward(&xs).allclose(&adapted, 1e-5, 1e-5, false));
}

#[test]
fn bad_input_is_an_error_that_changes_nothing() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 4, 4, Default::default());
    let ptr = linear.ws.data_ptr();
    let error = Lora::build(linear, &path, &config(0)).unwrap_err();
    assert_eq!(
        error.error.to_string(),
        "argument \"rank\" of patch \"lora\" is 0, but must be in 1..=4096"
    );
    assert_eq!(error.base.ws.data_ptr(), ptr, "the base comes back");
    assert_eq!(vs.variables().len(), 2);

    // The names are taken by a first adapter: the second fails and registers nothing.
    let first = Lora::new(error.base, &path, &config(2)).unwrap();
    let other = nn::linear(vs.root() / "other", 4, 4, Default::default());
    let failed = Lora::build(other, &path, &config(2)).unwrap_err();
    assert!(matches!(failed.error, PatchError::NameTaken { ref name } if name == "fc.lora_a"));
    assert_eq!(vs.variables().len(), 6);
    drop(first);

    let not_2d = nn::Linear {
        ws: Tensor::ones([4], FLOAT),
        bs: None,
    };
    let error = Lora::new(not_2d, &(vs.root() / "x"), &config(2)).unwrap_err();
    assert!(matches!(error, PatchError::ShapeMismatch { .. }), "{error}");
    let integer = nn::Linear {
        ws: Tensor::ones([4, 4], (Kind::Int64, CPU)),
        bs: None,
    };
    let error = Lora::new(integer, &(vs.root() / "y"), &config(2)).unwrap_err();
    assert!(matches!(error, PatchError::KindMismatch { .. }), "{error}");
    assert_eq!(vs.variables().len(), 6);
}

#[test]
fn built_from_a_patch_string_over_any_linear_like_module() {
    let spec = Registry::global()
        .unwrap()
        .parse_one(r#"lora(rank=3, alpha=6, use_rslora=false, targets="q")"#)
        .unwrap();
    let vs = nn::VarStore::new(CPU);
    let boxed: Box<dyn LinearLike> =
        Box::new(nn::linear(vs.root() / "q", 6, 5, Default::default()));
    let lora = Lora::build_from_spec(boxed, &(vs.root() / "q"), &spec).unwrap();
    assert_eq!((lora.config().rank, lora.scaling()), (3, 2.0));
    assert_eq!((lora.in_features(), lora.out_features()), (6, 5));
    // A LoRA of a LoRA: the outer one trains, the inner one is frozen with the base.
    let mut outer = Lora::new(lora, &(vs.root() / "q" / "outer"), &LoraConfig::default()).unwrap();
    let xs = Tensor::randn([2, 6], FLOAT);
    assert!(outer
        .forward_t(&xs, false)
        .equal(&outer.base().forward_t(&xs, false)));
    outer.merge().unwrap();
    outer.unmerge().unwrap();
}

/// A linear layer stored `[in, out]`, as transformers' `Conv1D`.
#[derive(Debug)]
struct Transposed {
    weight: Tensor,
}

impl Module for Transposed {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.matmul(&self.weight)
    }
}

impl LinearLike for Transposed {
    fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn fan_in_fan_out(&self) -> bool {
        true
    }

    fn forward_detached(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.matmul(&self.weight.detach())
    }
}

#[test]
fn a_fan_in_fan_out_base_gets_peft_shapes_and_merges_transposed() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "c_attn";
    let base = Transposed {
        weight: path.randn("weight", &[16, 12], 0.0, 0.1),
    };
    assert_eq!((base.in_features(), base.out_features()), (16, 12));
    let mut lora = Lora::new(base, &path, &config(4)).unwrap();
    assert_eq!(lora.lora_a().size(), [4, 16]);
    assert_eq!(lora.lora_b().size(), [12, 4]);
    let mut b = lora.lora_b().shallow_clone();
    tch::no_grad(|| b.copy_(&Tensor::randn([12, 4], FLOAT)));
    assert_eq!(lora.delta_weight().unwrap().size(), [16, 12]);
    let xs = Tensor::randn([5, 16], FLOAT);
    let unmerged = lora.forward_t(&xs, false);
    let before = copy(&lora.base().weight);
    lora.merge().unwrap();
    let merged = lora.forward_t(&xs, false);
    assert!(merged.allclose(&unmerged, 1e-5, 1e-5, false));
    let expected = &before + lora.lora_b().matmul(lora.lora_a()).tr() * lora.scaling();
    assert!(lora.base().weight.allclose(&expected, 1e-6, 1e-6, false));
}

#[test]
fn a_fan_in_fan_out_base_gets_the_same_dora_transposed() {
    use tch_patch::patches::{Dora, DoraConfig};
    let vs = nn::VarStore::new(CPU);
    let config = DoraConfig {
        rank: 3,
        alpha: 6.0,
        ..Default::default()
    };
    let path = vs.root() / "fc";
    let linear = Dora::new(nn::linear(&path, 6, 8, Default::default()), &path, &config).unwrap();
    let weight = copy(&linear.base().ws).tr().contiguous();
    let mut conv = Dora::new(Transposed { weight }, &(vs.root() / "conv"), &config).unwrap();
    assert_eq!(conv.delta_weight().unwrap().size(), [6, 8]);
    tch::no_grad(|| {
        linear
            .lora_b()
            .shallow_clone()
            .copy_(&Tensor::randn([8, 3], FLOAT));
        linear
            .magnitude()
            .shallow_clone()
            .copy_(&(Tensor::rand([8], FLOAT) + 0.5));
        for (mine, theirs) in [
            (conv.lora_a(), linear.lora_a()),
            (conv.lora_b(), linear.lora_b()),
            (conv.magnitude(), linear.magnitude()),
        ] {
            mine.shallow_clone().copy_(theirs);
        }
    });
    let xs = Tensor::randn([5, 6], FLOAT);
    let expected = linear.forward_t(&xs, false) - linear.base().bs.as_ref().unwrap();
    assert!(conv
        .forward_t(&xs, false)
        .allclose(&expected, 1e-5, 1e-5, false));
    let before = copy(&conv.base().weight);
    conv.merge().unwrap();
    assert!(conv
        .forward_t(&xs, false)
        .allclose(&expected, 1e-5, 1e-5, false));
    conv.unmerge().unwrap();
    assert!(conv.base().weight.allclose(&before, 1e-6, 1e-6, false));
}
