//! Unit tests of [`Dora`](super::Dora).
use super::{BuildPatch, Dora, DoraConfig};
use crate::error::PatchError;
use crate::patch_trait::Patch;
use crate::varstore::unpatch;
use tch::{nn, nn::Module, Device, Kind, Tensor};

const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);

fn config() -> DoraConfig {
    DoraConfig {
        rank: 3,
        alpha: 6.0,
        ..Default::default()
    }
}

/// A fresh DoRA with `config` on an `[8, 6]` linear layer at `fc`.
fn fresh(vs: &nn::VarStore, config: &DoraConfig) -> Dora<nn::Linear> {
    let path = vs.root() / "fc";
    Dora::new(nn::linear(&path, 6, 8, Default::default()), &path, config).unwrap()
}

/// A DoRA of rank 3 on an `[8, 6]` linear layer at `fc`, with `B` and `m` made non-trivial.
fn patched(vs: &nn::VarStore) -> Dora<nn::Linear> {
    let dora = fresh(vs, &config());
    tch::no_grad(|| {
        dora.lora_b()
            .shallow_clone()
            .copy_(&Tensor::randn([8, 3], FLOAT));
        let m = dora.magnitude().shallow_clone();
        m.shallow_clone()
            .copy_(&(&m * (Tensor::rand([8], FLOAT) + 0.5)));
    });
    dora
}

/// DoRA's output by its definition: `x @ (m / ‖W + ΔW‖ ⊙ (W + ΔW))ᵀ + bias`.
fn by_definition(dora: &Dora<nn::Linear>, xs: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let adapted = &dora.base().ws + dora.lora_b().matmul(dora.lora_a()) * dora.scaling();
        let norm = adapted.norm_scalaropt_dim(2, [1i64], false);
        let weight = adapted * (dora.magnitude() / norm).unsqueeze(1);
        xs.linear(&weight, dora.base().bs.as_ref())
    })
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn starts_at_the_row_norms_of_the_weight_and_the_base_output() {
    let vs = nn::VarStore::new(Device::Cpu);
    let dora = fresh(&vs, &config());
    let norms = dora.base().ws.norm_scalaropt_dim(2, [1i64], false);
    assert!(dora.magnitude().equal(&norms));
    assert_eq!(dora.magnitude().size(), [8]);
    assert!(vs.variables()["fc.lora_magnitude"].requires_grad());
    let xs = Tensor::randn([4, 6], FLOAT);
    assert!(max_diff(&dora.forward_t(&xs, false), &dora.base().forward(&xs)) < 1e-6);
    let names: Vec<&str> = dora.added_tensors().iter().map(|(n, _, _)| *n).collect();
    assert_eq!(names, ["lora_a", "lora_b", "lora_magnitude"]);
}

#[test]
fn forward_is_the_renormalised_weight_with_the_bias_unscaled() {
    let vs = nn::VarStore::new(Device::Cpu);
    let dora = patched(&vs);
    let xs = Tensor::randn([5, 6], FLOAT);
    let expected = by_definition(&dora, &xs);
    assert!(max_diff(&dora.forward_t(&xs, false), &expected) < 1e-5);
    // No dropout: the train flag changes nothing.
    assert!(dora.forward_t(&xs, true).equal(&dora.forward_t(&xs, false)));
}

#[test]
fn gradients_reach_exactly_a_b_and_the_magnitude() {
    let vs = nn::VarStore::new(Device::Cpu);
    let dora = patched(&vs);
    let xs = Tensor::randn([5, 6], FLOAT).set_requires_grad(true);
    dora.forward_t(&xs, true).sum(Kind::Float).backward();
    for tensor in [dora.lora_a(), dora.lora_b(), dora.magnitude(), &xs] {
        assert!(tensor.grad().defined());
    }
    assert!(!dora.base().ws.grad().defined());
    assert!(!dora.base().bs.as_ref().unwrap().grad().defined());
    // The norm is detached: m's gradient is `Σ (x @ (W + ΔW)ᵀ) / ‖W + ΔW‖` per output.
    let adapted = &dora.base().ws + dora.lora_b().matmul(dora.lora_a()) * dora.scaling();
    let norm = adapted.norm_scalaropt_dim(2, [1i64], false);
    let expected = xs
        .detach()
        .linear::<&Tensor>(&adapted, None)
        .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
        / norm;
    assert!(max_diff(&dora.magnitude().grad(), &expected) < 1e-4);
}

#[test]
fn dropout_goes_to_the_update_and_the_rescaled_term_as_in_peft() {
    let vs = nn::VarStore::new(Device::Cpu);
    let config = DoraConfig {
        dropout: 1.0,
        ..config()
    };
    let dora = fresh(&vs, &config);
    let _ = tch::no_grad(|| dora.lora_b().shallow_clone().fill_(0.5));
    let xs = Tensor::randn([4, 6], FLOAT);
    // Dropout of 1 zeroes the input of both DoRA terms: the base's output is left.
    assert!(dora.forward_t(&xs, true).equal(&dora.base().forward(&xs)));
    assert!(!dora
        .forward_t(&xs, false)
        .allclose(&dora.base().forward(&xs), 1e-4, 1e-4, false));
}

