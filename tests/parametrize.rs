//! Parametrizations on real tch layers with real autograd: composition order, the cached
//! scope, baking in place, restoring, gradients, and errors that change nothing.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::parametrize::ParametrizeError;
use tch_patch::{
    named_tensors, parametrize::parametrize, parametrize::FakeQuantInt8, parametrize::FnTransform,
    parametrize::MagnitudePrune, parametrize::Parametrized, parametrize::Removal,
    parametrize::Transform, parametrize::WeightNorm, params::unregistered_tensors,
    params::TensorRole, params::Visitor, params::VisitorMut, Parameters, PatchError,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn linear(vs: &nn::VarStore, name: &str, inputs: i64, outputs: i64) -> nn::Linear {
    nn::linear(vs.root() / name, inputs, outputs, Default::default())
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.detach().reshape([-1])).unwrap()
}

/// Magnitude pruning written with plain Rust: the `k` smallest |w| (earlier first on ties).
fn prune_by_hand(w: &[f32], sparsity: f64) -> Vec<f32> {
    let k = (sparsity * w.len() as f64).round() as usize;
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[a].abs().partial_cmp(&w[b].abs()).unwrap());
    let mut out = w.to_vec();
    for &i in &order[..k] {
        out[i] = 0.0;
    }
    out
}

/// Symmetric int8 fake quantization per row, written with plain Rust.
fn quantize_rows_by_hand(w: &[f32], cols: usize) -> Vec<f32> {
    w.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = (max / 127.0).max(f32::MIN_POSITIVE);
            row.iter()
                .map(move |x| (x / scale).round().clamp(-127.0, 127.0) * scale)
        })
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6)
}

/// A transform that counts its applications.
struct Counting {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    f: fn(&Tensor) -> Tensor,
}

impl Counting {
    fn new(name: &'static str, f: fn(&Tensor) -> Tensor) -> (Self, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counting = Counting {
            name,
            calls: calls.clone(),
            f,
        };
        (counting, calls)
    }
}

impl Transform for Counting {
    fn name(&self) -> &str {
        self.name
    }
    fn apply(&self, input: &Tensor) -> Result<Tensor, PatchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok((self.f)(input))
    }
}

#[test]
fn stacked_prune_then_quantize_equals_the_transforms_applied_by_hand() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 16, 6);
    let w = values(&lin.ws);
    let mut p = Parametrized::new(lin);
    p.push("weight", MagnitudePrune::new(0.5).unwrap()).unwrap();
    p.push("weight", FakeQuantInt8::per_channel(0)).unwrap();
    assert_eq!(
        p.parametrizations(),
        [(
            "weight",
            vec!["magnitude_prune", "fake_quant_int8_per_channel"]
        )]
    );

    let expected = quantize_rows_by_hand(&prune_by_hand(&w, 0.5), 16);
    assert!(close(&values(&p.transformed("weight").unwrap()), &expected));

    let xs = Tensor::randn([5, 16], CPU);
    let expected_w = Tensor::from_slice(&expected).reshape([6, 16]);
    let by_hand = xs.linear(&expected_w, p.original_module().bs.as_ref());
    assert!(p.forward(&xs).allclose(&by_hand, 1e-5, 1e-5, false));
}

#[test]
fn order_of_stacked_transforms_is_the_order_of_push_on_several_tensors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (w, b) = (lin.ws.copy(), lin.bs.as_ref().unwrap().copy());
    let mut p = Parametrized::new(lin);
    p.push("weight", FnTransform::new("add1", |w: &Tensor| w + 1))
        .unwrap();
    p.push("weight", FnTransform::new("double", |w: &Tensor| w * 2))
        .unwrap();
    p.push("bias", |b: &Tensor| b.neg()).unwrap();

    let xs = Tensor::randn([2, 4], CPU);
    let by_hand = xs.linear(&((&w + 1) * 2), Some(&b.neg()));
    assert!(p.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
    let other_order = xs.linear(&(&w * 2 + 1), Some(&b.neg()));
    assert!(!p.forward(&xs).allclose(&other_order, 1e-3, 1e-3, false));
}

#[test]
fn forward_leaves_the_originals_exactly_in_place() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (ptr, before) = (lin.ws.data_ptr(), lin.ws.copy());
    let p = parametrize(lin, "weight", |w: &Tensor| w.zeros_like()).unwrap();
    let xs = Tensor::randn([2, 4], CPU);
    let out = p.forward(&xs);
    assert!(out.equal(
        &p.original_module()
            .bs
            .as_ref()
            .unwrap()
            .expand([2, 3], false)
    ));
    assert_eq!(p.original_module().ws.data_ptr(), ptr);
    assert!(p.original_module().ws.equal(&before));
    assert!(p
        .original_module()
        .ws
        .is_set_to(&vs.variables()["fc.weight"]));
}

