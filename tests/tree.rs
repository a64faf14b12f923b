//! Whole-model surgery on a small transformer-shaped model: rules by glob, reports, zero
//! matches, double patching, rollback, unpatch_all, downcasts, the printed tree, diffs and
//! tied weights.
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};
use tch_patch::tree::TreeError;
use tch_patch::{
    named_tensors, params::TensorRole, patch, patch_forward, register_tensors, tree::apply_chain,
    tree::diff, tree::path_in, tree::print_tree, tree::DynLayer, tree::ModuleTreeExt,
    tree::Refused, tree::Rule, tree::Selector, tree::TiePolicy, Layer, ModuleTree, Parameters,
    PatchError, Slot,
};

const CPU: Device = Device::Cpu;
const DIM: i64 = 4;
const VOCAB: i64 = 10;

/// Multiplies the output of any layer by a trainable per-feature `scale` (ones at first).
/// `module_t`, as every patch that stacks on a slot's content: the train flag goes on down.
#[patch(from = L, module_t)]
struct Scaled<L: Layer> {
    #[param]
    scale: Tensor,
}

#[patch_forward]
impl<L: Layer> Scaled<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_t(xs, train) * &self.scale
    }
}

/// A patch with nothing of its own.
#[patch(from = L, module_t)]
struct Tagged<L: Layer> {}

/// Doubles its base's output in train mode only: shows the train flag reaches it.
#[patch(from = L, module_t)]
struct TrainDoubles<L: Layer> {}

#[patch_forward]
impl<L: Layer> TrainDoubles<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.base.forward_t(xs, train);
        if train {
            ys * 2
        } else {
            ys
        }
    }
}

#[derive(Debug, ModuleTree, Parameters)]
struct Attention {
    q: Slot<nn::Linear>,
    k: Slot<nn::Linear>,
    v: Slot<nn::Linear>,
    o: Slot<nn::Linear>,
}

#[derive(Debug, ModuleTree, Parameters)]
struct Block {
    attn: Attention,
    norm: nn::LayerNorm,
}

#[derive(Debug, ModuleTree, Parameters)]
struct TinyLm {
    embed: Slot<nn::Embedding>,
    blocks: Vec<Block>,
    head: Slot<nn::Linear>,
    #[param(skip)]
    #[tree(skip)]
    name: &'static str,
}

impl ModuleT for TinyLm {
    fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        let mut xs = ids.apply_t(&self.embed, train);
        for block in &self.blocks {
            let a = &block.attn;
            let qkv = xs.apply_t(&a.q, train) + xs.apply_t(&a.k, train) + xs.apply_t(&a.v, train);
            let mixed = qkv.apply_t(&a.o, train);
            xs = block.norm.forward(&(xs + mixed));
        }
        xs.apply_t(&self.head, train)
    }
}

fn linear(p: nn::Path, n_in: i64, n_out: i64) -> Slot<nn::Linear> {
    Slot::new(nn::linear(p, n_in, n_out, Default::default()))
}

fn tiny_lm(vs: &nn::VarStore, blocks: i64, head_out: i64) -> TinyLm {
    let root = vs.root();
    TinyLm {
        embed: Slot::new(nn::embedding(
            &root / "embed",
            VOCAB,
            DIM,
            Default::default(),
        )),
        blocks: (0..blocks)
            .map(|i| {
                let p = &root / "blocks" / i;
                Block {
                    attn: Attention {
                        q: linear(&p / "attn" / "q", DIM, DIM),
                        k: linear(&p / "attn" / "k", DIM, DIM),
                        v: linear(&p / "attn" / "v", DIM, DIM),
                        o: linear(&p / "attn" / "o", DIM, DIM),
                    },
                    norm: nn::layer_norm(&p / "norm", vec![DIM], Default::default()),
                }
            })
            .collect(),
        head: linear(&root / "head", DIM, head_out),
        name: "tiny",
    }
}

