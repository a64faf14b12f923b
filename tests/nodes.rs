//! Replaceable nodes and sequences (PyGlove's symbolic rewrites on a PyTorch-style
//! `Sequential`): every child has a path, a rule replaces nodes by layers of another type or
//! wraps them in new sequences, all or nothing, and undo gives back the very layers.
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::prelude::*;
use tch_patch::tree::{
    path_in, print_tree, CloneMode, Glob, ModuleTreeExt, Node, NodeLayer, Selector, TreeError,
};
use tch_patch::{apply_patch_string, layers, tree::Rule};

/// PyTorch's `Sequential(Linear(4, 8), ReLU(), Linear(8, 1))` inside a model, next to a
/// nested sequence, with the slot-held head a typed rule can patch.
#[derive(Debug, ModuleTree, Parameters)]
struct Model {
    mlp: layers::Sequential,
    head: Node,
}

impl nn::ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head.forward_t(&self.mlp.forward_t(xs, train), train)
    }
}

fn model(vs: &nn::VarStore) -> Model {
    let p = vs.root();
    let mlp = layers::seq()
        .add(nn::linear(&p / "mlp" / 0, 4, 8, Default::default()))
        .add(layers::Relu)
        .add(
            layers::seq()
                .add(nn::linear(&p / "mlp" / 2 / 0, 8, 8, Default::default()))
                .add(layers::Relu),
        )
        .add(nn::linear(&p / "mlp" / 3, 8, 1, Default::default()));
    let head = Node::new(Slot::new(nn::linear(&p / "head", 1, 1, Default::default())));
    Model { mlp, head }
}

fn pointers<M: Parameters>(model: &M) -> Vec<(String, usize)> {
    named_tensors(model)
        .into_iter()
        .map(|t| (t.name, t.tensor.data_ptr() as usize))
        .collect()
}

fn xs() -> Tensor {
    Tensor::randn([5, 4], (Kind::Float, Device::Cpu))
}

#[test]
fn children_have_paths_and_tensor_names_as_in_pytorch() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = model(&vs);
    let names: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "mlp.0.weight",
            "mlp.0.bias",
            "mlp.2.0.weight",
            "mlp.2.0.bias",
            "mlp.3.weight",
            "mlp.3.bias",
            "head.weight",
            "head.bias",
        ]
    );
    // The names are the VarStore's: a checkpoint of one loads into the other.
    let mut stored: Vec<String> = vs.variables().into_keys().collect();
    stored.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(stored, sorted);
    assert_eq!(
        print_tree(&model),
        "\
Model
  mlp: Sequential
    0: Linear(in_features=4, out_features=8, bias=true): weight [8, 4], bias [8]
    1: Relu
    2: Sequential
      0: Linear(in_features=8, out_features=8, bias=true): weight [8, 8], bias [8]
      1: Relu
    3: Linear(in_features=8, out_features=1, bias=true): weight [1, 8], bias [1]
  head: Linear(in_features=1, out_features=1, bias=true): weight [1, 1], bias [1]
parameters: 123 total, 123 trainable; slots: 0 of 1 patched
"
    );
}

#[test]
fn every_relu_at_any_depth_becomes_a_prelu_and_undo_gives_back_the_very_layers(
) -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    let before = pointers(&model);
    let xs = xs();
    let root = vs.root();
    let changed = model
        .replace_nodes::<layers::Relu, _>(&Glob::new("**")?, |path, _| {
            Ok(Box::new(layers::prelu(path_in(&root, path), 1)) as Box<dyn NodeLayer>)
        })
        .unwrap();
    assert_eq!(changed, ["mlp.1", "mlp.2.1"]);
    // Every other tensor is the very same; the PReLUs' weights are new, at their paths.
    let after = pointers(&model);
    for (name, ptr) in &before {
        assert!(after.contains(&(name.clone(), *ptr)), "{name} moved");
    }
    assert!(after.iter().any(|(name, _)| name == "mlp.1.weight"));
    assert!(vs.variables().contains_key("mlp.2.1.weight"));

    // The PReLU weight trains.
    let mut sgd = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let loss = model
        .forward_t(&xs, true)
        .pow_tensor_scalar(2)
        .sum(Kind::Float);
    sgd.backward_step(&loss);
    let slope = &model.mlp.nodes()[1]
        .downcast_ref::<layers::PRelu>()
        .unwrap()
        .weight;
    assert!(slope.grad().defined());

    assert_eq!(model.undo_nodes(), 2);
    assert_eq!(pointers(&model), before);
    assert!(model.mlp.nodes()[1]
        .downcast_ref::<layers::Relu>()
        .is_some());
    Ok(())
}