#[test]
fn cached_scope_computes_each_transform_once() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut p = Parametrized::new(linear(&vs, "fc", 4, 3));
    let (first, first_calls) = Counting::new("first", |w| w * 2);
    let (second, second_calls) = Counting::new("second", |w| w + 1);
    let (bias, bias_calls) = Counting::new("bias", |b| b.neg());
    p.push("weight", first).unwrap();
    p.push("weight", second).unwrap();
    p.push("bias", bias).unwrap();
    let counts = || [&first_calls, &second_calls, &bias_calls].map(|c| c.swap(0, Ordering::SeqCst));
    counts(); // the checks at push time

    let xs = Tensor::randn([2, 4], CPU);
    let uncached = p.forward(&xs);
    let _ = p.forward(&xs);
    assert_eq!(
        counts(),
        [2, 2, 2],
        "without a scope, every forward computes"
    );

    let cached = p.cached(|p| {
        assert!(p.is_cached());
        let outs: Vec<Tensor> = (0..4).map(|_| p.forward(&xs)).collect();
        let _ = p.transformed("weight").unwrap();
        let _ = p.cached(|p| p.forward(&xs)); // a nested scope shares the cache
        outs
    });
    assert_eq!(counts(), [1, 1, 1], "each transform once in the scope");
    assert!(!p.is_cached());
    assert!(cached.iter().all(|out| out.equal(&uncached)));

    let _ = p.forward(&xs);
    assert_eq!(counts(), [1, 1, 1], "the cache is gone after the scope");
}

#[test]
fn cached_scope_keeps_gradients_through_several_forwards() {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = parametrize(linear(&vs, "fc", 4, 3), "weight", |w: &Tensor| w * 3).unwrap();
    let xs = Tensor::randn([2, 4], CPU);
    let loss = p.cached(|p| (p.forward(&xs) + p.forward(&xs)).sum(Kind::Float));
    loss.backward();
    // d/dW sum(2 * x (3W)^T + 2b) = 6 * sum over the batch of x, for every row.
    let expected = (xs.sum_dim_intlist([0i64].as_slice(), false, Kind::Float) * 6.0)
        .unsqueeze(0)
        .expand([3, 4], false);
    assert!(p
        .original_module()
        .ws
        .grad()
        .allclose(&expected, 1e-5, 1e-5, false));
}

#[test]
fn bake_writes_the_transformed_values_into_the_same_tensor() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 8, 4);
    let ptr = lin.ws.data_ptr();
    let mut p = Parametrized::new(lin);
    p.push("weight", MagnitudePrune::new(0.5).unwrap()).unwrap();
    p.push("weight", FakeQuantInt8::per_tensor()).unwrap();
    let transformed = p.transformed("weight").unwrap().detach().copy();
    let xs = Tensor::randn([3, 8], CPU);
    let seen = p.forward(&xs);

    let lin = p.remove(Removal::Bake).unwrap();
    assert_eq!(
        lin.ws.data_ptr(),
        ptr,
        "same storage: the VarStore and optimizers see it"
    );
    assert!(lin.ws.equal(&transformed));
    assert!(vs.variables()["fc.weight"].equal(&transformed));
    assert!(lin.ws.requires_grad(), "still a trainable leaf");
    assert!(lin.forward(&xs).allclose(&seen, 1e-6, 1e-6, false));
    // Pruned entries are zero; quantization may round a few small kept ones to zero too.
    assert!(tch_patch::parametrize::sparsity_of(&lin.ws) >= 0.5);
}

#[test]
fn remove_keeping_the_original_gives_it_back_exactly() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (ptr, before) = (lin.ws.data_ptr(), lin.ws.copy());
    let xs = Tensor::randn([2, 4], CPU);
    let plain = lin.forward(&xs);
    let mut p = Parametrized::new(lin);
    p.push("weight", FakeQuantInt8::per_channel(1)).unwrap();
    p.push("weight", |w: &Tensor| w.tanh()).unwrap();
    p.forward(&xs).sum(Kind::Float).backward();

    let lin = p.remove(Removal::KeepOriginal).unwrap();
    assert_eq!(lin.ws.data_ptr(), ptr);
    assert!(lin.ws.equal(&before));
    assert!(lin.forward(&xs).equal(&plain));
}

#[test]
fn gradients_reach_the_original_through_the_transform() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let reference = lin.ws.detach().copy().set_requires_grad(true);
    let p = parametrize(lin, "weight", |w: &Tensor| w.sin() * 2).unwrap();
    let xs = Tensor::randn([5, 4], CPU);
    p.forward(&xs).square().sum(Kind::Float).backward();
    xs.linear(
        &(reference.sin() * 2),
        Some(&p.original_module().bs.as_ref().unwrap().detach()),
    )
    .square()
    .sum(Kind::Float)
    .backward();
    assert!(p
        .original_module()
        .ws
        .grad()
        .allclose(&reference.grad(), 1e-5, 1e-5, false));
    assert!(p.original_module().bs.as_ref().unwrap().grad().defined());
}