/// Wraps a slot's content in `Scaled`, registering `scale` in `vs` under the slot's path.
fn scaled(
    vs: &nn::VarStore,
    path: &str,
    content: DynLayer<nn::Linear>,
) -> Result<DynLayer<nn::Linear>, Refused<nn::Linear>> {
    let out = content.root().ws.size()[0];
    let ones = Tensor::ones([out], (Kind::Float, CPU));
    match register_tensors(
        &path_in(&vs.root(), path),
        [("scale", ones, TensorRole::Param)],
    ) {
        Ok([scale]) => Ok(Box::new(Scaled {
            base: content,
            scale,
        })),
        Err(error) => Err(Refused::new(error, content)),
    }
}

fn scale_rule(vs: &nn::VarStore, glob: &str) -> Rule<nn::Linear> {
    let vs_vars = vs.variables_.clone();
    let device = vs.device();
    Rule::<nn::Linear>::new(
        Selector::glob(glob).unwrap(),
        "Scaled",
        move |path, content| {
            // A VarStore sharing the variables of `vs`, so the rule owns no borrow.
            let mut store = nn::VarStore::new(device);
            store.variables_ = vs_vars.clone();
            scaled(&store, path, content)
        },
    )
    .var_store(vs)
}

/// Name, data pointer and a copy of every tensor: to check nothing moved or changed.
fn snapshot<M: Parameters>(model: &M) -> Vec<(String, usize, Tensor)> {
    named_tensors(model)
        .into_iter()
        .map(|t| {
            (
                t.name,
                t.tensor.data_ptr() as usize,
                t.tensor.detach().copy(),
            )
        })
        .collect()
}

fn assert_same(before: &[(String, usize, Tensor)], after: &[(String, usize, Tensor)]) {
    assert_eq!(before.len(), after.len());
    for ((n0, p0, t0), (n1, p1, t1)) in before.iter().zip(after) {
        assert_eq!(n0, n1);
        assert_eq!(p0, p1, "`{n0}` moved");
        assert!(t0.equal(t1), "`{n0}` changed");
    }
}

fn var_names(vs: &nn::VarStore) -> Vec<String> {
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    names
}

const ATTN_QV: [&str; 4] = [
    "blocks.0.attn.q",
    "blocks.0.attn.v",
    "blocks.1.attn.q",
    "blocks.1.attn.v",
];

#[test]
fn a_glob_rule_patches_every_match_and_reports_it() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let ids = Tensor::from_slice(&[1i64, 2, 3]);
    let before = model.forward_t(&ids, false);
    let names_before: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();

    let report = model.apply(&scale_rule(&vs, "*.attn.{q,v}")).unwrap();
    assert_eq!(report.paths(), ATTN_QV);
    assert_eq!(report.patched[0].1, ["Scaled"]);
    assert_eq!(
        report.to_string(),
        "Scaled patched 4 slot(s): blocks.0.attn.q, blocks.0.attn.v, blocks.1.attn.q, blocks.1.attn.v"
    );
    assert_eq!(model.blocks[0].attn.q.patch_name(), Some("Scaled"));
    assert!(!model.blocks[0].attn.k.is_patched());
    // Scale starts at one: same outputs, bit for bit.
    assert!(model.forward_t(&ids, false).equal(&before));
    // The base's names stay; each patch adds `scale` after them.
    let names: Vec<String> = named_tensors(&model).into_iter().map(|t| t.name).collect();
    let added: Vec<&String> = names.iter().filter(|n| !names_before.contains(n)).collect();
    assert_eq!(
        added,
        ATTN_QV
            .map(|p| format!("{p}.scale"))
            .iter()
            .collect::<Vec<_>>()
    );
    assert!(vs.variables().contains_key("blocks.1.attn.v.scale"));
    assert_eq!(
        model.select(&Selector::predicate("patched", |_, s| s.is_patched())),
        ATTN_QV
    );
}