#[test]
fn a_dropout_before_every_linear_as_new_nodes_and_back() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    let before = pointers(&model);
    let xs = xs();
    let plain = model.forward_t(&xs, false);
    let changed = model
        .wrap_nodes::<nn::Linear, _>(&Glob::new("mlp.**")?, |_, _| {
            Ok((vec![Node::new(layers::dropout(0.1))], vec![]))
        })
        .unwrap();
    assert_eq!(changed, ["mlp.0", "mlp.2.0", "mlp.3"]);
    let names: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    assert_eq!(names[0], "mlp.0.1.weight");
    assert!(
        model.forward_t(&xs, false).equal(&plain),
        "dropout is off in eval"
    );
    assert!(
        !model.forward_t(&xs, true).equal(&plain),
        "and on in training"
    );
    // The head is a Slot<Linear> in a node, not matched by `mlp.**`.
    assert!(model.head.downcast_ref::<Slot<nn::Linear>>().is_some());
    assert_eq!(model.undo_nodes(), 3);
    assert_eq!(pointers(&model), before);
    assert!(model.forward_t(&xs, false).equal(&plain));
    Ok(())
}

#[test]
fn a_failing_replacement_changes_nothing_and_no_match_lists_the_nodes(
) -> Result<(), Box<dyn std::error::Error>> {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    let before = pointers(&model);
    let mut calls = 0;
    let refused = model.replace_nodes::<layers::Relu, _>(&Glob::new("**")?, |path, _| {
        calls += 1;
        if path == "mlp.2.1" {
            return Err(TreeError::NoSuchNode {
                path: path.to_owned(),
                known: vec![],
            }
            .into());
        }
        Ok(Box::new(layers::Gelu::default()) as Box<dyn NodeLayer>)
    });
    assert!(refused.is_err());
    assert_eq!(calls, 2);
    assert_eq!(pointers(&model), before);
    assert!(model.mlp.nodes()[1]
        .downcast_ref::<layers::Relu>()
        .is_some());
    assert_eq!(model.mlp.nodes()[1].changes(), 0);

    let none = model
        .replace_nodes::<layers::Tanh, _>(&Glob::new("**")?, |_, _| {
            Ok(Box::new(layers::Relu) as Box<dyn NodeLayer>)
        })
        .unwrap_err();
    let text = none.to_string();
    assert!(text.starts_with("no `Tanh` node matches `**`"), "{text}");
    assert!(text.contains("`mlp.1` (Relu)"), "{text}");
    assert!(text.contains("`head` (Slot<Linear>)"), "{text}");
    let missing = model.node_mut("mlp.9").unwrap_err().to_string();
    assert!(missing.starts_with("no node at `mlp.9`"), "{missing}");
    assert!(missing.contains("`mlp.2.1`"), "{missing}");
    Ok(())
}

#[test]
fn slots_inside_nodes_are_patched_by_typed_rules() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    assert_eq!(model.select(&Selector::all()), ["head"]);
    let rule =
        Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Doubled", |_, content| {
            Doubled { base: content }
        });
    model.apply(&rule).unwrap();
    let slot = model.head.downcast_ref::<Slot<nn::Linear>>().unwrap();
    assert_eq!(slot.patch_names(), ["Doubled"]);
    let xs = Tensor::ones([2, 1], (Kind::Float, Device::Cpu));
    let base = nn::Module::forward(slot.root(), &xs);
    assert!(model
        .head
        .forward_t(&xs, false)
        .allclose(&(&base * 2.0), 1e-6, 1e-6, false));
}

#[patch(from = L, module_t)]
struct Doubled<L: Layer> {}

#[patch_forward]
impl<L: Layer> Doubled<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_t(xs, train) * 2.0
    }
}

#[test]
fn a_sequence_inserts_and_removes_children_and_refuses_bad_indices() {
    let mut seq = layers::seq().add(layers::Relu).add_fn(|xs| xs * 3.0);
    seq.insert(1, layers::Identity).unwrap();
    assert_eq!(seq.len(), 3);
    let xs = Tensor::from_slice(&[-1.0f32, 2.0]);
    assert_eq!(Vec::<f32>::try_from(seq.forward(&xs)).unwrap(), [0.0, 6.0]);
    let error = seq.insert(9, layers::Relu).unwrap_err();
    assert_eq!(
        error.to_string(),
        "index 9 is out of range for a sequence of 3 children"
    );
    assert!(seq.remove(3).is_err());
    assert_eq!(seq.len(), 3);
    let removed = seq.remove(0).unwrap();
    assert!(removed.downcast_ref::<layers::Relu>().is_some());
    assert_eq!(Vec::<f32>::try_from(seq.forward(&xs)).unwrap(), [-3.0, 6.0]);
    assert!(layers::seq().forward(&xs).equal(&xs), "empty: the identity");
}