#[test]
fn pruned_entries_get_no_gradient_and_stay_zero_while_fine_tuning() {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = parametrize(
        linear(&vs, "fc", 6, 4),
        "weight",
        MagnitudePrune::new(0.5).unwrap(),
    )
    .unwrap();
    let mask = named_tensors(&p)
        .into_iter()
        .find(|t| t.name == "weight_mask")
        .unwrap();
    assert_eq!(mask.role, TensorRole::Buffer);
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let xs = Tensor::randn([8, 6], CPU);
    for _ in 0..3 {
        let loss = p.forward(&xs).square().mean(Kind::Float);
        opt.backward_step(&loss);
        let pruned = mask.tensor.ones_like() - &mask.tensor;
        assert_eq!(
            (p.original_module().ws.grad() * pruned)
                .abs()
                .max()
                .double_value(&[]),
            0.0
        );
    }
    assert_eq!(
        tch_patch::parametrize::sparsity_of(&p.transformed("weight").unwrap()),
        0.5
    );
}

#[test]
fn weight_norm_trains_g_and_v_through_the_var_store() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let lin = nn::linear(&path, 4, 3, Default::default());
    let mut p = Parametrized::new(lin);
    p.push_registered(&path, "weight", WeightNorm::new(0))
        .unwrap();
    let g = vs.variables()["fc.weight_g"].shallow_clone();
    assert_eq!(g.size(), [3, 1]);
    assert!(unregistered_tensors(&vs, &p).is_empty());
    let names: Vec<_> = named_tensors(&p).into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["weight", "bias", "weight_g"]);

    let (g_before, v_before) = (g.copy(), p.original_module().ws.copy());
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let xs = Tensor::randn([8, 4], CPU);
    opt.backward_step(&p.forward(&xs).square().mean(Kind::Float));
    assert!(g.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(
        p.original_module()
            .ws
            .grad()
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 0.0
    );
    assert!(!g.equal(&g_before), "the optimizer trained g");
    assert!(!p.original_module().ws.equal(&v_before), "and v");

    let expected = p.transformed("weight").unwrap().detach().copy();
    let lin = p.remove_from(&vs, Removal::Bake).unwrap();
    assert!(lin.ws.allclose(&expected, 1e-6, 1e-6, false));
    let mut left: Vec<_> = vs.variables().into_keys().collect();
    left.sort();
    assert_eq!(left, ["fc.bias", "fc.weight"]);
    assert_eq!(vs.trainable_variables().len(), 2);
}

#[test]
fn assign_goes_through_the_right_inverses_in_place() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 3, 2);
    let ptr = lin.ws.data_ptr();
    let mut p = Parametrized::new(lin);
    let scale = FnTransform::new("x3", |w: &Tensor| w * 3).with_right_inverse(|v: &Tensor| v / 3);
    let shift = FnTransform::new("+1", |w: &Tensor| w + 1).with_right_inverse(|v: &Tensor| v - 1);
    p.push("weight", scale).unwrap();
    p.push("weight", shift).unwrap();
    let value = Tensor::from_slice(&[4.0f32, 7.0, 1.0, -2.0, 10.0, 1.0]).reshape([2, 3]);
    p.assign("weight", &value).unwrap();
    assert_eq!(p.original_module().ws.data_ptr(), ptr);
    assert!(p
        .transformed("weight")
        .unwrap()
        .allclose(&value, 1e-6, 1e-6, false));

    let before = p.original_module().ws.copy();
    p.push("weight", |w: &Tensor| w.relu()).unwrap();
    let error = p.assign("weight", &value).unwrap_err();
    assert!(
        matches!(error, PatchError::Parametrize(ParametrizeError::NoRightInverse { ref transform }) if transform == "closure")
    );
    assert!(p.original_module().ws.equal(&before));
    let error = p.assign("bias", &value).unwrap_err();
    assert!(
        matches!(error, PatchError::Parametrize(ParametrizeError::NotParametrized { ref parametrized, .. }) if parametrized == &["weight"])
    );
}