#[test]
fn disabled_is_the_base_bit_for_bit_and_unpatch_gives_its_tensors_back() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut dora = patched(&vs);
    let xs = Tensor::randn([3, 6], FLOAT);
    let ptr = dora.base().ws.data_ptr();
    dora.set_enabled(false).unwrap();
    assert!(dora.forward_t(&xs, true).equal(&dora.base().forward(&xs)));
    assert!(dora
        .merge()
        .is_err_and(|e| matches!(e, PatchError::MergeState { .. })));
    let linear: nn::Linear = unpatch(dora, &vs);
    assert_eq!(linear.ws.data_ptr(), ptr);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["fc.bias", "fc.weight"]);
}

#[test]
fn merges_in_place_as_forward_computes_and_unmerges_within_the_bound() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut dora = patched(&vs);
    let xs = Tensor::randn([5, 6], FLOAT);
    let before = dora.base().ws.copy();
    let unmerged = dora.forward_t(&xs, false);
    let delta = dora.delta_weight().unwrap();
    let ptr = dora.base().ws.data_ptr();
    let expected_weight = by_definition_weight(&dora);
    dora.merge().unwrap();
    assert!(dora.is_merged());
    assert_eq!(dora.base().ws.data_ptr(), ptr);
    assert!(max_diff(&dora.forward_t(&xs, false), &unmerged) < 1e-5);
    let merged = dora.base().ws.copy();
    assert!(max_diff(&merged, &expected_weight) < 1e-6);
    // Training while merged does not change what unmerging undoes.
    let _ = tch::no_grad(|| dora.magnitude().shallow_clone().fill_(3.0));
    dora.unmerge().unwrap();
    let bound = (before.abs() + delta.abs()) * 2f64.powi(-21);
    let error = (&dora.base().ws - &before).abs();
    assert_eq!(error.le_tensor(&bound).all().int64_value(&[]), 1, "{error}");
}

/// `m / ‖W + ΔW‖ ⊙ (W + ΔW)`: the weight merging writes.
fn by_definition_weight(dora: &Dora<nn::Linear>) -> Tensor {
    tch::no_grad(|| {
        let adapted = &dora.base().ws + dora.delta_weight().unwrap();
        let norm = adapted.norm_scalaropt_dim(2, [1i64], false);
        &adapted * (dora.magnitude() / norm).unsqueeze(1)
    })
}

#[test]
fn a_zero_magnitude_is_not_merged_and_nothing_changes() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut dora = patched(&vs);
    let _ = tch::no_grad(|| dora.magnitude().shallow_clone().get(2).fill_(0.0));
    let before = dora.base().ws.copy();
    let error = dora.merge().unwrap_err();
    assert!(error.to_string().contains("zero or not finite"), "{error}");
    assert!(!dora.is_merged() && dora.base().ws.equal(&before));
}

#[test]
fn a_bad_config_or_a_taken_name_gives_the_base_back() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 6, 8, Default::default());
    let bad = DoraConfig {
        rank: 0,
        ..config()
    };
    let failed = Dora::build(linear, &path, &bad).unwrap_err();
    let _ = path.var("lora_magnitude", &[8], nn::Init::Const(1.0));
    let failed = Dora::build(failed.base, &path, &config()).unwrap_err();
    assert!(
        failed.error.to_string().contains("lora_magnitude"),
        "{}",
        failed.error
    );
    assert_eq!(vs.variables().len(), 3);
}

#[test]
fn on_a_stack_the_weight_is_rescaled_and_the_other_adapter_is_not() {
    use super::{LinearLike, Lora, LoraConfig};
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 6, 8, Default::default());
    let xs = Tensor::randn([5, 6], FLOAT);
    // nn::Linear's weight term is `output − bias`, the computed one within rounding.
    let output = linear.forward(&xs);
    let computed = xs.linear::<&Tensor>(&linear.ws, None);
    assert!(max_diff(&linear.weight_term(&xs, &output), &computed) < 1e-6);

    let lora_config = LoraConfig {
        rank: 2,
        ..Default::default()
    };
    let lora = Lora::new(linear, &path, &lora_config).unwrap();
    let _ = tch::no_grad(|| lora.lora_b().shallow_clone().fill_(0.2));
    let inner = tch::no_grad(|| lora.forward_t(&xs, false) - lora.base().forward(&xs));
    let dora = Dora::new(lora, &(vs.root() / "d"), &config()).unwrap();
    tch::no_grad(|| {
        dora.lora_b()
            .shallow_clone()
            .copy_(&Tensor::randn([8, 3], FLOAT));
        dora.magnitude()
            .shallow_clone()
            .copy_(&(Tensor::rand([8], FLOAT) + 0.5));
    });
    let expected = tch::no_grad(|| {
        let base = dora.base().base();
        let adapted = &base.ws + dora.delta_weight().unwrap();
        let norm = adapted.norm_scalaropt_dim(2, [1i64], false);
        let weight = adapted * (dora.magnitude() / norm).unsqueeze(1);
        xs.linear(&weight, base.bs.as_ref()) + inner
    });
    assert!(max_diff(&dora.forward_t(&xs, false), &expected) < 1e-5);
}