#[test]
fn diff_names_each_changed_hyperparameter_by_its_path() {
    let vs = nn::VarStore::new(Device::Cpu);
    let left = model(&vs);
    let other = nn::VarStore::new(Device::Cpu);
    let mut right = model(&other);
    right.mlp.nodes_mut()[0].replace(nn::linear(other.root() / "x", 10, 8, Default::default()));
    right.mlp.nodes_mut()[1].replace(layers::dropout(0.25));
    let changes: Vec<String> = tch_patch::tree::diff(&left, &right)
        .changes
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "~ mlp.0.in_features: 4 -> 10",
            "~ mlp.0.weight: shape [8, 4] -> [8, 10]",
            "~ mlp.1: Relu -> Dropout(p=0.25)",
        ]
    );
}

/// A user layer reporting its own constructor arguments.
#[derive(Debug, Parameters)]
struct Scale {
    #[param(skip)]
    factor: f64,
}

impl nn::Module for Scale {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs * self.factor
    }
}

impl tch_patch::tree::Hyperparameters for Scale {
    fn hyperparameters(&self) -> tch_patch::tree::HyperList {
        vec![("factor", self.factor.into())]
    }
}

tch_patch::leaf_layer!(hyperparameters: Scale);

#[test]
fn user_layers_and_patched_slots_show_their_hyperparameters() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    model.mlp.nodes_mut()[1].replace(Scale { factor: 0.5 });
    let rule =
        Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Doubled", |_, content| {
            Doubled { base: content }
        });
    model.apply(&rule).unwrap();
    let text = print_tree(&model);
    assert!(text.contains("    1: Scale(factor=0.5)\n"), "{text}");
    assert!(
        text.contains("  head: Doubled(Linear(in_features=1, out_features=1, bias=true)): "),
        "{text}"
    );
}

fn var_pointers(vs: &nn::VarStore) -> Vec<(String, usize, Vec<i64>)> {
    let mut vars: Vec<_> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.data_ptr() as usize, t.size()))
        .collect();
    vars.sort();
    vars
}

#[test]
fn rebind_rebuilds_exactly_the_named_layers_and_undo_puts_the_very_tensors_back() {
    let vs = nn::VarStore::new(Device::Cpu);
    let original = model(&nn::VarStore::new(Device::Cpu));
    let mut model = model(&vs);
    let (before, vars_before) = (pointers(&model), var_pointers(&vs));
    let report = model
        .rebind(
            &vs,
            &[
                ("mlp.0.out_features", 10.into()),
                ("mlp.2.0.in_features", 10.into()),
            ],
        )
        .unwrap();
    assert_eq!(report.rebuilt.len(), 2);
    let after = pointers(&model);
    for (name, ptr) in &before {
        let rebuilt = name.starts_with("mlp.0.") || name.starts_with("mlp.2.0.");
        assert_eq!(after.contains(&(name.clone(), *ptr)), !rebuilt, "{name}");
    }
    assert_eq!(vs.variables()["mlp.0.weight"].size(), [10, 4]);
    assert_eq!(vs.variables()["mlp.2.0.weight"].size(), [8, 10]);
    assert!(tch_patch::params::unregistered_tensors(&vs, &model).is_empty());
    assert_eq!(model.forward_t(&xs(), false).size(), [5, 1]);
    let diff = tch_patch::tree::diff(&original, &model).to_string();
    assert!(diff.contains("~ mlp.0.out_features: 8 -> 10\n"), "{diff}");

    model.undo_rebind(&vs, report).unwrap();
    assert_eq!(pointers(&model), before);
    assert_eq!(var_pointers(&vs), vars_before);
    assert_eq!(vs.trainable_variables().len(), 8);

    // A node holding an unpatched slot is rebuilt as a slot, so rules can still patch it.
    model
        .rebind(&vs, &[("head.in_features", 1.into())])
        .unwrap();
    assert!(model.head.downcast_ref::<Slot<nn::Linear>>().is_some());
}