#[test]
fn apply_then_unpatch_all_leaves_every_tensor_identical() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let before = snapshot(&model);
    let vars_before = var_names(&vs);

    model.apply(&scale_rule(&vs, "*.attn.{q,v}")).unwrap();
    let tagged = Rule::<nn::Linear>::wrap(
        Selector::glob("{head,*.o}").unwrap(),
        "Tagged",
        |_, base| Tagged { base },
    );
    model.apply(&tagged).unwrap();
    model.apply(&scale_rule(&vs, "head")).unwrap();
    assert_eq!(model.head.patch_names(), ["Scaled", "Tagged"]);

    let report = model.unpatch_all_from(&vs);
    assert_eq!(report.patches(), 4 + 2 + 2);
    assert_eq!(
        report.removed.last().unwrap(),
        &("head".to_owned(), vec!["Scaled", "Tagged"])
    );
    assert_same(&before, &snapshot(&model));
    assert_eq!(var_names(&vs), vars_before);
    assert!(model.slots().iter().all(|(_, slot)| !slot.is_patched()));
    assert_eq!(model.name, "tiny"); // a skipped field
                                    // The same rule applies again: its VarStore names were freed.
    model.apply(&scale_rule(&vs, "*.attn.{q,v}")).unwrap();
}

#[test]
fn zero_matches_list_the_nearest_paths() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let before = snapshot(&model);
    let error = model.apply(&scale_rule(&vs, "*.atn.{q,v}")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rule `Scaled` matched no `Linear` slot with glob `*.atn.{q,v}`; nearest `Linear` slot \
         paths: `blocks.0.attn.q`, `blocks.0.attn.v`, `blocks.1.attn.q`, `blocks.1.attn.v`, \
         `blocks.0.attn.k`"
    );
    // A glob that only picks slots of another type says so.
    let error = model.apply(&scale_rule(&vs, "embe?")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rule `Scaled` matched no `Linear` slot with glob `embe?`; it matches slots of other \
         types: `embed` (Embedding); nearest `Linear` slot paths: `head`, `blocks.0.attn.q`, \
         `blocks.0.attn.k`, `blocks.0.attn.v`, `blocks.0.attn.o`"
    );
    let regex = Rule::<nn::Linear>::wrap(
        Selector::regex(r"blocks\.\d\.attn\.x").unwrap(),
        "Tagged",
        |_, base| Tagged { base },
    );
    assert!(matches!(
        model.apply(&regex),
        Err(PatchError::Tree(TreeError::NoMatch { nearest, .. })) if nearest[0] == "blocks.0.attn.q"
    ));
    assert_same(&before, &snapshot(&model));
}

#[test]
fn patching_twice_is_an_error_unless_stacking_is_asked_for() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    model.apply(&scale_rule(&vs, "*.attn.q")).unwrap();
    let error = model.apply(&scale_rule(&vs, "*.attn.{q,v}")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`blocks.0.attn.q` is already patched with `Scaled`; patching it again would stack a \
         second `Scaled` (call `allow_stacking()` on the rule if that is what you want)"
    );
    // Nothing was changed, not even the `v` slots the rule also picked.
    assert!(!model.blocks[0].attn.v.is_patched());
    assert_eq!(model.blocks[0].attn.q.patch_names(), ["Scaled"]);

    let tagged =
        Rule::<nn::Linear>::wrap(Selector::glob("*.attn.q").unwrap(), "Tagged", |_, base| {
            Tagged { base }
        });
    model.apply(&tagged).unwrap(); // another patch stacks freely
    assert!(model.apply(&tagged).is_err());
    let report = model.apply(&tagged.allow_stacking()).unwrap();
    assert_eq!(report.patched[0].1, ["Tagged", "Tagged", "Scaled"]);
    assert_eq!(
        model.blocks[0].attn.q.patch_names(),
        ["Tagged", "Tagged", "Scaled"]
    );
}

