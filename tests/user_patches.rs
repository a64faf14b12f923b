//! A user's own patches, applied from patch strings. This file plays a crate that depends
//! on tch-patch only: each patch is one `#[derive(PatchArgs)]` config whose
//! `#[patch_args(patch = ...)]` names the patch type it builds, plus the patch's
//! `BuildPatch` impl; no `inventory`, no rule factory, no `crate = ...`.
use std::collections::BTreeSet;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::{BuildError, BuildPatch};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{apply_specs, PatchArgs, PatchSpec, Registry};
use tch_patch::tree::TreeError;
use tch_patch::{
    adapter::load_model_adapter, adapter::save_model_adapter, apply_patch_string, leaf_layer,
    named_tensors, params::TensorRole, patch, patch_forward, register_tensors, tree::DynLayer,
    tree::ModuleTreeExt, Layer, ModuleTree, Parameters, PatchError, Slot,
};

const CPU: Device = Device::Cpu;

/// The user's own layer: scales its input by a (trainable) factor.
#[derive(Debug, Parameters)]
struct MyBlock {
    scale: Tensor,
}

impl Module for MyBlock {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs * &self.scale
    }
}

leaf_layer!(MyBlock);

/// Multiplies a layer's output by a trainable gain.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "gain", patch = Gain<_>, over(nn::Conv2D, MyBlock))]
struct GainConfig {
    /// the gain's value at first
    #[arg(default = 1.0)]
    init: f64,
}

/// Generic over its base, so it wraps whatever a slot holds (and stacks).
#[patch(from = L, name = "gain", module_t)]
struct Gain<L: Layer + ModuleT> {
    #[param]
    gain: Tensor,
}

#[patch_forward]
impl<L: Layer + ModuleT> Gain<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.base.forward_t(xs, train) * &self.gain
    }
}

impl<L: Layer + ModuleT> BuildPatch<L> for Gain<L> {
    type Config = GainConfig;

    fn build(base: L, path: &nn::Path, config: &GainConfig) -> Result<Self, BuildError<L>> {
        let gain = Tensor::full([1], config.init, (Kind::Float, path.device()));
        match register_tensors(path, [("gain", gain, TensorRole::Param)]) {
            Ok([gain]) => Ok(Gain { base, gain }),
            Err(error) => Err(BuildError { error, base }),
        }
    }
}

/// Marks a block; a patch of one layer type (not generic), so it takes bare slots only.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "block_tag", patch = BlockTag)]
struct BlockTagConfig {}

#[patch(from = MyBlock, name = "block_tag")]
struct BlockTag {}

impl BuildPatch<MyBlock> for BlockTag {
    type Config = BlockTagConfig;

    fn build(
        base: MyBlock,
        _path: &nn::Path,
        _config: &BlockTagConfig,
    ) -> Result<Self, BuildError<MyBlock>> {
        Ok(BlockTag { base })
    }
}

/// A patch strings can name, with no patch type: parsed, never applied.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "note")]
struct NoteConfig {
    /// what to note
    #[arg(default = "")]
    text: String,
}

#[derive(ModuleTree, Parameters)]
struct Net {
    conv: Slot<nn::Conv2D>,
    block: Slot<MyBlock>,
    head: Slot<nn::Linear>,
}

fn net(vs: &nn::VarStore) -> Net {
    let root = vs.root();
    Net {
        conv: Slot::new(nn::conv2d(&root / "conv", 1, 2, 3, Default::default())),
        block: Slot::new(MyBlock {
            scale: (&root / "block").ones("scale", &[1]),
        }),
        head: Slot::new(nn::linear(&root / "head", 8, 3, Default::default())),
    }
}

fn variables(vs: &nn::VarStore) -> BTreeSet<String> {
    vs.variables().into_keys().collect()
}

fn input() -> Tensor {
    Tensor::randn([2, 1, 4, 4], (Kind::Float, CPU))
}

