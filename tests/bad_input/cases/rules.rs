//! Rules on a module tree (`ModuleTreeExt::apply`, `apply_chain`): zero matches, a slot
//! already patched, one side of a tied weight, a patch refusing half-way (all or none).
//! Also the rule builders the patch-string cases use.
use crate::case;
use crate::fixture::{Fixture, TREE};
use crate::Case;
use tch::nn;
use tch::{Kind, Tensor};
use tch_patch::patches::{BiasOnly, BuildPatch, Lora, LoraConfig};
use tch_patch::tree::TreeError;
use tch_patch::{
    params::TensorRole, patch, patch_forward, register_tensors, tree::apply_chain, tree::path_in,
    tree::AnyRule, tree::DynLayer, tree::ModuleTreeExt, tree::Refused, tree::Rule, tree::Selector,
    tree::TiePolicy, Layer, Patch, PatchError,
};

/// Multiplies its base's output by a trainable `scale` (ones): a generic patch, so it
/// stacks on whatever a slot holds (`module_t`, passing the train flag on).
#[patch(from = L, module_t)]
pub struct Scaled<L: Layer> {
    #[param]
    scale: Tensor,
}

#[patch_forward]
impl<L: Layer> Scaled<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_t(xs, train) * &self.scale
    }
}

/// A VarStore sharing `vs`'s variables, for a rule's closure to own.
fn shared(vs: &nn::VarStore) -> nn::VarStore {
    let mut store = nn::VarStore::new(vs.device());
    store.variables_ = vs.variables_.clone();
    store
}

/// Wraps `content` in `Scaled`, registering `scale` at `tree.{path}`; refuses (handing the
/// content back) when the name is taken.
fn scaled(
    vs: &nn::VarStore,
    path: &str,
    content: DynLayer<nn::Linear>,
) -> Result<DynLayer<nn::Linear>, Refused<nn::Linear>> {
    let out = content.root().ws.size()[0];
    let ones = Tensor::ones([out], (Kind::Float, vs.device()));
    match register_tensors(
        &path_in(&(vs.root() / TREE), path),
        [("scale", ones, TensorRole::Param)],
    ) {
        Ok([scale]) => Ok(Box::new(Scaled {
            base: content,
            scale,
        })),
        Err(error) => Err(Refused::new(error, content)),
    }
}

/// A `Scaled` rule on the linear slots `glob` picks; it refuses at `fail_at`.
pub(super) fn scale_rule(
    vs: &nn::VarStore,
    glob: &str,
    fail_at: Option<&'static str>,
) -> Rule<nn::Linear> {
    let store = shared(vs);
    Rule::<nn::Linear>::new(
        Selector::glob(glob).expect("a valid glob"),
        "Scaled",
        move |path, content| {
            if Some(path) == fail_at {
                return Err(Refused::new(
                    PatchError::Empty {
                        what: "the case's patience",
                    },
                    content,
                ));
            }
            scaled(&store, path, content)
        },
    )
    .var_store(vs)
}

/// A rule putting patch `P`, built from `config`, on the bare linear slots `selector`
/// picks; `P` registers its tensors at `tree.{path}`. A slot that is already patched, or
/// a build that fails, is refused with the content handed back.
pub(super) fn built_rule<P>(
    vs: &nn::VarStore,
    selector: Selector,
    config: P::Config,
) -> Rule<nn::Linear>
where
    P: BuildPatch<nn::Linear> + Layer<Root = nn::Linear> + Patch,
{
    let store = shared(vs);
    Rule::<nn::Linear>::new(selector, P::NAME, move |path, content| {
        let base = match content.into_root() {
            Ok(base) => base,
            Err(content) => {
                let error = PatchError::Tree(TreeError::AlreadyPatched {
                    path: path.to_owned(),
                    patch: P::NAME.to_owned(),
                });
                return Err(Refused::new(error, content));
            }
        };
        match P::build(base, &path_in(&(store.root() / TREE), path), &config) {
            Ok(patched) => Ok(patched.into_content()),
            Err(failed) => Err(Refused::new(failed.error, failed.base.into_content())),
        }
    })
    .var_store(vs)
}

/// A LoRA rule of rank 2 on the linear slots `glob` picks.
pub(super) fn lora_rule(vs: &nn::VarStore, glob: &str) -> Rule<nn::Linear> {
    let config = LoraConfig {
        rank: 2,
        ..Default::default()
    };
    built_rule::<Lora<nn::Linear>>(vs, Selector::glob(glob).expect("a valid glob"), config)
}

/// Applies `rule` to the fixture's tree.
fn apply(fx: &mut Fixture, rule: Rule<nn::Linear>) -> Result<(), PatchError> {
    fx.tree().apply(&rule).map(drop)
}

/// A `Tagged`-like rule with no tensors of its own, on linear slots.
fn tag_rule(glob: &str) -> Rule<nn::Linear> {
    Rule::<nn::Linear>::wrap(
        Selector::glob(glob).expect("a valid glob"),
        "Tagged",
        |_, base| Tagged { base },
    )
}