#[test]
fn a_failure_at_the_third_match_rolls_the_first_two_back() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let before = snapshot(&model);
    let vars_before = var_names(&vs);
    let vars = vs.variables_.clone();
    let failing = Rule::<nn::Linear>::new(
        Selector::glob("*.attn.{q,v}").unwrap(),
        "Scaled",
        move |path, content| {
            if path == "blocks.1.attn.q" {
                return Err(Refused::new(
                    PatchError::Empty {
                        what: "the test's patience",
                    },
                    content,
                ));
            }
            let mut store = nn::VarStore::new(CPU);
            store.variables_ = vars.clone();
            scaled(&store, path, content)
        },
    )
    .var_store(&vs);
    let error = model.apply(&failing).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rule `Scaled` failed at `blocks.1.attn.q` (the model is unchanged): the test's \
         patience is empty"
    );
    assert!(
        matches!(error, PatchError::Tree(TreeError::PatchFailed { ref path, .. }) if path == "blocks.1.attn.q")
    );
    assert!(model.slots().iter().all(|(_, slot)| !slot.is_patched()));
    assert_same(&before, &snapshot(&model));
    assert_eq!(var_names(&vs), vars_before);
}

#[test]
fn checks_and_patch_names_are_enforced_before_anything_stays_changed() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let checked =
        Rule::<nn::Linear>::wrap(Selector::glob("*.attn.*").unwrap(), "Tagged", |_, base| {
            Tagged { base }
        })
        .check(
            |path, slot| match path.ends_with(".o") && slot.root().bs.is_some() {
                true => Err(PatchError::Empty {
                    what: "a bias-free `o`",
                }),
                false => Ok(()),
            },
        );
    assert!(model.apply(&checked).is_err());
    assert!(model.slots().iter().all(|(_, slot)| !slot.is_patched()));

    let misnamed = Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Lora", |_, base| {
        Tagged { base }
    });
    assert_eq!(
        model.apply(&misnamed).unwrap_err().to_string(),
        "rule `Lora` wrapped `head` in `Tagged`, not in `Lora`; the rule's name must be the \
         `NAME` of the patch its closure applies"
    );
    assert!(!model.head.is_patched());

    // A closure that drops what it was given (here: peels the patch below) is caught.
    model.apply(&scale_rule(&vs, "blocks.1.attn.q")).unwrap();
    let peeling = Rule::<nn::Linear>::new(
        Selector::glob("*.attn.q").unwrap(),
        "Tagged",
        |_, content| {
            let inner = content.peel().unwrap_or_else(|bare| bare);
            Ok(Box::new(Tagged { base: inner }))
        },
    );
    assert!(matches!(
        model.apply(&peeling),
        Err(PatchError::Tree(TreeError::NotWrapped { ref path, .. })) if path == "blocks.1.attn.q"
    ));
    assert!(!model.blocks[0].attn.q.is_patched()); // the earlier slot was restored
}

#[test]
fn downcasts_and_lookups_by_path() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    model.apply(&scale_rule(&vs, "*.attn.{q,v}")).unwrap();
    let q = model.slot::<nn::Linear>("blocks.1.attn.q").unwrap();
    let scaled = q.downcast_ref::<Scaled<DynLayer<nn::Linear>>>().unwrap();
    assert_eq!(scaled.scale.size(), [DIM]);
    assert!(q.downcast_ref::<nn::Linear>().is_none());
    assert!(model.blocks[0]
        .attn
        .k
        .downcast_ref::<nn::Linear>()
        .is_some());
    // `find` looks through the stack; `base` is the innermost Linear.
    model
        .slot_mut::<nn::Linear>("blocks.1.attn.q")
        .unwrap()
        .replace_with(|base| Ok(Box::new(Tagged { base })))
        .unwrap();
    let q = &model.blocks[1].attn.q;
    assert!(q.downcast_ref::<Scaled<DynLayer<nn::Linear>>>().is_none());
    assert!(q.find::<Scaled<DynLayer<nn::Linear>>>().is_some());
    assert_eq!(q.layers().len(), 3);
    assert_eq!(q.root().ws.size(), [DIM, DIM]);
    // The type-erased view of a slot gets the typed slot back.
    let slots = model.slots();
    let (path, erased) = &slots[1];
    assert_eq!(path, "blocks.0.attn.q");
    assert!(erased.downcast_ref::<nn::Linear>().is_some());
    assert!(erased.downcast_ref::<nn::Embedding>().is_none());

    assert_eq!(
        model
            .slot::<nn::Linear>("blocks.0.atn.q")
            .unwrap_err()
            .to_string(),
        "no slot at `blocks.0.atn.q`; nearest slot paths: `blocks.0.attn.q`, `blocks.0.attn.k`, \
         `blocks.0.attn.v`, `blocks.0.attn.o`, `blocks.1.attn.q`"
    );
    assert_eq!(
        model.slot::<nn::Embedding>("head").unwrap_err().to_string(),
        "the slot at `head` holds `Linear`, not `Embedding`"
    );
}