#[test]
fn one_declaration_makes_a_patch_applicable_to_any_slot_type() {
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    let xs = input();
    let (conv_before, block_before) = (net.conv.forward_eval(&xs), net.block.forward_eval(&xs));
    let vars_before = variables(&vs);

    let reports =
        apply_patch_string(&mut net, &vs, r#"gain(init=2, targets="{conv,block}")"#).unwrap();
    assert_eq!(reports[0].rule, "gain");
    assert_eq!(reports[0].paths(), ["conv", "block"]);
    assert_eq!(net.conv.patch_names(), ["gain"]);
    assert!(net
        .conv
        .downcast_ref::<Gain<DynLayer<nn::Conv2D>>>()
        .is_some());
    assert!(net
        .block
        .downcast_ref::<Gain<DynLayer<MyBlock>>>()
        .is_some());
    assert!(!net.head.is_patched());
    assert!(net
        .conv
        .forward_t(&xs, false)
        .allclose(&(conv_before * 2), 1e-6, 1e-6, false));
    assert!(net
        .block
        .forward_t(&xs, false)
        .allclose(&(block_before * 2), 1e-6, 1e-6, false));
    let added: BTreeSet<String> = variables(&vs).difference(&vars_before).cloned().collect();
    assert_eq!(
        added,
        BTreeSet::from(["block.gain".to_owned(), "conv.gain".to_owned()])
    );

    assert_eq!(net.unpatch_all_from(&vs).patches(), 2);
    assert_eq!(variables(&vs), vars_before);
}

#[test]
fn a_slot_of_a_type_the_patch_cannot_wrap_is_an_error_and_nothing_changes() {
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    let vars_before = variables(&vs);
    let unchanged = |net: &Net, vs: &nn::VarStore| {
        assert!(!net.conv.is_patched() && !net.block.is_patched() && !net.head.is_patched());
        assert_eq!(variables(vs), vars_before);
    };

    // `*` picks the linear head too, which `gain` does not wrap: refused before `conv`
    // and `block` (which it does wrap) are touched.
    let error = apply_patch_string(&mut net, &vs, r#"gain(targets="*")"#).unwrap_err();
    let PatchError::PatchString(PatchStringError::UnpatchableSlot {
        patch,
        path,
        slot_type,
        accepted,
    }) = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (patch.as_str(), path.as_str(), slot_type.as_str()),
        ("gain", "head", "Linear")
    );
    // Types are named as Rust names them: `nn::Conv2D` is `Conv<[i64; 2]>`.
    assert_eq!(accepted, &["Conv<[i64; 2]>", "MyBlock"]);
    assert_eq!(
        error.to_string(),
        "patch `gain` cannot wrap `head`, a `Linear` slot: it patches only `Conv<[i64; 2]>`, `MyBlock` \
         slots; narrow `targets` to leave `head` out"
    );
    unchanged(&net, &vs);

    // The same for a built-in patch: LoRA wraps linear layers and embeddings only.
    let error = apply_patch_string(&mut net, &vs, r#"lora(targets="*")"#).unwrap_err();
    assert!(
        matches!(&error, PatchError::PatchString(PatchStringError::UnpatchableSlot { patch, path, slot_type, accepted })
            if patch == "lora" && path == "conv" && slot_type == "Conv<[i64; 2]>" && accepted == &["Linear", "Embedding"]),
        "{error:?}"
    );
    unchanged(&net, &vs);

    // Only slots of other types picked: no match, naming them and their types.
    let error = apply_patch_string(&mut net, &vs, r#"gain(targets="head")"#).unwrap_err();
    assert!(
        matches!(&error, PatchError::Tree(TreeError::NoMatch { rule, slot_type, other_types, nearest, .. })
            if rule == "gain" && slot_type == "Conv<[i64; 2]> or MyBlock"
                && other_types == &[("head".to_owned(), "Linear".to_owned())]
                && nearest.len() == 2),
        "{error:?}"
    );
    unchanged(&net, &vs);

    // A later spec failing undoes the user's patch applied before it.
    let error = apply_patch_string(
        &mut net,
        &vs,
        r#"gain(targets="{conv,block}"); lora(targets="*")"#,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            PatchError::PatchString(PatchStringError::UnpatchableSlot { .. })
        ),
        "{error}"
    );
    unchanged(&net, &vs);
}

#[test]
fn a_patch_of_one_layer_type_takes_bare_slots_and_generic_ones_stack_on_it() {
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    let xs = input();
    let plain = net.block.forward_eval(&xs);
    apply_patch_string(
        &mut net,
        &vs,
        r#"block_tag(targets="block"); gain(init=3, targets="block")"#,
    )
    .unwrap();
    assert_eq!(net.block.patch_names(), ["gain", "block_tag"]);
    assert!(net.block.find::<BlockTag>().is_some());
    assert!(net
        .block
        .forward_t(&xs, false)
        .allclose(&(plain * 3), 1e-6, 1e-6, false));

    // The other way round, `block_tag` finds the block patched: refused, all undone.
    let vs = nn::VarStore::new(CPU);
    let mut net = self::net(&vs);
    let vars_before = variables(&vs);
    let error = apply_patch_string(
        &mut net,
        &vs,
        r#"gain(targets="block"); block_tag(targets="block")"#,
    )
    .unwrap_err();
    assert!(
        matches!(&error, PatchError::Tree(TreeError::PatchFailed { rule, path, source })
            if rule == "block_tag" && path == "block"
                && matches!(**source, PatchError::Tree(TreeError::AlreadyPatched { .. }))),
        "{error:?}"
    );
    assert!(!net.block.is_patched());
    assert_eq!(variables(&vs), vars_before);
}

#[test]
fn names_and_the_unknown_patch_message_are_one_sorted_list() {
    let registry = Registry::global().unwrap();
    let names: Vec<&str> = registry.names().collect();
    for name in [
        "block_tag",
        "gain",
        "lora",
        "mostly_frozen_embedding",
        "note",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    // From a string...
    let error = registry.parse(r#"gian(targets="conv")"#).unwrap_err();
    let PatchStringError::UnknownPatch { known, nearest, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(known, &names);
    assert_eq!(nearest.as_deref(), Some("gain"));

    // ...and from a spec built in Rust: the same list.
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    let spec = PatchSpec {
        name: "gian".into(),
        args: Default::default(),
        targets: "conv".into(),
    };
    let error = apply_specs(&mut net, &vs, &[spec]).unwrap_err();
    let PatchError::PatchString(PatchStringError::UnknownPatch { known, nearest, .. }) = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(known, &names);
    assert_eq!(nearest.as_deref(), Some("gain"));
}

#[test]
fn a_patch_registered_without_a_patch_type_is_parsed_but_not_applied() {
    let registry = Registry::global().unwrap();
    let spec = registry
        .parse_one(r#"note(text=hi, targets="head")"#)
        .unwrap();
    assert_eq!(
        spec.config::<NoteConfig>().unwrap(),
        NoteConfig { text: "hi".into() }
    );
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    let error = apply_specs(&mut net, &vs, &[spec]).unwrap_err();
    assert!(
        matches!(&error, PatchError::PatchString(PatchStringError::NotApplicable { patch }) if patch == "note"),
        "{error:?}"
    );
    assert!(!net.head.is_patched());

    assert_eq!(
        registry.slot_types("gain").unwrap(),
        ["Conv<[i64; 2]>", "MyBlock"]
    );
    assert_eq!(registry.slot_types("block_tag").unwrap(), ["MyBlock"]);
    assert_eq!(
        registry.slot_types("lora").unwrap(),
        ["Linear", "Embedding"]
    );
    assert_eq!(
        registry.slot_types("mostly_frozen_embedding").unwrap(),
        ["Embedding"]
    );
    assert!(registry.slot_types("note").unwrap().is_empty());
    assert!(registry.slot_types("nope").is_none());
    assert_eq!(
        GainConfig { init: 2.0 }
            .to_spec("conv")
            .unwrap()
            .to_string(),
        r#"gain(init=2.0, targets="conv")"#
    );
}

/// The patch type's name is the registered one, so a model patched from strings saves
/// and reloads as an adapter (next to a built-in patch).
#[test]
fn a_model_with_user_patches_round_trips_as_an_adapter() {
    let dir = std::env::temp_dir().join(format!("tch-patch-user-patches-{}", std::process::id()));
    let specs = Registry::global()
        .unwrap()
        .parse(r#"gain(init=0.5, targets="{conv,block}"); lora(rank=2, targets="head")"#)
        .unwrap();
    let vs = nn::VarStore::new(CPU);
    let mut net = net(&vs);
    apply_specs(&mut net, &vs, &specs).unwrap();
    tch::no_grad(|| {
        for named in named_tensors(&net) {
            if named.name.ends_with("gain") || named.name.ends_with("lora_b") {
                let _ = named.tensor.shallow_clone().fill_(0.25);
            }
        }
    });
    save_model_adapter(&dir, &net, &specs).unwrap();

    let fresh_vs = nn::VarStore::new(CPU);
    let mut fresh = self::net(&fresh_vs);
    let trained = vs.variables();
    tch::no_grad(|| {
        for (name, mut tensor) in fresh_vs.variables() {
            tensor.copy_(&trained[&name]); // the base's own tensors
        }
    });
    let reports = load_model_adapter(&mut fresh, &fresh_vs, &dir).unwrap();
    assert_eq!(reports.iter().map(|r| r.len()).sum::<usize>(), 3);
    assert_eq!(fresh.block.patch_names(), ["gain"]);
    let xs = input();
    assert!(fresh
        .conv
        .forward_eval(&xs)
        .equal(&net.conv.forward_eval(&xs)));
    assert!(fresh
        .block
        .forward_eval(&xs)
        .equal(&net.block.forward_eval(&xs)));
    let flat = Tensor::randn([2, 8], (Kind::Float, CPU));
    assert!(fresh
        .head
        .forward_eval(&flat)
        .equal(&net.head.forward_eval(&flat)));
    std::fs::remove_dir_all(&dir).unwrap();
}