#[test]
fn a_bad_rebind_changes_nothing_and_says_what_is_wrong() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    let doubled =
        Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Doubled", |_, content| {
            Doubled { base: content }
        });
    model.apply(&doubled).unwrap(); // a patched slot: rebind would drop its patch
    let (before, vars_before) = (pointers(&model), var_pointers(&vs));
    let cases: [(&[(&str, tch_patch::tree::HyperValue)], &str); 7] = [
        (
            &[("mlp.2.0.out_features", 5.into())],
            "rebind leaves `mlp.2.0.out_features` = 5 feeding `mlp.3.in_features` = 8: change both",
        ),
        (
            &[("mlp.0.in_features", 0.into())],
            "cannot set `mlp.0.in_features` to 0: a size must be at least 1",
        ),
        (
            &[("mlp.0.in_features", true.into())],
            "cannot set `mlp.0.in_features` to true: the value has another type than the hyperparameter's",
        ),
        (
            &[("mlp.0.in_feature", 3.into())],
            "`mlp.0.in_feature` is not a hyperparameter; the layer's are: `in_features`, `out_features`, `bias`",
        ),
        (
            &[("mlp.0.bias", false.into()), ("mlp.0.bias", true.into())],
            "`mlp.0.bias` is given twice in one rebind",
        ),
        (
            &[("head.in_features", 2.into())],
            "cannot rebind `head`: its slot holds the patches `Doubled` (outermost first), which rebind cannot rebuild; rebind the model before patching it, then apply the same patches again (e.g. the same patch string) to the result",
        ),
        (&[("mlp.in_features", 2.into())], "no node at `mlp`; node paths:"),
    ];
    for (changes, expected) in cases {
        let error = model.rebind(&vs, changes).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{error}");
        assert_eq!(pointers(&model), before);
        assert_eq!(var_pointers(&vs), vars_before);
    }
}

fn tutorial_mlp(vs: &nn::VarStore) -> layers::Sequential {
    let p = vs.root();
    layers::seq()
        .add(nn::linear(&p / 0, 4, 8, Default::default()))
        .add(layers::Relu)
        .add(nn::linear(&p / 2, 8, 1, Default::default()))
}

#[test]
fn a_deep_clone_is_an_independent_twin_and_a_structural_clone_is_freshly_initialized() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = tutorial_mlp(&vs);
    let xs = xs();
    let deep_vs = nn::VarStore::new(Device::Cpu);
    let deep = mlp.clone_into(&deep_vs.root(), CloneMode::Deep).unwrap();
    assert!(deep.forward(&xs).equal(&mlp.forward(&xs)));
    assert_eq!(print_tree(&deep), print_tree(&mlp));
    for ((name, a), (_, b)) in pointers(&deep).iter().zip(pointers(&mlp).iter()) {
        assert_ne!(a, b, "{name} shares storage");
    }
    // Training the twin leaves the original as it was.
    let before = mlp.forward(&xs);
    let mut sgd = nn::Sgd::default().build(&deep_vs, 0.1).unwrap();
    sgd.backward_step(&deep.forward_t(&xs, true).sum(Kind::Float));
    assert!(mlp.forward(&xs).equal(&before));
    assert!(!deep.forward(&xs).equal(&before));

    let fresh_vs = nn::VarStore::new(Device::Cpu);
    let fresh = mlp
        .clone_into(&fresh_vs.root(), CloneMode::Structure)
        .unwrap();
    assert!(tch_patch::tree::diff(&mlp, &fresh).is_empty());
    assert!(!fresh.forward(&xs).equal(&mlp.forward(&xs)));
}

#[test]
fn clone_rebind_diff_as_in_the_tutorial() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = tutorial_mlp(&vs);
    let other = nn::VarStore::new(Device::Cpu);
    let mut wider = mlp.clone_into(&other.root(), CloneMode::Deep).unwrap();
    wider
        .rebind(&other, &[("0.in_features", 10.into())])
        .unwrap();
    assert_eq!(
        tch_patch::tree::diff(&mlp, &wider).to_string(),
        "~ 0.in_features: 4 -> 10\n~ 0.weight: shape [8, 4] -> [8, 10]\n"
    );
}

#[test]
fn a_clone_refuses_what_it_cannot_rebuild_and_names_it_takes_before_adding_anything() {
    let vs = nn::VarStore::new(Device::Cpu);
    let with_closure = tutorial_mlp(&vs).add_fn(|xs| xs * 2.0);
    let other = nn::VarStore::new(Device::Cpu);
    let error = with_closure
        .clone_into(&other.root(), CloneMode::Deep)
        .unwrap_err();
    assert!(
        error.to_string().starts_with("cannot clone `Func` at `3`"),
        "{error}"
    );
    assert!(other.variables().is_empty());
    let taken = tutorial_mlp(&vs)
        .clone_into(&vs.root(), CloneMode::Deep)
        .unwrap_err();
    assert!(matches!(taken, tch_patch::PatchError::NameTaken { name } if name == "0.weight"));
}

