//! `functional_call`: outputs, gradients, strictness, tied tensors, panics.
mod common;

use common::{assert_unchanged, snapshot, Mlp, TiedLm};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::{
    functional::functional_call, functional::Strictness, named_tensors, params::TensorProblem,
    PatchError,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Random tensors shaped like every tensor of `module`, requiring grad.
fn replacements<M: tch_patch::Parameters>(module: &M) -> HashMap<String, Tensor> {
    named_tensors(module)
        .into_iter()
        .map(|t| {
            let value = Tensor::randn(t.tensor.size(), CPU).set_requires_grad(true);
            (t.name, value)
        })
        .collect()
}

fn problems(err: PatchError) -> Vec<TensorProblem> {
    match err {
        PatchError::InvalidTensors { problems, .. } => problems,
        other => panic!("expected InvalidTensors, got {other}"),
    }
}

#[test]
fn output_equals_the_module_with_the_same_tensors_written_in() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 4, 8, 3);
    let xs = Tensor::randn([5, 4], CPU);
    let new = replacements(&mlp);
    let before = snapshot(&mlp);
    let ptrs: Vec<_> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr())
        .collect();

    let called = functional_call(&mut mlp, &new, Strictness::Strict, |m| m.forward(&xs)).unwrap();

    // The module is back as it was: same tensors, same values.
    assert_unchanged(&mlp, &before);
    let ptrs_after: Vec<_> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr())
        .collect();
    assert_eq!(ptrs, ptrs_after);
    assert!(!called.equal(&mlp.forward(&xs)));

    // Write the same values into the module itself: the output is the same, bit for bit.
    tch::no_grad(|| {
        for named in named_tensors(&mlp) {
            named.tensor.shallow_clone().copy_(&new[&named.name]);
        }
    });
    assert!(called.equal(&mlp.forward(&xs)));
}

#[test]
fn gradients_reach_the_replacements_and_not_the_module_leaves() {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 4, 8, 3);
    let xs = Tensor::randn([5, 4], CPU);
    let new = replacements(&mlp);

    let ys = functional_call(&mut mlp, &new, Strictness::Strict, |m| m.forward(&xs)).unwrap();
    ys.square().sum(Kind::Float).backward();

    for (name, value) in &new {
        assert!(
            value.grad().defined(),
            "no gradient on the replacement `{name}`"
        );
    }
    for (name, leaf) in vs.variables() {
        assert!(
            !leaf.grad().defined(),
            "the module's own `{name}` got a gradient"
        );
    }
}

#[test]
fn a_partial_call_trains_the_replacements_and_the_tensors_left_in_place() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 4, 8, 3);
    let xs = Tensor::randn([5, 4], CPU);
    let w1 = Tensor::randn([8, 4], CPU).set_requires_grad(true);

    let ys = functional_call(&mut mlp, [("fc1.weight", &w1)], Strictness::Partial, |m| {
        m.forward(&xs)
    })
    .unwrap();
    ys.sum(Kind::Float).backward();

    assert!(w1.grad().defined());
    let vars = vs.variables();
    assert!(!vars["fc1.weight"].grad().defined());
    for name in ["fc1.bias", "fc2.weight", "fc2.bias"] {
        assert!(
            vars[name].grad().defined(),
            "`{name}` was used and should train"
        );
    }
}

#[test]
fn strict_mode_reports_every_problem_and_changes_nothing() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 4, 8, 3);
    let before = snapshot(&mlp);
    let w1 = Tensor::zeros([8, 4], CPU);
    let wrong = Tensor::zeros([3, 8], (Kind::Double, Device::Cpu));
    let mut ran = false;

    let err = functional_call(
        &mut mlp,
        [
            ("fc1.weight", &w1),
            ("fc2.weight", &wrong),
            ("fc3.weight", &w1),
        ],
        Strictness::Strict,
        |_| ran = true,
    )
    .unwrap_err();

    assert!(!ran);
    let message = err.to_string();
    let problems = problems(err);
    assert!(matches!(&problems[0], TensorProblem::Kind { name, .. } if name == "fc2.weight"));
    assert!(matches!(&problems[1], TensorProblem::Unexpected { name } if name == "fc3.weight"));
    let missing: Vec<_> = problems[2..]
        .iter()
        .map(|p| match p {
            TensorProblem::Missing { name } => name.as_str(),
            other => panic!("unexpected problem {other}"),
        })
        .collect();
    assert_eq!(missing, ["fc1.bias", "fc2.bias"]);
    for name in ["fc2.weight", "fc3.weight", "fc1.bias", "fc2.bias"] {
        assert!(message.contains(name), "{message}");
    }
    assert_unchanged(&mlp, &before);

    // The same overrides without the missing ones pass in partial mode only once the
    // unknown name and the wrong dtype are gone.
    let partial = functional_call(&mut mlp, [("fc1.weight", &w1)], Strictness::Partial, |_| 1);
    assert_eq!(partial.unwrap(), 1);
}