#[test]
fn the_printed_tree_shows_patches_shapes_and_counts() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    model
        .apply(&scale_rule(&vs, "blocks.0.attn.{q,v}"))
        .unwrap();
    let tagged = Rule::<nn::Linear>::wrap(
        Selector::glob("blocks.0.attn.q").unwrap(),
        "Tagged",
        |_, base| Tagged { base },
    );
    model.apply(&tagged).unwrap();
    let _ = model.embed.root().ws.set_requires_grad(false);
    let expected = "\
TinyLm
  embed: Embedding(num_embeddings=10, embedding_dim=4): weight [10, 4] (frozen)
  blocks: Vec<Block>
    0: Block
      attn: Attention
        q: Tagged(Scaled(Linear(in_features=4, out_features=4, bias=true))): weight [4, 4], bias [4], scale [4]
        k: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
        v: Scaled(Linear(in_features=4, out_features=4, bias=true)): weight [4, 4], bias [4], scale [4]
        o: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
      norm: LayerNorm(normalized_shape=[4], eps=1e-5, elementwise_affine=true) (fixed): weight [4], bias [4]
    1: Block
      attn: Attention
        q: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
        k: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
        v: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
        o: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
      norm: LayerNorm(normalized_shape=[4], eps=1e-5, elementwise_affine=true) (fixed): weight [4], bias [4]
  head: Linear(in_features=4, out_features=10, bias=true): weight [10, 4], bias [10]
parameters: 274 total, 234 trainable; slots: 2 of 10 patched
";
    assert_eq!(print_tree(&model), expected);
}

#[test]
fn diff_lists_nodes_patches_and_shapes() {
    let vs = nn::VarStore::new(CPU);
    let left = tiny_lm(&vs, 2, VOCAB);
    let mut right = tiny_lm(&vs, 3, VOCAB + 2);
    assert!(diff(&left, &tiny_lm(&vs, 2, VOCAB)).is_empty());
    right.apply(&scale_rule(&vs, "blocks.0.attn.q")).unwrap();
    let d = diff(&left, &right);
    assert_eq!(
        d.to_string(),
        "\
~ blocks.0.attn.q: patches [] -> [Scaled]
~ head.out_features: 10 -> 12
~ head.weight: shape [10, 4] -> [12, 4]
~ head.bias: shape [10] -> [12]
+ blocks.2: Block
"
    );
    assert_eq!(d.changes.len(), 5);
}

/// An embedding and an output head sharing one table, and a second head tied to the first.
#[derive(ModuleTree, Parameters)]
struct TiedLm {
    embed: Slot<nn::Embedding>,
    head: Slot<nn::Linear>,
    aux_head: Option<Slot<nn::Linear>>,
}

fn tied_lm(vs: &nn::VarStore, aux: bool) -> TiedLm {
    let embed = nn::embedding(vs.root() / "embed", VOCAB, DIM, Default::default());
    let head = nn::Linear {
        ws: embed.ws.shallow_clone(),
        bs: None,
    };
    let aux_head = aux.then(|| {
        Slot::new(nn::Linear {
            ws: embed.ws.shallow_clone(),
            bs: None,
        })
    });
    TiedLm {
        embed: Slot::new(embed),
        head: Slot::new(head),
        aux_head,
    }
}