#[test]
fn patch_strings_find_their_own_nodes_and_combine_all_or_nothing() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = tutorial_mlp(&vs);
    let before = pointers(&mlp);
    // The empty string is the identity.
    assert!(apply_patch_string(&mut mlp, &vs, "  ").unwrap().is_empty());
    // `prelu_activation` and `prelu_activation()` need no targets.
    let reports = apply_patch_string(&mut mlp, &vs, "prelu_activation").unwrap();
    assert_eq!(reports[0].paths(), ["1"]);
    assert!(vs.variables().contains_key("1.weight"));
    assert_eq!(mlp.undo_nodes_from(&vs), 1);
    let reports = apply_patch_string(&mut mlp, &vs, "prelu_activation()").unwrap();
    assert_eq!(reports[0].paths(), ["1"]);
    mlp.undo_nodes_from(&vs);

    // Two combined; the Dropout's probability is checked against [0, 1].
    let out_of_range = apply_patch_string(&mut mlp, &vs, "dropout_before_linear(p=1.5)");
    assert!(
        out_of_range.unwrap_err().to_string().contains("p"),
        "names the argument"
    );
    let reports = apply_patch_string(
        &mut mlp,
        &vs,
        "prelu_activation; dropout_before_linear(p=0.2)",
    )
    .unwrap();
    assert_eq!(reports[1].paths(), ["0", "2"]);
    assert!(mlp.nodes()[0]
        .downcast_ref::<layers::Sequential>()
        .is_some());
    assert_eq!(mlp.undo_nodes_from(&vs), 3);

    // A chain whose second patch matches nothing leaves the model and the VarStore as
    // they were: the PReLU's weight is taken out again.
    let variables = vs.variables().len();
    let failed = apply_patch_string(
        &mut mlp,
        &vs,
        r#"prelu_activation; dropout_before_linear(p=0.1, targets="head.*")"#,
    );
    assert!(failed.is_err());
    assert_eq!(vs.variables().len(), variables);
    assert!(mlp.nodes()[1].downcast_ref::<layers::Relu>().is_some());
    let _ = before;
    let names: Vec<&str> = tch_patch::registry::Registry::global()
        .unwrap()
        .names()
        .collect();
    assert!(names.contains(&"prelu_activation") && names.contains(&"dropout_before_linear"));
}

#[test]
fn patch_strings_rebind_by_path_and_undo_it_when_the_chain_fails() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = tutorial_mlp(&vs);
    let vars = var_pointers(&vs);
    let half = apply_patch_string(&mut mlp, &vs, "rebind(0.out_features=16)").unwrap_err();
    assert!(half.to_string().contains("`2.in_features` = 8"), "{half}");
    let failed = apply_patch_string(
        &mut mlp,
        &vs,
        r#"rebind(0.out_features=16, 2.in_features=16); gelu_activation(targets="head")"#,
    );
    assert!(failed.is_err());
    assert_eq!(
        var_pointers(&vs),
        vars,
        "the rebind was undone with the chain"
    );
    let reports =
        apply_patch_string(&mut mlp, &vs, "rebind(0.out_features=16, 2.in_features=16)").unwrap();
    assert_eq!(reports[0].paths(), ["0", "2"]);
    assert_eq!(vs.variables()["2.weight"].size(), [1, 16]);
    let no_path = apply_patch_string(&mut mlp, &vs, "rebind(rank=2)").unwrap_err();
    assert!(no_path.to_string().contains("rank"), "{no_path}");
}

#[test]
fn a_search_space_yields_as_many_models_as_it_counts() {
    let space = tch_patch::search::SearchSpace::parse(
        r#"one_of(prelu_activation, gelu_activation, ""); rebind(2.out_features=one_of(1, 2, 3))"#,
    )
    .unwrap();
    let mut built = 0;
    for candidate in space.enumerate().unwrap() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut mlp = tutorial_mlp(&vs);
        apply_patch_string(&mut mlp, &vs, &candidate.patches).unwrap();
        let out = candidate.choices[1].1.parse::<i64>().unwrap();
        assert_eq!(mlp.forward(&xs()).size(), [5, out]);
        built += 1;
    }
    assert_eq!(Some(built), space.count());
    assert_eq!(space.sample(4, 11).unwrap(), space.sample(4, 11).unwrap());
    assert_ne!(space.sample(4, 11).unwrap(), space.sample(4, 12).unwrap());
}