#[test]
fn one_name_of_a_tied_tensor_replaces_all_of_its_names() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lm = TiedLm::new(&vs.root(), 10, 4);
    let table = Tensor::randn([10, 4], CPU).set_requires_grad(true);
    let ids = Tensor::from_slice(&[1i64, 2, 3]);

    // Strict: `head.weight` is covered by its tie to `emb.weight`.
    let (tied, ys) = functional_call(&mut lm, [("emb.weight", &table)], Strictness::Strict, |m| {
        (m.head.ws.is_set_to(&table), m.forward(&ids))
    })
    .unwrap();
    assert!(tied);
    let expected = table.index_select(0, &ids).matmul(&table.tr());
    assert!(ys.allclose(&expected, 1e-6, 1e-6, false));
    assert!(lm.head.ws.is_set_to(&lm.emb.ws)); // restored, still tied

    // Both names, the same tensor: fine. Different tensors: a conflict naming both.
    let ok = functional_call(
        &mut lm,
        [("emb.weight", &table), ("head.weight", &table)],
        Strictness::Strict,
        |_| (),
    );
    assert!(ok.is_ok());
    let other = Tensor::randn([10, 4], CPU);
    let err = functional_call(
        &mut lm,
        [("emb.weight", &table), ("head.weight", &other)],
        Strictness::Strict,
        |_| (),
    )
    .unwrap_err();
    let problems = problems(err);
    assert!(matches!(
        &problems[..],
        [TensorProblem::TiedConflict { name, tied_to }] if name == "head.weight" && tied_to == "emb.weight"
    ));
}

#[test]
fn a_panic_in_the_call_restores_the_module() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let own = linear.ws.shallow_clone();
    let w = Tensor::zeros([2, 3], CPU);
    let result = catch_unwind(AssertUnwindSafe(|| {
        functional_call(&mut linear, [("weight", &w)], Strictness::Partial, |m| {
            assert!(m.ws.is_set_to(&w));
            panic!("forward failed");
        })
    }));
    assert!(result.is_err());
    assert!(linear.ws.is_set_to(&own));
    assert!(!linear.ws.is_set_to(&w));
}

/// MAML: an inner gradient step taken in the graph, the adapted weights passed in by
/// `functional_call`, the outer loss trains the original weights through them.
#[test]
fn maml_inner_step_trains_the_original_weights_through_the_adapted_ones() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 1, Default::default());
    let (xs, ys) = (Tensor::randn([8, 3], CPU), Tensor::randn([8, 1], CPU));

    let inner_loss = (linear.forward(&xs) - &ys).square().mean(Kind::Float);
    let params = [
        linear.ws.shallow_clone(),
        linear.bs.as_ref().unwrap().shallow_clone(),
    ];
    let grads = Tensor::run_backward(&[&inner_loss], &params, true, true);
    let adapted: Vec<(&str, Tensor)> = vec![
        ("weight", &params[0] - &grads[0] * 0.1),
        ("bias", &params[1] - &grads[1] * 0.1),
    ];
    let outer =
        functional_call(&mut linear, adapted, Strictness::Strict, |m| m.forward(&xs)).unwrap();
    (outer - &ys).square().mean(Kind::Float).backward();

    assert!(linear.ws.grad().defined());
    assert!(linear.bs.as_ref().unwrap().grad().defined());
}