#[test]
fn a_rule_touching_one_side_of_a_tie_must_say_how_to_treat_it() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tied_lm(&vs, false);
    let tag = |glob: &str| {
        Rule::<nn::Linear>::wrap(Selector::glob(glob).unwrap(), "Tagged", |_, base| Tagged {
            base,
        })
    };
    let error = model.apply(&tag("head")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`head` shares its tensor `head.weight` with `embed.weight`, which is a `Embedding` \
         slot, which a `Linear` rule cannot patch; say how to treat the tie: \
         `tie(TiePolicy::PatchAll)` patches every slot sharing it, `tie(TiePolicy::Allow)` \
         patches this side only (the tensor stays shared)"
    );
    assert!(!model.head.is_patched());
    assert!(model.apply(&tag("head").tie(TiePolicy::PatchAll)).is_err());

    model.apply(&tag("head").tie(TiePolicy::Allow)).unwrap();
    assert!(model.head.is_patched());
    // Patching keeps the tie: the very same tensor on both sides.
    assert!(model.head.root().ws.is_set_to(&model.embed.root().ws));
    assert_eq!(
        print_tree(&model),
        "\
TiedLm
  embed: Embedding(num_embeddings=10, embedding_dim=4): weight [10, 4]
  head: Tagged(Linear(in_features=4, out_features=10, bias=false)): weight [10, 4] (tied to embed.weight)
parameters: 40 total, 40 trainable; slots: 1 of 2 patched
"
    );
}

#[test]
fn patch_all_extends_a_rule_to_every_slot_sharing_the_tensor() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tied_lm(&vs, true);
    let tag = Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Tagged", |_, base| {
        Tagged { base }
    });
    // `head` and `aux_head` are tied to each other and to the embedding.
    let error = model.apply(&tag).unwrap_err();
    assert!(matches!(
        &error,
        PatchError::Tree(TreeError::TiedWeights { tied_to, .. }) if tied_to == "embed.weight"
    ));
    // Ties to the embedding are allowed only by `Allow`; a rule picking both heads with
    // `PatchAll` still refuses, since the embedding cannot take a `Linear` patch.
    let both = Rule::<nn::Linear>::wrap(Selector::glob("*head").unwrap(), "Tagged", |_, base| {
        Tagged { base }
    });
    assert!(model.apply(&both.tie(TiePolicy::PatchAll)).is_err());

    // Two Linear slots tied to each other only: PatchAll patches both.
    let mut pair = TiedLm {
        embed: Slot::new(nn::embedding(
            vs.root() / "e2",
            VOCAB,
            DIM,
            Default::default(),
        )),
        head: linear(vs.root() / "h2", DIM, VOCAB),
        aux_head: None,
    };
    let shared = pair.head.root().ws.shallow_clone();
    pair.aux_head = Some(Slot::new(nn::Linear {
        ws: shared,
        bs: None,
    }));
    let error = pair.apply(&tag).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`head` shares its tensor `head.weight` with `aux_head.weight`, which the rule does \
         not pick; say how to treat the tie: `tie(TiePolicy::PatchAll)` patches every slot \
         sharing it, `tie(TiePolicy::Allow)` patches this side only (the tensor stays shared)"
    );
    let tag_all = Rule::<nn::Linear>::wrap(Selector::glob("head").unwrap(), "Tagged", |_, base| {
        Tagged { base }
    })
    .tie(TiePolicy::PatchAll);
    let report = pair.apply(&tag_all).unwrap();
    assert_eq!(report.paths(), ["head", "aux_head"]);
    let aux = pair.aux_head.as_ref().unwrap();
    assert!(aux.root().ws.is_set_to(&pair.head.root().ws));
}