/// `Conv2d(3, 8, 3, padding=1)`, ReLU, `Conv2d(8, 4, 3, groups=2)` and, in an unpatched
/// slot, `Conv2d(4, 4, 1)`: a sequence of convolutions as in a PyTorch CNN.
fn cnn(vs: &nn::VarStore) -> layers::Sequential {
    let p = vs.root();
    let padded = nn::ConvConfig {
        padding: 1,
        ..Default::default()
    };
    let grouped = nn::ConvConfig {
        groups: 2,
        ..Default::default()
    };
    layers::seq()
        .add(nn::conv2d(&p / 0, 3, 8, 3, padded))
        .add(layers::Relu)
        .add(nn::conv2d(&p / 2, 8, 4, 3, grouped))
        .add(Slot::new(nn::conv2d(&p / 3, 4, 4, 1, Default::default())))
}

fn images() -> Tensor {
    Tensor::randn([2, 3, 6, 6], (Kind::Float, Device::Cpu))
}

#[test]
fn a_conv_rebind_rebuilds_exactly_its_layers_and_undo_puts_the_very_tensors_back() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cnn = cnn(&vs);
    let (before, vars_before) = (pointers(&cnn), var_pointers(&vs));
    let report = cnn
        .rebind(
            &vs,
            &[
                ("0.out_channels", 6.into()),
                ("2.in_channels", 6.into()),
                ("2.kernel_size", vec![1, 3].into()),
                ("2.padding_mode", "reflect".into()),
                ("3.bias", false.into()),
            ],
        )
        .unwrap();
    assert_eq!(report.rebuilt.len(), 3);
    let after = pointers(&cnn);
    for (name, ptr) in &before {
        assert!(!after.contains(&(name.clone(), *ptr)), "{name}");
    }
    assert_eq!(vs.variables()["0.weight"].size(), [6, 3, 3, 3]);
    assert_eq!(vs.variables()["2.weight"].size(), [4, 3, 1, 3]);
    assert!(!vs.variables().contains_key("3.bias"));
    assert!(tch_patch::params::unregistered_tensors(&vs, &cnn).is_empty());
    assert!(cnn.nodes()[3].downcast_ref::<Slot<nn::Conv2D>>().is_some());
    assert_eq!(cnn.forward(&images()).size(), [2, 4, 6, 4]);
    let text = print_tree(&cnn);
    assert!(
        text.contains("in_channels=6, out_channels=4, kernel_size=[1, 3], stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=2, bias=true, padding_mode=\"reflect\""),
        "{text}"
    );

    cnn.undo_rebind(&vs, report).unwrap();
    assert_eq!(pointers(&cnn), before);
    assert_eq!(var_pointers(&vs), vars_before);
    assert_eq!(cnn.forward(&images()).size(), [2, 4, 4, 4]);
}

#[test]
fn a_conv_rebind_keeps_every_other_tensor() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cnn = cnn(&vs);
    let before = pointers(&cnn);
    cnn.rebind(&vs, &[("2.stride", vec![2, 2].into())]).unwrap();
    let after = pointers(&cnn);
    for (name, ptr) in &before {
        let kept = after.contains(&(name.clone(), *ptr));
        assert_eq!(kept, !name.starts_with("2."), "{name}");
    }
    assert_eq!(cnn.forward(&images()).size(), [2, 4, 2, 2]);
}

#[test]
fn a_bad_conv_rebind_names_both_paths_or_the_value_and_changes_nothing() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cnn = cnn(&vs);
    let (before, vars_before) = (pointers(&cnn), var_pointers(&vs));
    let cases: [(&[(&str, tch_patch::tree::HyperValue)], &str); 7] = [
        (
            &[("0.out_channels", 6.into())],
            "rebind leaves `0.out_channels` = 6 feeding `2.in_channels` = 8: change both",
        ),
        (
            &[("3.in_channels", 2.into())],
            "rebind leaves `2.out_channels` = 4 feeding `3.in_channels` = 2: change both",
        ),
        (
            &[("0.out_channels", 7.into()), ("2.in_channels", 7.into())],
            "cannot set `2.in_channels` to 7: `groups` = 2 must divide `in_channels` = 7",
        ),
        (
            &[("2.groups", 3.into())],
            "cannot set `2.groups` to 3: `groups` = 3 must divide `in_channels` = 8",
        ),
        (
            &[("2.kernel_size", vec![3].into())],
            "cannot set `2.kernel_size` to [3]: it must have 2 values, one per dimension",
        ),
        (
            &[("2.padding", vec![-1, 0].into())],
            "cannot set `2.padding` to [-1, 0]: each value must be at least 0",
        ),
        (
            &[("2.padding_mode", "mirror".into())],
            "cannot set `2.padding_mode` to \"mirror\": it is \"zeros\", \"reflect\", \"replicate\" or \"circular\"",
        ),
    ];
    for (changes, expected) in cases {
        let error = cnn.rebind(&vs, changes).unwrap_err();
        assert_eq!(error.to_string(), expected);
        assert_eq!(pointers(&cnn), before);
        assert_eq!(var_pointers(&vs), vars_before);
    }
    // Channels feed channels: a convolution's output channels are not a linear layer's
    // input features (those are the last dimension), so they are not compared.
    let mut mixed = layers::seq()
        .add(nn::conv1d(vs.root() / "c", 2, 3, 1, Default::default()))
        .add(nn::linear(vs.root() / "l", 5, 5, Default::default()));
    mixed.rebind(&vs, &[("0.out_channels", 4.into())]).unwrap();
}