#[test]
fn unknown_names_are_errors_that_list_the_names_and_change_nothing() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut p = Parametrized::new(linear(&vs, "fc", 4, 3));
    let error = p.push("weigth", |w: &Tensor| w * 2).unwrap_err();
    match &error {
        PatchError::UnknownTensor { name, known } => {
            assert_eq!(name, "weigth");
            assert_eq!(known, &["weight", "bias"]);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(error.to_string().contains("`weight`, `bias`"), "{error}");
    assert!(p.parametrizations().is_empty());
    let xs = Tensor::randn([2, 4], CPU);
    assert!(p.forward(&xs).equal(&p.original_module().forward(&xs)));
    assert!(matches!(
        p.transformed("weight"),
        Err(PatchError::Parametrize(
            ParametrizeError::NotParametrized { .. }
        ))
    ));
}

#[test]
fn bad_arguments_are_typed_errors_that_change_nothing() {
    assert!(matches!(
        MagnitudePrune::new(1.0),
        Err(ParametrizeError::SparsityOutOfRange { sparsity }) if sparsity == 1.0
    ));
    assert!(matches!(
        MagnitudePrune::new(-0.5),
        Err(ParametrizeError::SparsityOutOfRange { .. })
    ));

    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let lin = nn::linear(&path, 4, 3, Default::default());
    let before = lin.ws.copy();
    let mut p = Parametrized::new(lin);
    p.push("weight", |w: &Tensor| w * 2).unwrap();
    let xs = Tensor::randn([2, 4], CPU);
    let out = p.forward(&xs);
    let unchanged = |p: &Parametrized<nn::Linear>| {
        p.parametrizations() == [("weight", vec!["closure"])]
            && p.original_module().ws.equal(&before)
            && p.forward(&xs).equal(&out)
            && vs.variables().len() == 2
    };

    let error = p.push("weight", FakeQuantInt8::per_channel(2)).unwrap_err();
    assert!(
        matches!(error, PatchError::Parametrize(ParametrizeError::AxisOutOfRange { axis: 2, ndim: 2, ref name, .. }) if name == "weight")
    );
    assert!(unchanged(&p));
    let error = p.push("bias", FakeQuantInt8::per_channel(-2)).unwrap_err();
    assert!(matches!(
        error,
        PatchError::Parametrize(ParametrizeError::AxisOutOfRange {
            axis: -2,
            ndim: 1,
            ..
        })
    ));
    assert!(unchanged(&p));

    let error = p
        .push_registered(&path, "weight", WeightNorm::new(5))
        .unwrap_err();
    assert!(matches!(
        error,
        PatchError::Parametrize(ParametrizeError::AxisOutOfRange { .. })
    ));
    assert!(unchanged(&p));

    let error = p.push("weight", WeightNorm::new(0)).unwrap_err();
    assert!(
        matches!(error, PatchError::Parametrize(ParametrizeError::NeedsVarStore { ref tensor, .. }) if tensor == "weight_g")
    );
    assert!(unchanged(&p));

    let error = p
        .push("weight", |w: &Tensor| w.sum(Kind::Float))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PatchError::Parametrize(ParametrizeError::TransformChangedTensor { .. })
        ),
        "{error}"
    );
    assert!(unchanged(&p));

    let error = p
        .push("weight", |w: &Tensor| w.to_kind(Kind::Double))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PatchError::Parametrize(ParametrizeError::TransformChangedTensor { .. })
        ),
        "{error}"
    );
    assert!(unchanged(&p));

    // A name taken in the VarStore registers nothing.
    let _taken = path.zeros("weight_g", &[1]);
    let error = p
        .push_registered(&path, "weight", WeightNorm::new(0))
        .unwrap_err();
    assert!(matches!(error, PatchError::NameTaken { ref name } if name == "fc.weight_g"));
    assert!(
        p.parametrizations() == [("weight", vec!["closure"])]
            && p.original_module().ws.equal(&before)
    );
    assert_eq!(vs.variables().len(), 3);
}

#[test]
fn a_second_mask_on_the_same_tensor_is_a_name_clash() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut p = Parametrized::new(linear(&vs, "fc", 4, 3));
    p.push("weight", MagnitudePrune::new(0.25).unwrap())
        .unwrap();
    let error = p
        .push("weight", MagnitudePrune::new(0.5).unwrap())
        .unwrap_err();
    assert!(matches!(error, PatchError::NameTaken { ref name } if name == "weight_mask"));
    assert_eq!(p.parametrizations(), [("weight", vec!["magnitude_prune"])]);
}

/// A model with nested layers: its tensors have dotted names.
#[derive(Debug)]
struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Parameters for Mlp {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.child("fc1", &self.fc1);
        visitor.child("fc2", &self.fc2);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.child("fc1", &mut self.fc1);
        visitor.child("fc2", &mut self.fc2);
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(xs).relu())
    }
}

#[test]
fn a_whole_model_parametrized_by_dotted_names_loads_plain_checkpoints() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root() / "mlp";
    let mlp = Mlp {
        fc1: nn::linear(&root / "fc1", 4, 8, Default::default()),
        fc2: nn::linear(&root / "fc2", 8, 2, Default::default()),
    };
    let file = std::env::temp_dir().join(format!("tch-patch-param-{}.ot", std::process::id()));
    vs.save(&file).unwrap();

    let mut p = Parametrized::new(mlp);
    p.push("fc1.weight", FakeQuantInt8::per_channel(0)).unwrap();
    p.push_registered(&root, "fc2.weight", WeightNorm::new(0))
        .unwrap();
    assert!(vs.variables().contains_key("mlp.fc2.weight_g"));
    let names: Vec<_> = tch_patch::params::named_tensors_with_prefix(&p, "mlp")
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut registered: Vec<_> = vs.variables().into_keys().collect();
    registered.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, registered);

    let xs = Tensor::randn([3, 4], CPU);
    let fc1_q = p.transformed("fc1.weight").unwrap();
    let by_hand = xs
        .linear(&fc1_q, p.original_module().fc1.bs.as_ref())
        .relu()
        .linear(
            &p.transformed("fc2.weight").unwrap(),
            p.original_module().fc2.bs.as_ref(),
        );
    assert!(p.forward(&xs).allclose(&by_hand, 1e-5, 1e-5, false));

    // The plain model's checkpoint loads into the parametrized one's VarStore.
    let before = p.original_module().fc1.ws.copy();
    let _ = tch::no_grad(|| p.original_module_mut().fc1.ws.fill_(0.0));
    vs.load_partial(&file).unwrap();
    assert!(p.original_module().fc1.ws.equal(&before));
    std::fs::remove_file(&file).ok();
}