/// A patch with nothing of its own.
#[patch(from = L, module_t)]
pub struct Tagged<L: Layer> {}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "rule: glob matching no slot",
            setup: |fx| fx.with_tree(),
            |fx| { let rule = scale_rule(&fx.vs, "*.attn.q", None); apply(fx, rule) },
            PatchError::Tree(TreeError::NoMatch { rule, nearest, other_types, .. })
                if rule == "Scaled" && nearest.len() == 5 && other_types.is_empty()
        ),
        case!(
            "rule: glob picking only a slot of another layer type",
            setup: |fx| fx.with_tree(),
            |fx| { let rule = scale_rule(&fx.vs, "emb", None); apply(fx, rule) },
            PatchError::Tree(TreeError::NoMatch { other_types, slot_type, .. })
                if slot_type == "Linear" && other_types == &[("emb".to_owned(), "Embedding".to_owned())]
        ),
        case!(
            "rule: a slot already holding the patch, without allow_stacking",
            setup: |fx| {
                let rule = lora_rule(&fx.vs, "blocks.0.q");
                fx.with_tree().apply(&rule).unwrap();
            },
            |fx| { let rule = lora_rule(&fx.vs, "blocks.*.q"); apply(fx, rule) },
            PatchError::Tree(TreeError::AlreadyPatched { path, patch }) if path == "blocks.0.q" && patch == "lora"
        ),
        case!(
            "rule: stacking asked for, but the patch's names are taken (second Scaled)",
            setup: |fx| {
                let rule = scale_rule(&fx.vs, "blocks.1.v", None);
                fx.with_tree().apply(&rule).unwrap();
            },
            |fx| { let rule = scale_rule(&fx.vs, "blocks.*.v", None).allow_stacking(); apply(fx, rule) },
            PatchError::Tree(TreeError::PatchFailed { path, source, .. })
                if path == "blocks.1.v"
                    && matches!(&**source, PatchError::NameTaken { name } if name == "tree.blocks.1.v.scale")
        ),
        case!(
            "rule: a second LoRA on one slot (stacking asked for, LoRA refuses)",
            setup: |fx| {
                let rule = lora_rule(&fx.vs, "blocks.2.q");
                fx.with_tree().apply(&rule).unwrap();
            },
            |fx| { let rule = lora_rule(&fx.vs, "blocks.{1,2}.q").allow_stacking(); apply(fx, rule) },
            PatchError::Tree(TreeError::PatchFailed { path, source, .. })
                if path == "blocks.2.q" && matches!(&**source, PatchError::Tree(TreeError::AlreadyPatched { .. }))
        ),
        case!(
            "rule: one side of a tied weight (head tied to emb)",
            setup: |fx| fx.with_tree(),
            |fx| { let rule = lora_rule(&fx.vs, "head"); apply(fx, rule) },
            PatchError::Tree(TreeError::TiedWeights { path, tied_to, .. }) if path == "head" && tied_to == "emb.weight"
        ),
        case!(
            "rule: PatchAll on a tie to a slot of another layer type",
            setup: |fx| fx.with_tree(),
            |fx| apply(fx, tag_rule("head").tie(TiePolicy::PatchAll)),
            PatchError::Tree(TreeError::TiedWeights { path, tied_to, .. }) if path == "head" && tied_to == "emb.weight"
        ),
        case!(
            "rule: the third match fails (the first two are rolled back)",
            setup: |fx| fx.with_tree(),
            |fx| {
                let rule = scale_rule(&fx.vs, "blocks.*.{q,v}", Some("blocks.1.q"));
                apply(fx, rule)
            },
            PatchError::Tree(TreeError::PatchFailed { path, source, .. })
                if path == "blocks.1.q" && matches!(**source, PatchError::Empty { .. })
        ),
        case!(
            "rule: the closure applies another patch than the rule's name (peeled again)",
            setup: |fx| fx.with_tree(),
            |fx| {
                let store = shared(&fx.vs);
                let rule = Rule::<nn::Linear>::new(
                    Selector::glob("blocks.0.*").unwrap(),
                    "lora",
                    move |path, content| scaled(&store, path, content),
                )
                .var_store(&fx.vs);
                apply(fx, rule)
            },
            PatchError::Tree(TreeError::WrongPatchName { rule, path, produced: Some("Scaled") })
                if rule == "lora" && path == "blocks.0.q"
        ),
        case!(
            "rule: its check refuses a slot (nothing is patched)",
            setup: |fx| fx.with_tree(),
            |fx| {
                let rule = scale_rule(&fx.vs, "blocks.*.q", None).check(|path, _| match path {
                    "blocks.2.q" => Err(PatchError::Empty { what: "the check's approval" }),
                    _ => Ok(()),
                });
                apply(fx, rule)
            },
            PatchError::Empty { what: "the check's approval" }
        ),
        case!(
            "apply_chain: the second rule matches nothing (the first is undone)",
            setup: |fx| fx.with_tree(),
            |fx| {
                let first = lora_rule(&fx.vs, "blocks.*.q");
                let second = built_rule::<BiasOnly<nn::Linear>>(
                    &fx.vs,
                    Selector::glob("*.mlp").unwrap(),
                    Default::default(),
                );
                apply_chain(fx.tree(), &[&first as &dyn AnyRule, &second]).map(drop)
            },
            PatchError::Tree(TreeError::NoMatch { rule, selector, .. }) if rule == "bias_only" && selector.contains("*.mlp")
        ),
        case!(
            "apply_chain: the second rule fails half-way (all undone)",
            setup: |fx| fx.with_tree(),
            |fx| {
                let first = lora_rule(&fx.vs, "blocks.*.v");
                let second = scale_rule(&fx.vs, "blocks.*.{q,v}", Some("blocks.2.q"));
                apply_chain(fx.tree(), &[&first as &dyn AnyRule, &second]).map(drop)
            },
            PatchError::Tree(TreeError::PatchFailed { rule, path, .. }) if rule == "Scaled" && path == "blocks.2.q"
        ),
    ]
}