#[test]
fn a_conv_deep_clone_is_an_independent_twin_and_a_structural_clone_is_fresh() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let cnn = cnn(&vs);
    let xs = images();
    let deep_vs = nn::VarStore::new(Device::Cpu);
    let deep = cnn.clone_into(&deep_vs.root(), CloneMode::Deep).unwrap();
    assert!(deep.forward(&xs).equal(&cnn.forward(&xs)));
    assert_eq!(print_tree(&deep), print_tree(&cnn));
    assert_eq!(pointers(&deep).len(), 6);
    for ((name, a), (_, b)) in pointers(&deep).iter().zip(pointers(&cnn).iter()) {
        assert_ne!(a, b, "{name} shares storage");
        assert!(
            deep_vs.variables()[name].equal(&vs.variables()[name]),
            "{name}"
        );
    }
    assert!(deep.nodes()[3].downcast_ref::<Slot<nn::Conv2D>>().is_some());

    let fresh_vs = nn::VarStore::new(Device::Cpu);
    let fresh = cnn
        .clone_into(&fresh_vs.root(), CloneMode::Structure)
        .unwrap();
    assert!(tch_patch::tree::diff(&cnn, &fresh).is_empty());
    assert!(!fresh_vs.variables()["0.weight"].equal(&vs.variables()["0.weight"]));

    // Transposed convolutions too (tch builds them with one value per hyperparameter).
    let up = layers::seq().add(nn::conv_transpose2d(
        vs.root() / "up",
        4,
        2,
        2,
        nn::ConvTransposeConfig {
            stride: 2,
            ..Default::default()
        },
    ));
    let up_vs = nn::VarStore::new(Device::Cpu);
    let twin = up.clone_into(&up_vs.root(), CloneMode::Deep).unwrap();
    let small = Tensor::randn([1, 4, 3, 3], (Kind::Float, Device::Cpu));
    assert!(twin.forward(&small).equal(&up.forward(&small)));
    assert_eq!(twin.forward(&small).size(), [1, 2, 6, 6]);
}

#[test]
fn a_clone_names_the_patches_it_cannot_rebuild_and_says_what_to_do() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = model(&vs);
    let doubled =
        Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Doubled", |_, content| {
            Doubled { base: content }
        });
    model.apply(&doubled).unwrap();
    let other = nn::VarStore::new(Device::Cpu);
    let error = model
        .head
        .clone_into(&other.root(), CloneMode::Deep)
        .unwrap_err();
    assert!(
        matches!(&error, tch_patch::PatchError::Tree(TreeError::PatchedSlot { patches, .. }) if patches == &["Doubled"]),
        "{error}"
    );
    let in_seq = layers::seq().add(layers::Relu).add(Slot::new(Doubled {
        base: nn::linear(vs.root() / "x", 2, 2, Default::default()),
    }));
    let error = in_seq
        .clone_into(&other.root(), CloneMode::Deep)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot clone `1`: its slot holds the patches `Doubled` (outermost first), which clone cannot rebuild; clone the model before patching it, then apply the same patches again (e.g. the same patch string) to the result"
    );
    assert!(other.variables().is_empty());
}

/// A user layer with a tensor: `xs * gain`, `gain` of `[dim]`, at `root / "gain"`. Its
/// check refuses a `dim` above 64; its rebuild refuses 13 although its check accepts it
/// (a layer whose two halves disagree, to show that a rebind is put back all the same).
#[derive(Debug, Parameters)]
struct Gain {
    gain: Tensor,
}

impl nn::Module for Gain {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs * &self.gain
    }
}

impl tch_patch::tree::Hyperparameters for Gain {
    fn hyperparameters(&self) -> tch_patch::tree::HyperList {
        vec![("dim", self.gain.size()[0].into())]
    }
}

