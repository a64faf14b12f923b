//! `Mutable`: assignment and in-place ops with autograd, a hypernetwork trained through
//! another network's weights.
mod common;

use common::{Mlp, TiedLm};
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::{
    mutable::Mutable, params::unregistered_tensors, params::TensorProblem, PatchError,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Net 1 (an MLP) reads a task vector and writes the weight and bias of net 2 (a Linear
/// 3 -> 2); the loss of net 2 on each task trains net 1. Returns the mean loss over the
/// tasks before training, after 50 steps, and the VarStore of net 2.
fn train_hypernetwork() -> (f64, f64, nn::VarStore) {
    tch::manual_seed(0);
    let vs1 = nn::VarStore::new(Device::Cpu);
    let net1 = Mlp::new(&vs1.root(), 4, 32, 8);
    let vs2 = nn::VarStore::new(Device::Cpu);
    let mut net2 = Mutable::new(nn::linear(vs2.root(), 3, 2, Default::default())).unwrap();
    let mut opt = nn::Adam::default().build(&vs1, 1e-2).unwrap();

    // Each task is a linear map whose weights depend linearly on the task vector.
    let truth = Tensor::randn([8, 4], CPU);
    let tasks: Vec<Tensor> = (0..4).map(|_| Tensor::randn([4], CPU)).collect();
    let xs = Tensor::randn([16, 3], CPU);
    let target = |z: &Tensor| {
        let params = truth.mv(z);
        xs.matmul(&params.narrow(0, 0, 6).view([2, 3]).tr()) + params.narrow(0, 6, 2)
    };
    let loss_on = |z: &Tensor, net2: &mut Mutable<nn::Linear>| {
        let predicted = net1.forward(z);
        net2.set("weight", &predicted.narrow(0, 0, 6).view([2, 3]))
            .unwrap();
        net2.set("bias", &predicted.narrow(0, 6, 2)).unwrap();
        (net2.forward(&xs) - target(z)).square().mean(Kind::Float)
    };
    let mean_loss = |net2: &mut Mutable<nn::Linear>| {
        tch::no_grad(|| {
            let total: f64 = tasks
                .iter()
                .map(|z| loss_on(z, net2).double_value(&[]))
                .sum();
            total / tasks.len() as f64
        })
    };
    let before = mean_loss(&mut net2);
    for step in 0..50 {
        let loss = loss_on(&tasks[step % tasks.len()], &mut net2);
        opt.backward_step(&loss);
    }
    let after = mean_loss(&mut net2);
    (before, after, vs2)
}

#[test]
fn a_hypernetwork_learns_and_net2_leaves_get_no_gradient() {
    let (before, after, vs2) = train_hypernetwork();
    assert!(after < before * 0.5, "loss went from {before} to {after}");
    for (name, leaf) in vs2.variables() {
        assert!(
            !leaf.grad().defined(),
            "net 2's own `{name}` got a gradient"
        );
    }
}

#[test]
fn in_place_ops_are_recorded_and_reach_the_original_leaf() {
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut m = Mutable::new(nn::linear(vs.root(), 3, 2, Default::default())).unwrap();
    *m.get_mut("weight").unwrap() *= 2.0;
    *m.get_mut("weight").unwrap() += 1.0;
    m.ws *= 3.0; // through DerefMut, on the field itself
    let leaf = vs.variables()["weight"].shallow_clone();
    assert!(m
        .ws
        .allclose(&((&leaf * 2.0 + 1.0) * 3.0), 1e-6, 1e-6, false));

    let xs = Tensor::randn([4, 3], CPU);
    m.forward(&xs).sum(Kind::Float).backward();
    // d(sum(xs @ (6 W + 3)^T)) / dW = 6 * column sums of xs, for each output row.
    let expected = (xs.sum_dim_intlist([0].as_slice(), false, Kind::Float) * 6.0)
        .unsqueeze(0)
        .expand([2, 3], false);
    assert!(leaf.grad().allclose(&expected, 1e-5, 1e-5, false));
}

#[test]
fn code_asking_for_the_module_sees_the_assigned_tensors_as_forward_does() {
    // `Mutable` derefs to its module, and that view is not stale: its handles hold the
    // assigned and changed tensors, and forward is the module's forward on them.
    fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
        linear.forward(xs)
    }
    fn takes_module(module: &impl Module, xs: &Tensor) -> Tensor {
        module.forward(xs)
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let bias = linear.bs.as_ref().unwrap().copy();
    let xs = Tensor::randn([4, 3], CPU);
    let plain = linear.forward(&xs);
    let mut m = Mutable::new(linear).unwrap();
    let value = Tensor::randn([2, 3], CPU).set_requires_grad(true);
    m.set("weight", &value).unwrap();
    *m.get_mut("bias").unwrap() += 1.0;

    let by_hand = xs.linear(&value, Some(&(&bias + 1.0)));
    assert!(m.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
    assert!(takes_module(&m, &xs).allclose(&by_hand, 1e-6, 1e-6, false));
    assert!(takes_linear(&m, &xs).allclose(&by_hand, 1e-6, 1e-6, false));
    assert!(!takes_linear(&m, &xs).allclose(&plain, 1e-3, 1e-3, false));
    // Gradients reach the assigned value through the parent view too.
    takes_linear(&m, &xs).sum(Kind::Float).backward();
    assert!(value.grad().defined());
}

#[test]
fn set_checks_the_shape_and_changes_nothing_on_error() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut m = Mutable::new(nn::linear(vs.root(), 3, 2, Default::default())).unwrap();
    let before = m.get("weight").unwrap();
    let err = m
        .set("weight", &Tensor::zeros([3, 2], CPU))
        .expect_err("the shape is wrong");
    match err {
        PatchError::InvalidTensors { problems, .. } => assert!(matches!(
            &problems[..],
            [TensorProblem::Shape { name, actual, expected }]
                if name == "weight" && actual == &[3, 2] && expected == &[2, 3]
        )),
        other => panic!("unexpected error {other}"),
    }
    assert!(m.ws.is_set_to(&before));
    assert!(matches!(
        m.set("bias_", &Tensor::zeros([2], CPU)),
        Err(PatchError::UnknownTensor { .. })
    ));
}

#[test]
fn restore_gives_back_the_var_store_leaves_and_into_inner_the_current_tensors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut m = Mutable::new(Mlp::new(&vs.root(), 3, 4, 2)).unwrap();
    m.set("fc2.bias", &Tensor::ones([2], CPU)).unwrap();
    *m.get_mut("fc1.weight").unwrap() *= 0.0;
    let kept = Mutable::new(Mlp::new(&(vs.root() / "other"), 3, 4, 2)).unwrap();

    let restored = m.restore();
    assert!(unregistered_tensors(&vs, &restored).is_empty());
    assert!(restored.fc1.ws.is_leaf());
    assert!(!restored.fc1.ws.equal(&Tensor::zeros([4, 3], CPU)));

    let inner = kept.into_inner();
    assert_eq!(unregistered_tensors(&vs, &inner).len(), 4);
}

#[test]
fn tied_tensors_stay_tied() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut lm = Mutable::new(TiedLm::new(&vs.root(), 6, 3)).unwrap();
    assert!(lm.head.ws.is_set_to(&lm.emb.ws)); // one copy for both names
    let table = Tensor::randn([6, 3], CPU).set_requires_grad(true);
    lm.set("head.weight", &table).unwrap();
    assert!(lm.emb.ws.is_set_to(&lm.head.ws));
    assert!(lm.emb.ws.equal(&table));
    *lm.get_mut("emb.weight").unwrap() *= 2.0;
    assert!(lm.head.ws.equal(&(&table * 2.0)));
}
