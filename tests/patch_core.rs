//! The guarantees of `#[patch]` on real tch modules: no copy, names kept, forward bit for
//! bit, gradients only where they belong, undo, patch of a patch, in-place view.
use std::collections::BTreeSet;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{
    dynamic::is_patched, dynamic::patch_name, named_tensors, params::TensorRole, patch,
    patch_forward, register_tensors, unpatch, Patch, PatchView,
};

const CPU: Device = Device::Cpu;

/// Data pointers of every tensor of a module, by name.
fn pointers<M: tch_patch::Parameters>(module: &M) -> Vec<(String, usize)> {
    named_tensors(module)
        .into_iter()
        .map(|t| (t.name, t.tensor.data_ptr() as usize))
        .collect()
}

#[patch(from = nn::Linear)]
struct Passthrough {}

#[patch(from = nn::Linear)]
struct WithScale {
    #[param]
    scale: Tensor,
    #[buffer]
    calls: Tensor,
    note: &'static str,
}

#[patch(from = Passthrough, name = "outer")]
struct Outer {}

#[patch(from = nn::BatchNorm, module_t)]
struct TrackedNorm {}

#[patch(from = nn::Linear)]
struct Doubled {}

#[patch_forward]
impl Doubled {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs) * 2
    }
}

#[patch(from = L)]
struct Generic<L: Module> {}

#[test]
fn patching_moves_handles_and_into_base_returns_the_same_tensors() {
    let vs = nn::VarStore::new(CPU);
    let emb = nn::embedding(vs.root() / "emb", 100, 8, Default::default());
    let before = pointers(&emb);
    let patched = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[3, 7]).unwrap();
    let during = pointers(patched.base());
    let base = patched.into_base();
    assert_eq!(before, during);
    assert_eq!(before, pointers(&base));
    // Nothing the patch added stays behind in the parent.
    assert_eq!(named_tensors(&base).len(), 1);
}

#[test]
fn parent_names_stay_and_added_tensors_follow() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 4, 3, Default::default());
    let [scale, calls] = register_tensors(
        &path,
        [
            (
                "scale",
                Tensor::ones([3], (Kind::Float, CPU)),
                TensorRole::Param,
            ),
            (
                "calls",
                Tensor::zeros([1], (Kind::Int64, CPU)),
                TensorRole::Buffer,
            ),
        ],
    )
    .unwrap();
    let parent_names: Vec<String> = named_tensors(&linear).into_iter().map(|t| t.name).collect();
    let patched = WithScale {
        base: linear,
        scale,
        calls,
        note: "kept",
    };
    let names: Vec<String> = named_tensors(&patched)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names[..2], parent_names[..]);
    assert_eq!(names[2..], ["scale", "calls"]);
    let roles: Vec<TensorRole> = named_tensors(&patched)
        .into_iter()
        .map(|t| t.role)
        .collect();
    assert_eq!(roles[2..], [TensorRole::Param, TensorRole::Buffer]);
    assert_eq!(
        <WithScale as Patch>::ADDED_TENSORS,
        &[("scale", TensorRole::Param), ("calls", TensorRole::Buffer)]
    );
    let vs_names: BTreeSet<String> = vs.variables().into_keys().collect();
    let ours: BTreeSet<String> = tch_patch::params::named_tensors_with_prefix(&patched, "fc")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(vs_names, ours);
    assert_eq!(patched.note, "kept");
    assert!(format!("{patched:?}").starts_with("WithScale { base: Linear"));
}