#[test]
fn the_train_flag_reaches_layers_under_delegating_patches() {
    let vs = nn::VarStore::new(CPU);
    let mut slot = linear(vs.root() / "fc", DIM, DIM);
    let xs = Tensor::randn([2, DIM], (Kind::Float, CPU));
    let eval = slot.forward_eval(&xs);
    slot.replace_with(|base| Ok(Box::new(TrainDoubles { base })))
        .unwrap();
    // A delegating patch on top, which passes the flag to its base.
    slot.replace_with(|base| Ok(Box::new(Tagged { base })))
        .unwrap();
    assert!(slot.forward_t(&xs, false).equal(&eval));
    assert!(slot.forward_t(&xs, true).equal(&(&eval * 2)));
    assert!(slot.forward_eval(&xs).equal(&eval));
    assert!(xs.apply_t(&slot, true).equal(&(&eval * 2)));
}

#[test]
fn statically_built_patches_and_train_mode_layers_fit_in_slots() {
    let vs = nn::VarStore::new(CPU);
    let linear = nn::linear(vs.root() / "fc", DIM, DIM, Default::default());
    let weight = linear.ws.data_ptr();
    let scale = Tensor::ones([DIM], (Kind::Float, CPU));
    let mut slot = Slot::new(Tagged {
        base: Scaled {
            base: linear,
            scale,
        },
    });
    assert_eq!(slot.patch_names(), ["Tagged", "Scaled"]);
    assert!(slot.downcast_ref::<Tagged<Scaled<nn::Linear>>>().is_some());
    assert_eq!(slot.unpatch_all(), ["Tagged", "Scaled"]);
    assert_eq!(slot.root().ws.data_ptr(), weight);
    assert!(matches!(slot.unpatch(), Err(TreeError::NotPatched { .. })));

    let mut norm = Slot::new(nn::batch_norm1d(vs.root() / "bn", DIM, Default::default()));
    let xs = Tensor::randn([8, DIM], (Kind::Float, CPU));
    let train = norm.forward_t(&xs, true);
    norm.replace_with(|base| Ok(Box::new(Tagged { base })))
        .unwrap();
    assert_eq!(norm.forward_t(&xs, true).size(), train.size());
    let names: Vec<String> = named_tensors(&norm).into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
}

#[test]
fn a_chain_of_rules_of_several_types_is_all_or_nothing() {
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 2, VOCAB);
    let before = snapshot(&model);
    let vars_before = var_names(&vs);
    let on_embed =
        Rule::<nn::Embedding>::wrap(Selector::glob("embed").unwrap(), "Tagged", |_, base| {
            Tagged { base }
        });
    let on_attn = scale_rule(&vs, "*.attn.{q,v}");
    let stacked = Rule::<nn::Linear>::wrap(Selector::glob("*.q").unwrap(), "Tagged", |_, base| {
        Tagged { base }
    });
    let typo = Rule::<nn::Linear>::wrap(Selector::glob("haed").unwrap(), "Tagged", |_, base| {
        Tagged { base }
    });
    let error = apply_chain(&mut model, &[&on_embed, &on_attn, &stacked, &typo]).unwrap_err();
    assert!(
        matches!(error, PatchError::Tree(TreeError::NoMatch { ref nearest, .. }) if nearest[0] == "head")
    );
    assert!(model.slots().iter().all(|(_, slot)| !slot.is_patched()));
    assert_same(&before, &snapshot(&model));
    assert_eq!(var_names(&vs), vars_before);

    let reports = apply_chain(&mut model, &[&on_embed, &on_attn, &stacked]).unwrap();
    assert_eq!(
        reports.iter().map(|r| r.len()).collect::<Vec<_>>(),
        [1, 4, 2]
    );
    assert_eq!(model.blocks[1].attn.q.patch_names(), ["Tagged", "Scaled"]);
    assert_eq!(
        tch_patch::tree::AnyRule::describe(&on_attn),
        "Scaled on `Linear` slots picked by glob `*.attn.{q,v}`"
    );
}