impl tch_patch::tree::Rebuild for Gain {
    fn check(
        &self,
        hyper: &tch_patch::tree::HyperArgs<'_>,
    ) -> Result<(), tch_patch::tree::BadHyperparameter> {
        match hyper.size("dim")? {
            dim if dim > 64 => Err(tch_patch::tree::BadHyperparameter::new("dim", "at most 64")),
            _ => Ok(()),
        }
    }
    fn rebuild(
        &self,
        root: &nn::Path,
        hyper: &tch_patch::tree::HyperArgs<'_>,
    ) -> Result<Self, tch_patch::tree::BadHyperparameter> {
        let dim = hyper.size("dim")?;
        if dim == 13 {
            return Err(tch_patch::tree::BadHyperparameter::new("dim", "unlucky"));
        }
        Ok(Gain {
            gain: root.var("gain", &[dim], nn::Init::Const(1.0)),
        })
    }
}

tch_patch::leaf_layer!(rebuild: Gain);

fn gained(vs: &nn::VarStore) -> layers::Sequential {
    let p = vs.root();
    layers::seq()
        .add(nn::linear(&p / 0, 4, 8, Default::default()))
        .add(Gain {
            gain: (&p / 1).var("gain", &[8], nn::Init::Uniform { lo: 0.5, up: 2.0 }),
        })
        .add(Slot::new(Gain {
            gain: (&p / 2).var("gain", &[8], nn::Init::Uniform { lo: 0.5, up: 2.0 }),
        }))
}

#[test]
fn a_user_layer_is_rebound_and_cloned_through_its_rebuild_impl() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = gained(&vs);
    let xs = xs();
    let deep_vs = nn::VarStore::new(Device::Cpu);
    let deep = model.clone_into(&deep_vs.root(), CloneMode::Deep).unwrap();
    assert!(deep.forward(&xs).equal(&model.forward(&xs)));
    for ((name, a), (_, b)) in pointers(&deep).iter().zip(pointers(&model).iter()) {
        assert_ne!(a, b, "{name} shares storage");
    }
    assert!(deep.nodes()[2].downcast_ref::<Slot<Gain>>().is_some());
    let fresh_vs = nn::VarStore::new(Device::Cpu);
    let fresh = model
        .clone_into(&fresh_vs.root(), CloneMode::Structure)
        .unwrap();
    assert!(fresh_vs.variables()["1.gain"].equal(&Tensor::ones([8], (Kind::Float, Device::Cpu))));
    assert!(tch_patch::tree::diff(&model, &fresh).is_empty());

    let (before, vars_before) = (pointers(&model), var_pointers(&vs));
    let report = model
        .rebind(
            &vs,
            &[
                ("0.out_features", 6.into()),
                ("1.dim", 6.into()),
                ("2.dim", 6.into()),
            ],
        )
        .unwrap();
    assert_eq!(model.forward(&xs).size(), [5, 6]);
    assert_eq!(vs.variables()["2.gain"].size(), [6]);
    model.undo_rebind(&vs, report).unwrap();
    assert_eq!(pointers(&model), before);
    assert_eq!(var_pointers(&vs), vars_before);

    // The layer's check refuses before anything changes; a rebuild that fails after its
    // check passed puts back the layers rebuilt before it.
    let refused = model
        .rebind(&vs, &[("0.out_features", 65.into()), ("1.dim", 65.into())])
        .unwrap_err();
    assert_eq!(refused.to_string(), "cannot set `1.dim` to 65: at most 64");
    let failed = model
        .rebind(
            &vs,
            &[
                ("0.out_features", 13.into()),
                ("1.dim", 13.into()),
                ("2.dim", 13.into()),
            ],
        )
        .unwrap_err();
    assert_eq!(
        failed.to_string(),
        "cannot rebuild `Gain` at `1`: `dim`: unlucky"
    );
    assert_eq!(pointers(&model), before);
    assert_eq!(var_pointers(&vs), vars_before);
    assert_eq!(
        model.nodes().iter().map(Node::changes).collect::<Vec<_>>(),
        [0, 0, 0]
    );
}

#[test]
fn a_rebind_of_a_layer_without_rebuild_says_how_to_give_it_one() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = tutorial_mlp(&vs).add_fn(|xs| xs * 2.0);
    let error = mlp.rebind(&vs, &[("3.scale", 2.into())]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot rebind `3`: rebind rebuilds `Linear`, `Embedding`, `LayerNorm`, `Conv1D/2D/3D`, \
         `ConvTranspose1D/2D/3D`, `this crate's layers`, `your layers that implement Rebuild`, \
         `an unpatched Slot of those`, not `Func` (a layer of yours implements \
         `tree::Rebuild` and is declared with `leaf_layer!(rebuild: YourType)`)"
    );
}