#[test]
fn a_panicking_forward_still_puts_the_originals_back() {
    #[derive(Debug)]
    struct Fails(nn::Linear);
    impl Parameters for Fails {
        fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
            self.0.visit(visitor)
        }
        fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
            self.0.visit_mut(visitor)
        }
    }
    impl Module for Fails {
        fn forward(&self, _: &Tensor) -> Tensor {
            panic!("the module's own forward fails")
        }
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 2, 2);
    let (ptr, before) = (lin.ws.data_ptr(), lin.ws.copy());
    let p = parametrize(Fails(lin), "weight", |w: &Tensor| w.zeros_like()).unwrap();
    let xs = Tensor::ones([1, 2], CPU);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.forward(&xs)));
    assert!(result.is_err());
    assert_eq!(p.original_module().0.ws.data_ptr(), ptr);
    assert!(p.original_module().0.ws.equal(&before));
}

#[test]
fn parametrized_modules_are_modules_that_can_be_sent_and_nested() {
    fn assert_module<T: Module + Send>() {}
    assert_module::<Parametrized<nn::Linear>>();
    assert_module::<Parametrized<Parametrized<nn::Linear>>>();

    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 3, 3);
    let (w, b) = (lin.ws.copy(), lin.bs.as_ref().unwrap().copy());
    let inner = parametrize(lin, "weight", |w: &Tensor| w + 1).unwrap();
    let outer = parametrize(inner, "weight", |w: &Tensor| w * 2).unwrap();
    // The outer transform applies to the inner one's output, as a later `push` does.
    let xs = Tensor::randn([2, 3], CPU);
    let by_hand = xs.linear(&((&w + 1) * 2), Some(&b));
    assert!(outer.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
    let debug = format!("{outer:?}");
    assert!(debug.contains("parametrizations"), "{debug}");
}

// Nested parametrizations: `parametrize(parametrize(m, "weight", f), "weight", g)` is
// `g(f(w))` everywhere, as pushing `f` then `g` is. These tests use only what the original
// API has, so that they can run against it.

fn add1() -> FnTransform {
    FnTransform::new("add1", |w: &Tensor| w + 1).with_right_inverse(|v: &Tensor| v - 1)
}

fn times2() -> FnTransform {
    FnTransform::new("times2", |w: &Tensor| w * 2).with_right_inverse(|v: &Tensor| v / 2)
}

fn minus3() -> FnTransform {
    FnTransform::new("minus3", |w: &Tensor| w - 3).with_right_inverse(|v: &Tensor| v + 3)
}

/// The tensor `name` of `module` as `Parameters` lists it (the original, outside forward).
fn tensor_of<M: Parameters>(module: &M, name: &str) -> Tensor {
    named_tensors(module)
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor `{name}`"))
        .tensor
}

#[test]
fn wrapping_and_pushing_compose_in_the_same_order() {
    tch::manual_seed(3);
    let xs = Tensor::randn([5, 4], CPU);

    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (w, b) = (lin.ws.copy(), lin.bs.as_ref().unwrap().copy());
    let wrapped = parametrize(
        parametrize(lin, "weight", add1()).unwrap(),
        "weight",
        times2(),
    )
    .unwrap();

    let vs2 = nn::VarStore::new(Device::Cpu);
    let lin2 = linear(&vs2, "fc", 4, 3);
    tch::no_grad(|| {
        lin2.ws.shallow_clone().copy_(&w);
        lin2.bs.as_ref().unwrap().shallow_clone().copy_(&b);
    });
    let mut pushed = Parametrized::new(lin2);
    pushed.push("weight", add1()).unwrap();
    pushed.push("weight", times2()).unwrap();

    let g_of_f = (&w + 1) * 2;
    let by_hand = xs.linear(&g_of_f, Some(&b));
    assert!(wrapped.transformed("weight").unwrap().equal(&g_of_f));
    assert!(pushed.transformed("weight").unwrap().equal(&g_of_f));
    assert!(wrapped.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
    assert!(wrapped.forward(&xs).equal(&pushed.forward(&xs)));
    // Not the other order.
    assert!(!wrapped
        .forward(&xs)
        .allclose(&xs.linear(&(&w * 2 + 1), Some(&b)), 1e-3, 1e-3, false));
    // The original is untouched and still the tensor under `weight`.
    assert!(tensor_of(&wrapped, "weight").equal(&w));
    assert!(wrapped.original("weight").unwrap().equal(&w));
}

#[test]
fn a_transform_wrapped_around_another_is_prepared_on_its_output() {
    // Pruning after a shift sees the shifted weights, as it does when pushed second.
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 8, 4);
    let w = lin.ws.copy();
    let shift = |w: &Tensor| w + 0.3;
    let wrapped = parametrize(
        parametrize(lin, "weight", shift).unwrap(),
        "weight",
        MagnitudePrune::new(0.5).unwrap(),
    )
    .unwrap();
    let expected = prune_by_hand(&values(&(&w + 0.3)), 0.5);
    assert!(close(
        &values(&wrapped.transformed("weight").unwrap()),
        &expected
    ));
    let xs = Tensor::randn([3, 8], CPU);
    let b = tensor_of(&wrapped, "bias");
    let by_hand = xs.linear(&Tensor::from_slice(&expected).reshape([4, 8]), Some(&b));
    assert!(wrapped.forward(&xs).allclose(&by_hand, 1e-5, 1e-5, false));
}