#[derive(ModuleTree, Parameters)]
struct WithTensors {
    proj: Slot<nn::Linear>,
    #[buffer]
    positions: Tensor,
    shared_bias: Tensor,
}

#[test]
fn tensor_fields_are_nodes_and_ties_to_them_are_seen() {
    let vs = nn::VarStore::new(CPU);
    let proj = nn::linear(vs.root() / "proj", DIM, DIM, Default::default());
    let shared_bias = proj.bs.as_ref().unwrap().shallow_clone();
    let mut model = WithTensors {
        proj: Slot::new(proj),
        positions: Tensor::arange(8, (Kind::Int64, CPU)),
        shared_bias,
    };
    assert_eq!(
        print_tree(&model),
        "\
WithTensors
  proj: Linear(in_features=4, out_features=4, bias=true): weight [4, 4], bias [4]
  positions: [8] (buffer)
  shared_bias: [4] (tied to proj.bias)
parameters: 20 total, 20 trainable; slots: 0 of 1 patched
"
    );
    let tag = Rule::<nn::Linear>::wrap(Selector::all(), "Tagged", |_, base| Tagged { base });
    assert!(matches!(
        model.apply(&tag),
        Err(PatchError::Tree(TreeError::TiedWeights { ref tied_to, ref reason, .. }))
            if tied_to == "shared_bias" && reason == "is not in a slot, so it cannot be patched"
    ));
    model.apply(&tag.tie(TiePolicy::Allow)).unwrap();
    let other = WithTensors {
        proj: linear(vs.root() / "p2", DIM, DIM),
        positions: Tensor::arange(9, (Kind::Int64, CPU)),
        shared_bias: Tensor::zeros([DIM], (Kind::Float, CPU)),
    };
    assert_eq!(
        diff(&model, &other).to_string(),
        "~ proj: patches [Tagged] -> []\n~ positions: shape [8] -> [9]\n"
    );
}

#[test]
fn a_non_generic_patch_wraps_the_bare_layer_of_a_slot() {
    use tch_patch::patches::MostlyFrozenEmbedding;
    let vs = nn::VarStore::new(CPU);
    let mut model = tiny_lm(&vs, 1, VOCAB);
    let before = snapshot(&model);
    let vars = vs.variables_.clone();
    let new_rows = |ids: &'static [i64]| {
        let vars = vars.clone();
        Rule::<nn::Embedding>::new(
            Selector::glob("embed").unwrap(),
            <MostlyFrozenEmbedding as tch_patch::Patch>::NAME,
            move |path, content| {
                let mut store = nn::VarStore::new(CPU);
                store.variables_ = vars.clone();
                let table = content.into_root().map_err(|patched| {
                    Refused::new(
                        PatchError::Empty {
                            what: "a bare embedding",
                        },
                        patched,
                    )
                })?;
                let patched =
                    MostlyFrozenEmbedding::from_existing(table, &path_in(&store.root(), path), ids)
                        .expect("validated by the check");
                Ok(Box::new(patched))
            },
        )
        // The constructor consumes the table even when it fails: validate before.
        .check(
            move |_, slot| match ids.iter().all(|&id| id < slot.root().ws.size()[0]) {
                true => Ok(()),
                false => Err(PatchError::IndexOutOfRange {
                    what: "token id",
                    index: 99,
                    len: VOCAB,
                }),
            },
        )
        .var_store(&vs)
    };
    assert!(model.apply(&new_rows(&[3, 99])).is_err());
    model.apply(&new_rows(&[3, 7])).unwrap();
    assert!(model
        .embed
        .downcast_ref::<MostlyFrozenEmbedding>()
        .is_some());
    assert!(vs.variables().contains_key("embed.delta"));
    model.unpatch_all_from(&vs);
    assert_same(&before, &snapshot(&model));
    assert!(!vs.variables().contains_key("embed.delta"));
}