#[test]
fn checkpoint_of_the_unpatched_model_loads_into_the_patched_one_and_back() {
    let dir = std::env::temp_dir().join(format!("tch-patch-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain_file = dir.join("plain.safetensors");
    let patched_file = dir.join("patched.safetensors");

    tch::manual_seed(1);
    let plain_vs = nn::VarStore::new(CPU);
    let plain = nn::embedding(plain_vs.root() / "emb", 10, 4, Default::default());
    plain_vs.save(&plain_file).unwrap();

    tch::manual_seed(2);
    let mut patched_vs = nn::VarStore::new(CPU);
    let other = nn::embedding(patched_vs.root() / "emb", 10, 4, Default::default());
    let patched =
        MostlyFrozenEmbedding::from_existing(other, &(patched_vs.root() / "emb"), &[1]).unwrap();
    assert!(!patched.ws.equal(&plain.ws));
    // The patch's own tensors are not in the old checkpoint: reported, not silently zero.
    let missing = patched_vs.load_partial(&plain_file).unwrap();
    assert_eq!(
        missing.into_iter().collect::<BTreeSet<_>>(),
        ["emb.delta", "emb.token_ids"].map(String::from).into()
    );
    assert!(patched.ws.equal(&plain.ws));
    assert!(
        patched_vs.load(&plain_file).is_err(),
        "a strict load names the missing tensors"
    );

    // And back: the patched checkpoint loads into a fresh unpatched model.
    let _ = tch::no_grad(|| patched.ws.shallow_clone().fill_(0.5));
    patched_vs.save(&patched_file).unwrap();
    let mut fresh_vs = nn::VarStore::new(CPU);
    let fresh = nn::embedding(fresh_vs.root() / "emb", 10, 4, Default::default());
    fresh_vs.load(&patched_file).unwrap();
    assert!(fresh.ws.equal(&patched.ws));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gradients_reach_the_added_parameters_only() {
    let vs = nn::VarStore::new(CPU);
    let emb = nn::embedding(vs.root() / "emb", 20, 4, Default::default());
    let patched = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[2, 5]).unwrap();
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let weight_before = patched.ws.copy();
    let xs = Tensor::from_slice(&[2i64, 5, 9, 11]);
    let loss = patched.forward(&xs).square().sum(Kind::Float);
    opt.zero_grad();
    loss.backward();
    assert!(
        !patched.ws.grad().defined(),
        "the frozen table gets no gradient at all"
    );
    let delta_grad = patched.delta().grad();
    assert!(delta_grad.defined());
    assert!(delta_grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    opt.step();
    assert!(
        patched.ws.equal(&weight_before),
        "the frozen table did not move"
    );
    assert!(
        patched.delta().abs().sum(Kind::Float).double_value(&[]) > 0.0,
        "delta trained"
    );
}

#[test]
fn optimizer_built_from_the_var_store_trains_added_params() {
    let vs = nn::VarStore::new(CPU);
    let path = vs.root() / "fc";
    let linear = nn::linear(&path, 4, 3, Default::default());
    let [scale, calls] = register_tensors(
        &path,
        [
            (
                "scale",
                Tensor::ones([3], (Kind::Float, CPU)),
                TensorRole::Param,
            ),
            (
                "calls",
                Tensor::zeros([1], (Kind::Float, CPU)),
                TensorRole::Buffer,
            ),
        ],
    )
    .unwrap();
    let patched = WithScale {
        base: linear,
        scale,
        calls,
        note: "",
    };
    assert_eq!(
        vs.trainable_variables().len(),
        3,
        "weight, bias and scale; not the buffer"
    );
    let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let xs = Tensor::ones([2, 4], (Kind::Float, CPU));
    let loss = (patched.forward(&xs) * &patched.scale).sum(Kind::Float);
    opt.backward_step(&loss);
    assert!(!patched.scale.equal(&Tensor::ones([3], (Kind::Float, CPU))));
    assert!(patched.calls.equal(&Tensor::zeros([1], (Kind::Float, CPU))));
}

#[test]
fn delegating_forward_is_bit_for_bit_the_parent() {
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root(), 16, 8, Default::default());
    let xs = Tensor::randn([5, 16], (Kind::Float, CPU));
    let expected = linear.forward(&xs);
    let expected_t = linear.forward_t(&xs, true);
    let patched = Passthrough { base: linear };
    assert!(patched.forward(&xs).equal(&expected));
    assert!(patched.forward_t(&xs, true).equal(&expected_t));
    assert!(patched.forward_t(&xs, false).equal(&expected));
    let generic = Generic {
        base: patched.into_base(),
    };
    assert!(generic.forward(&xs).equal(&expected));
}

#[test]
fn module_t_patch_matches_the_parent_in_train_and_eval() {
    let vs = nn::VarStore::new(CPU);
    let norm = nn::batch_norm1d(vs.root() / "bn", 6, Default::default());
    let xs = Tensor::randn([12, 6], (Kind::Float, CPU)) * 3 + 1;
    let stats = |n: &nn::BatchNorm| (n.running_mean.copy(), n.running_var.copy());
    let restore = |n: &nn::BatchNorm, (mean, var): &(Tensor, Tensor)| {
        tch::no_grad(|| {
            n.running_mean.shallow_clone().copy_(mean);
            n.running_var.shallow_clone().copy_(var);
        })
    };
    let initial = stats(&norm);
    let parent_train = norm.forward_t(&xs, true);
    let parent_stats = stats(&norm);
    let parent_eval = norm.forward_t(&xs, false);
    restore(&norm, &initial);

    let patched = TrackedNorm { base: norm };
    assert!(patched.forward_t(&xs, true).equal(&parent_train));
    let (mean, var) = stats(&patched);
    assert!(
        mean.equal(&parent_stats.0) && var.equal(&parent_stats.1),
        "same running stats"
    );
    assert!(patched.forward_t(&xs, false).equal(&parent_eval));
}

#[test]
fn custom_forward_overrides_and_the_inherent_method_shadows_the_parent() {
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root(), 3, 3, Default::default());
    let xs = Tensor::randn([2, 3], (Kind::Float, CPU));
    let parent = linear.forward(&xs);
    let doubled = Doubled { base: linear };
    assert!(doubled.forward(&xs).equal(&(&parent * 2)));
    assert!(Module::forward(&doubled, &xs).equal(&(&parent * 2)));
    assert!(doubled.forward_t(&xs, true).equal(&(&parent * 2)));
    // Through a trait object the override holds too.
    let boxed: Box<dyn Module> = Box::new(doubled);
    assert!(boxed.forward(&xs).equal(&(&parent * 2)));
}

#[test]
fn code_asking_for_the_parent_gets_its_forward_and_generic_code_the_patch_s() {
    // A custom-forward patch derefs to its parent by design: the parent's tensors are the
    // patch's. A function that wants the parent type gets the parent's behaviour on them
    // (Python's `Parent.forward(self, x)`); generic module code gets the patch's forward.
    fn takes_linear(linear: &nn::Linear, xs: &Tensor) -> Tensor {
        linear.forward(xs)
    }
    fn takes_module(module: &impl Module, xs: &Tensor) -> Tensor {
        module.forward(xs)
    }
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root(), 3, 3, Default::default());
    let ptr = linear.ws.data_ptr();
    let xs = Tensor::randn([2, 3], (Kind::Float, CPU));
    let parent = linear.forward(&xs);
    let doubled = Doubled { base: linear };
    assert_eq!(
        doubled.ws.data_ptr(),
        ptr,
        "the same tensors, not a view of others"
    );
    assert!(takes_linear(&doubled, &xs).equal(&parent));
    assert!(takes_module(&doubled, &xs).equal(&(&parent * 2)));
    let boxed: &dyn Module = &doubled;
    assert!(boxed.forward(&xs).equal(&(&parent * 2)));
}