#[test]
fn transformed_at_every_depth_is_what_that_depth_s_forward_uses() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (w, b) = (lin.ws.copy(), lin.bs.as_ref().unwrap().copy());
    let depth1 = parametrize(lin, "weight", add1()).unwrap();
    let depth2 = parametrize(depth1, "weight", times2()).unwrap();
    let depth3 = parametrize(depth2, "weight", minus3()).unwrap();
    let xs = Tensor::randn([2, 4], CPU);

    let f = &w + 1;
    let gf = &f * 2;
    let hgf = &gf - 3;
    assert!(depth3.transformed("weight").unwrap().equal(&hgf));
    assert!(depth3
        .forward(&xs)
        .allclose(&xs.linear(&hgf, Some(&b)), 1e-6, 1e-6, false));
    // Inside the outer scope every depth sees the outermost value (none transforms again).
    let (seen2, seen1) = depth3
        .with_transformed(|depth2| {
            let seen1 = depth2.with_transformed(|depth1| {
                depth1
                    .with_transformed(|lin| tensor_of(lin, "weight").copy())
                    .unwrap()
            });
            (tensor_of(depth2, "weight").copy(), seen1.unwrap())
        })
        .unwrap();
    assert!(seen2.equal(&hgf) && seen1.equal(&hgf));
    // Inside it, `transformed` and `original` are still right.
    let (inside, original) = depth3
        .with_transformed(|_| {
            (
                depth3.transformed("weight").unwrap(),
                depth3.original("weight").unwrap(),
            )
        })
        .unwrap();
    assert!(inside.equal(&hgf) && original.equal(&w));

    // Peeling off layers, each depth computes its own composition.
    let depth2 = depth3.remove(Removal::KeepOriginal).unwrap();
    assert!(depth2.transformed("weight").unwrap().equal(&gf));
    assert!(depth2
        .forward(&xs)
        .allclose(&xs.linear(&gf, Some(&b)), 1e-6, 1e-6, false));
    let depth1 = depth2.remove(Removal::KeepOriginal).unwrap();
    assert!(depth1.transformed("weight").unwrap().equal(&f));
    assert!(depth1
        .forward(&xs)
        .allclose(&xs.linear(&f, Some(&b)), 1e-6, 1e-6, false));
    let lin = depth1.remove(Removal::KeepOriginal).unwrap();
    assert!(lin.ws.equal(&w));
}

#[test]
fn gradients_reach_the_original_through_every_depth() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let reference = lin.ws.detach().copy().set_requires_grad(true);
    let b = lin.bs.as_ref().unwrap().detach().copy();
    let inner = parametrize(lin, "weight", |w: &Tensor| w.sin()).unwrap();
    let outer = parametrize(inner, "weight", |w: &Tensor| w.square()).unwrap();
    let xs = Tensor::randn([5, 4], CPU);
    outer.forward(&xs).sum(Kind::Float).backward();
    xs.linear(&reference.sin().square(), Some(&b))
        .sum(Kind::Float)
        .backward();
    let grad = tensor_of(&outer, "weight").grad();
    assert!(grad.allclose(&reference.grad(), 1e-5, 1e-5, false));
}

#[test]
fn the_outer_cached_scope_computes_every_depth_once() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (inner_t, inner_calls) = Counting::new("inner", |w| w + 1);
    let (bias_t, bias_calls) = Counting::new("bias", |b| b * 3);
    let (outer_t, outer_calls) = Counting::new("outer", |w| w * 2);
    let mut inner = Parametrized::new(linear(&vs, "fc", 4, 3));
    inner.push("weight", inner_t).unwrap();
    inner.push("bias", bias_t).unwrap();
    let outer = parametrize(inner, "weight", outer_t).unwrap();
    let counts = || [&inner_calls, &bias_calls, &outer_calls].map(|c| c.swap(0, Ordering::SeqCst));
    counts();

    let xs = Tensor::randn([2, 4], CPU);
    let uncached = outer.forward(&xs);
    assert_eq!(counts(), [1, 1, 1], "each transform once per forward");
    let cached = outer.cached(|p| {
        let outs: Vec<Tensor> = (0..3).map(|_| p.forward(&xs)).collect();
        let seen = p.transformed("weight").unwrap();
        (outs, seen)
    });
    assert_eq!(counts(), [1, 1, 1], "each transform once in the scope");
    assert!(cached.0.iter().all(|out| out.equal(&uncached)));
    let w = outer.original("weight").unwrap();
    assert!(cached.1.equal(&((&w + 1) * 2)));
    let b = tensor_of(&outer, "bias");
    assert!(uncached.allclose(
        &xs.linear(&((&w + 1) * 2), Some(&(&b * 3))),
        1e-6,
        1e-6,
        false
    ));
}

