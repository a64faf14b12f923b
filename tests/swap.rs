//! `replace_tensor(s)`: new value, shape or dtype, same tensor object, so the VarStore and
//! an optimizer built from it go on training it.
mod common;

use common::{assert_unchanged, snapshot, Mlp, TiedLm};
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::{
    params::unregistered_tensors, params::TensorProblem, swap::replace_tensor,
    swap::replace_tensors, PatchError,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn sizes(vs: &nn::VarStore) -> std::collections::BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect()
}

fn loss(linear: &nn::Linear, xs: &Tensor) -> Tensor {
    linear.forward(xs).square().mean(Kind::Float)
}

#[test]
fn sgd_trains_a_weight_replaced_by_one_of_another_shape() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();

    let wider = Tensor::randn([2, 5], CPU);
    replace_tensor(&mut linear, "weight", &wider).unwrap();
    assert!(unregistered_tensors(&vs, &linear).is_empty());
    assert_eq!(vs.variables()["weight"].size(), [2, 5]);
    assert!(linear.ws.requires_grad() && linear.ws.is_leaf());

    let kept = wider.copy();
    let xs = Tensor::randn([4, 5], CPU);
    opt.backward_step(&loss(&linear, &xs));
    assert!(
        !linear.ws.equal(&kept),
        "the optimizer did not update the replaced weight"
    );
    // No copy was made: the weight shares `wider`'s storage, as `set_data` does.
    assert!(linear.ws.equal(&wider));
}

#[test]
fn adam_keeps_training_a_weight_given_new_values() {
    tch::manual_seed(8);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let xs = Tensor::randn([8, 3], CPU);
    for _ in 0..3 {
        opt.backward_step(&loss(&linear, &xs));
    }
    let ptr_of_var = || vs.variables()["weight"].data_ptr();

    let fresh = Tensor::randn([2, 3], CPU);
    let kept = fresh.copy();
    replace_tensor(&mut linear, "weight", &fresh).unwrap();
    assert_eq!(ptr_of_var(), fresh.data_ptr());
    assert!(linear.ws.equal(&kept));
    opt.backward_step(&loss(&linear, &xs));
    let change = (&linear.ws - &kept).abs().max().double_value(&[]);
    assert!(
        change > 1e-4,
        "Adam did not update the replaced weight ({change})"
    );

    // The bug this avoids: assigning a new tensor to the field leaves the optimizer with the
    // old one, and the new one is never trained.
    let outside = Tensor::randn([2, 3], CPU).set_requires_grad(true);
    linear.ws = outside.shallow_clone();
    assert_eq!(unregistered_tensors(&vs, &linear), ["weight"]);
    let before = outside.detach().copy();
    opt.backward_step(&loss(&linear, &xs));
    assert!(outside.equal(&before));
}

#[test]
fn a_dtype_change_keeps_the_variables_and_trains_them() {
    tch::manual_seed(9);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let (w, b) = (
        linear.ws.to_kind(Kind::Double),
        linear.bs.as_ref().unwrap().to_kind(Kind::Double),
    );
    replace_tensors(&mut linear, [("weight", &w), ("bias", &b)]).unwrap();
    assert_eq!(vs.variables()["weight"].kind(), Kind::Double);
    assert_eq!(vs.variables()["bias"].kind(), Kind::Double);

    let xs = Tensor::randn([4, 3], (Kind::Double, Device::Cpu));
    let before = linear.ws.detach().copy();
    opt.backward_step(&loss(&linear, &xs));
    assert!(!linear.ws.equal(&before));
}

#[test]
fn a_gradient_of_the_old_shape_is_reset_to_the_new_one() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    loss(&linear, &Tensor::randn([4, 3], CPU)).backward();
    assert_eq!(linear.ws.grad().size(), [2, 3]);

    replace_tensor(&mut linear, "weight", &Tensor::randn([2, 5], CPU)).unwrap();
    assert!(linear.ws.grad().equal(&Tensor::zeros([2, 5], CPU)));
    loss(&linear, &Tensor::randn([4, 5], CPU)).backward(); // accumulates without error
    assert_eq!(linear.ws.grad().size(), [2, 5]);
}

#[test]
fn every_problem_is_reported_and_nothing_changes() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before = snapshot(&mlp);
    let shapes_before = sizes(&vs);
    let good = Tensor::randn([4, 7], CPU);
    let ints = Tensor::zeros([4], (Kind::Int64, Device::Cpu));

    let err = replace_tensors(
        &mut mlp,
        [
            ("fc1.weight", &good),
            ("fc1.bias", &ints),
            ("fc3.bias", &good),
            ("fc1.weight", &good),
        ],
    )
    .unwrap_err();
    let PatchError::InvalidTensors { problems, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert!(
        matches!(&problems[0], TensorProblem::NotDifferentiable { name, kind: Kind::Int64 } if name == "fc1.bias")
    );
    assert!(matches!(&problems[1], TensorProblem::Unexpected { name } if name == "fc3.bias"));
    assert!(matches!(&problems[2], TensorProblem::Duplicate { name } if name == "fc1.weight"));
    assert_eq!(problems.len(), 3);

    assert_unchanged(&mlp, &before); // `fc1.weight`, valid, was not replaced either
    let shapes_after = sizes(&vs);
    assert_eq!(shapes_before, shapes_after);
}

#[test]
fn tied_tensors_take_one_value() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lm = TiedLm::new(&vs.root(), 6, 3);
    let table = Tensor::randn([8, 3], CPU);
    replace_tensor(&mut lm, "head.weight", &table).unwrap();
    assert_eq!(lm.emb.ws.size(), [8, 3]); // the other name sees it: one tensor
    assert!(lm.emb.ws.is_set_to(&lm.head.ws));
    assert!(vs.variables()["emb.weight"].equal(&table));

    let other = Tensor::randn([8, 3], CPU);
    let err =
        replace_tensors(&mut lm, [("emb.weight", &other), ("head.weight", &table)]).unwrap_err();
    assert!(err
        .to_string()
        .contains("`head.weight` and `emb.weight` are one tied tensor"));
    assert!(lm.emb.ws.equal(&table));
}