#[test]
fn a_patch_of_a_patch_peels_one_layer_at_a_time() {
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let ptr = linear.ws.data_ptr();
    let outer = Outer {
        base: Passthrough { base: linear },
    };
    assert_eq!(
        outer.ws.data_ptr(),
        ptr,
        "two derefs reach the Linear's field"
    );
    assert_eq!(<Outer as Patch>::NAME, "outer");
    let inner: Passthrough = outer.into_base();
    assert_eq!(<Passthrough as Patch>::NAME, "Passthrough");
    let linear: nn::Linear = inner.into_base();
    assert_eq!(linear.ws.data_ptr(), ptr);
}

#[test]
fn a_field_less_patch_views_the_parent_in_place() {
    let vs = nn::VarStore::new(CPU);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let xs = Tensor::randn([1, 3], (Kind::Float, CPU));
    let viewed: &Doubled = Doubled::view(&linear);
    assert!(
        std::ptr::eq(viewed.base(), &linear),
        "the same object, not a copy"
    );
    assert!(viewed.forward(&xs).equal(&(linear.forward(&xs) * 2)));
    let viewed_mut: &mut Passthrough = Passthrough::view_mut(&mut linear);
    viewed_mut.bs = None;
    assert!(
        linear.bs.is_none(),
        "a change through the view is a change of the parent"
    );
}

#[test]
fn patches_are_detected_statically_and_dynamically() {
    fn name_of<P: Patch>(_: &P) -> &'static str {
        P::NAME
    }
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    assert!(!is_patched(&linear));
    assert_eq!(patch_name(&linear), None);
    let patched = Passthrough { base: linear };
    assert_eq!(name_of(&patched), "Passthrough");
    assert!(is_patched(&patched));
    let boxed: Box<dyn tch_patch::dynamic::AnyModule> = Box::new(patched);
    assert_eq!(patch_name(boxed.as_any()), Some("Passthrough"));
    let outer = Outer {
        base: Passthrough {
            base: nn::linear(vs.root() / "o", 3, 2, Default::default()),
        },
    };
    assert_eq!(patch_name(&outer), Some("outer"));
    assert!(tch_patch::dynamic::patch_base_type_name(&outer)
        .unwrap()
        .ends_with("Passthrough"));
}

#[test]
fn unpatch_takes_the_added_tensors_out_of_the_var_store() {
    let vs = nn::VarStore::new(CPU);
    let emb = nn::embedding(vs.root() / "emb", 10, 4, Default::default());
    let before: BTreeSet<String> = vs.variables().into_keys().collect();
    let trainable_before = vs.trainable_variables().len();
    let patched = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[1]).unwrap();
    assert_eq!(vs.variables().len(), 3);
    let emb = unpatch(patched, &vs);
    assert_eq!(vs.variables().into_keys().collect::<BTreeSet<_>>(), before);
    assert_eq!(vs.trainable_variables().len(), trainable_before);
    assert!(vs.variables()["emb.weight"].is_set_to(&emb.ws));
}