#[test]
fn baking_the_outer_level_writes_the_whole_composition() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (ptr, w, b) = (
        lin.ws.data_ptr(),
        lin.ws.copy(),
        lin.bs.as_ref().unwrap().copy(),
    );
    let mut inner = Parametrized::new(lin);
    inner.push("weight", add1()).unwrap();
    inner.push("bias", |b: &Tensor| b.neg()).unwrap();
    let outer = parametrize(inner, "weight", times2()).unwrap();
    let xs = Tensor::randn([2, 4], CPU);
    let seen = outer.forward(&xs);

    let inner = outer.remove(Removal::Bake).unwrap();
    let weight = tensor_of(&inner, "weight");
    assert_eq!(weight.data_ptr(), ptr, "baked in place");
    assert!(weight.equal(&((&w + 1) * 2)), "g(f(w)) in the weight");
    assert!(vs.variables()["fc.weight"].equal(&((&w + 1) * 2)));
    // The inner `add1` is in the baked value, so it is gone; its bias transform stays.
    assert_eq!(inner.parametrizations(), [("bias", vec!["closure"])]);
    assert!(inner.forward(&xs).allclose(&seen, 1e-6, 1e-6, false));
    let lin = inner.remove(Removal::Bake).unwrap();
    assert!(lin.forward(&xs).allclose(&seen, 1e-6, 1e-6, false));
    assert!(lin.bs.as_ref().unwrap().equal(&b.neg()));
}

#[test]
fn baking_a_nested_weight_norm_takes_the_inner_tensors_out_of_the_var_store() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let mut inner = Parametrized::new(nn::linear(&path, 4, 3, Default::default()));
    inner
        .push_registered(&path, "weight", WeightNorm::new(0))
        .unwrap();
    let outer = parametrize(inner, "weight", times2()).unwrap();
    assert!(vs.variables().contains_key("fc.weight_g"));
    let expected = outer.transformed("weight").unwrap().detach().copy();
    let inner = outer.remove_from(&vs, Removal::Bake).unwrap();
    assert!(inner.parametrizations().is_empty());
    assert!(tensor_of(&inner, "weight").allclose(&expected, 1e-6, 1e-6, false));
    let mut left: Vec<_> = vs.variables().into_keys().collect();
    left.sort();
    assert_eq!(left, ["fc.bias", "fc.weight"]);
}

#[test]
fn assigning_at_the_outer_level_inverts_the_outer_transform_first() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 3, 2);
    let ptr = lin.ws.data_ptr();
    let inner = parametrize(lin, "weight", times2()).unwrap();
    let mut outer = parametrize(inner, "weight", add1()).unwrap();
    let value = Tensor::from_slice(&[4.0f32, 7.0, 1.0, -2.0, 10.0, 1.0]).reshape([2, 3]);
    outer.assign("weight", &value).unwrap();
    let weight = tensor_of(&outer, "weight");
    assert_eq!(weight.data_ptr(), ptr);
    assert!(weight.allclose(&((&value - 1) / 2), 1e-6, 1e-6, false));
    assert!(outer
        .transformed("weight")
        .unwrap()
        .allclose(&value, 1e-6, 1e-6, false));

    // An inner transform without a right inverse: an error, and nothing is written.
    let lin = linear(&vs, "other", 3, 2);
    let inner = parametrize(lin, "weight", |w: &Tensor| w.relu()).unwrap();
    let mut outer = parametrize(inner, "weight", add1()).unwrap();
    let before = tensor_of(&outer, "weight").copy();
    let error = outer.assign("weight", &value).unwrap_err();
    assert!(
        matches!(error, PatchError::Parametrize(ParametrizeError::NoRightInverse { ref transform }) if transform == "closure"),
        "{error}"
    );
    assert!(tensor_of(&outer, "weight").equal(&before));
}

#[test]
fn an_outer_transform_of_an_inner_transform_s_own_tensor_is_what_the_inner_one_uses() {
    // The outer one keeps every pruned entry (a mask of ones) and doubles the weight: the
    // inner pruning sees the outer mask, and the doubling applies to the pruned result.
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let (w, b) = (lin.ws.copy(), lin.bs.as_ref().unwrap().copy());
    let inner = parametrize(lin, "weight", MagnitudePrune::new(0.5).unwrap()).unwrap();
    let mut outer = Parametrized::new(inner);
    outer.push("weight", times2()).unwrap();
    outer
        .push("weight_mask", |m: &Tensor| m.ones_like())
        .unwrap();
    let xs = Tensor::randn([2, 4], CPU);
    let by_hand = xs.linear(&(&w * 2), Some(&b));
    assert!(outer.transformed("weight").unwrap().equal(&(&w * 2)));
    assert!(outer.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
    let cached = outer.cached(|p| (p.transformed("weight").unwrap(), p.forward(&xs)));
    assert!(cached.0.equal(&(&w * 2)));
    assert!(cached.1.allclose(&by_hand, 1e-6, 1e-6, false));
    // The mask is still the inner one's, half zeros.
    let mask = tensor_of(&outer, "weight_mask");
    assert_eq!(mask.sum(Kind::Float).double_value(&[]), 6.0);

    let inner = outer.remove(Removal::Bake).unwrap();
    assert!(inner.parametrizations().is_empty());
    assert!(tensor_of(&inner, "weight").equal(&(&w * 2)));
    assert!(inner.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
}

/// A model struct with a parametrized layer inside.
#[derive(Debug, Parameters)]
struct TwoLayers {
    fc1: Parametrized<nn::Linear>,
    fc2: nn::Linear,
}

impl Module for TwoLayers {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(xs).relu())
    }
}

#[test]
fn a_parametrized_layer_inside_a_model_applies_before_the_model_s_parametrization() {
    let vs = nn::VarStore::new(Device::Cpu);
    let fc1 = linear(&vs, "fc1", 4, 4);
    let fc2 = linear(&vs, "fc2", 4, 2);
    let (w1, b1) = (fc1.ws.copy(), fc1.bs.as_ref().unwrap().copy());
    let (w2, b2) = (fc2.ws.copy(), fc2.bs.as_ref().unwrap().copy());
    let model = TwoLayers {
        fc1: parametrize(fc1, "weight", add1()).unwrap(),
        fc2,
    };
    let mut outer = Parametrized::new(model);
    outer.push("fc1.weight", times2()).unwrap();
    outer.push("fc2.weight", minus3()).unwrap();
    let xs = Tensor::randn([3, 4], CPU);
    let fc1_seen = (&w1 + 1) * 2;
    let by_hand = xs
        .linear(&fc1_seen, Some(&b1))
        .relu()
        .linear(&(&w2 - 3), Some(&b2));
    assert!(outer.transformed("fc1.weight").unwrap().equal(&fc1_seen));
    assert!(outer.forward(&xs).allclose(&by_hand, 1e-5, 1e-5, false));

    outer
        .assign("fc1.weight", &Tensor::ones([4, 4], CPU))
        .unwrap();
    assert!(tensor_of(&outer, "fc1.weight").allclose(
        &Tensor::full([4, 4], -0.5, CPU),
        1e-6,
        1e-6,
        false
    ));

    let model = outer.remove(Removal::Bake).unwrap();
    assert!(
        model.fc1.parametrizations().is_empty(),
        "baked into fc1.weight"
    );
    assert!(model.fc1.transformed("weight").is_err());
    assert!(tensor_of(&model, "fc1.weight").equal(&Tensor::ones([4, 4], CPU)));
}

// No `Deref` to the module: a `Parametrized<nn::Linear>` handed to code that wants an
// `nn::Linear` would compute with the original weight. `tests/ui/parametrize` shows
// that `&Parametrized<nn::Linear>` no longer coerces; these are the routes there are.

fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
    linear.forward(xs)
}

fn takes_module(module: &impl Module, xs: &Tensor) -> Tensor {
    module.forward(xs)
}

#[test]
fn every_route_to_the_module_says_which_tensors_it_sees() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 4, 3);
    let xs = Tensor::randn([2, 4], CPU);
    let plain = lin.forward(&xs);
    let p = parametrize(lin, "weight", |w: &Tensor| w.zeros_like()).unwrap();
    let bias = tensor_of(&p, "bias").expand([2, 3], false);

    // Generic module code gets the parametrized forward.
    assert!(takes_module(&p, &xs).equal(&bias));
    assert!(p.forward(&xs).equal(&bias));
    // A function wanting the `nn::Linear` gets it with the transformed weight in place...
    let seen = p
        .with_transformed(|linear| takes_linear(linear, &xs))
        .unwrap();
    assert!(seen.equal(&bias));
    // ... or, asked for by name, the untransformed one.
    assert!(takes_linear(p.original_module(), &xs).equal(&plain));

    // The same at depth two: the view sees the composition.
    let outer = parametrize(p, "bias", |b: &Tensor| b + 1).unwrap();
    let seen = outer
        .with_transformed(|inner| inner.with_transformed(|linear| takes_linear(linear, &xs)))
        .unwrap()
        .unwrap();
    assert!(seen.equal(&(&bias + 1)));
    assert!(seen.equal(&outer.forward(&xs)));
}

#[test]
fn the_transformed_view_puts_the_originals_back_when_its_closure_panics() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = linear(&vs, "fc", 2, 2);
    let (ptr, before) = (lin.ws.data_ptr(), lin.ws.copy());
    let inner = parametrize(lin, "weight", |w: &Tensor| w.zeros_like()).unwrap();
    let outer = parametrize(inner, "weight", |w: &Tensor| w + 5).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outer.with_transformed(|_| panic!("the caller's code fails"))
    }));
    assert!(result.is_err());
    let weight = tensor_of(&outer, "weight");
    assert_eq!(weight.data_ptr(), ptr);
    assert!(weight.equal(&before));
    let xs = Tensor::ones([1, 2], CPU);
    let bias = tensor_of(&outer, "bias");
    let by_hand = xs.linear(&Tensor::full([2, 2], 5.0, CPU), Some(&bias));
    assert!(outer.forward(&xs).allclose(&by_hand, 1e-6, 1e-6, false));
}
