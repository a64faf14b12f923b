//! Nodes, sequences and rebind: every refusal leaves every tensor, every VarStore entry and
//! what every node holds as it was.
use crate::case;
use crate::fixture::Fixture;
use crate::Case;
use tch::{nn, Device};
use tch_patch::tree::{
    BadHyperparameter, CloneMode, Glob, HyperArgs, HyperList, HyperValue, Hyperparameters,
    ModuleTreeExt, Node, NodeLayer, Rebuild, TreeError,
};
use tch_patch::Slot;
use tch_patch::{layers, PatchError};

fn rebind(fx: &mut Fixture, changes: &[(&str, HyperValue)]) -> Result<(), TreeError> {
    let Fixture { vs, seq, .. } = fx;
    let seq = seq
        .as_mut()
        .expect("the case's setup made the symbolic model");
    seq.rebind(vs, changes).map(drop)
}

fn gelu(_: &str, _: &dyn std::any::Any) -> tch_patch::Result<Box<dyn NodeLayer>> {
    Ok(Box::new(layers::Gelu::default()))
}

fn glob(text: &str) -> Glob {
    Glob::new(text).expect("a valid glob")
}

fn refuse_second(count: &mut usize) -> tch_patch::Result<()> {
    *count += 1;
    match *count {
        1 => Ok(()),
        _ => Err(TreeError::NothingToUndo {
            holds: "a test's refusal".into(),
        }
        .into()),
    }
}

/// Two convolutions after the body's last layer: `body.6` = `Conv1d(4, 6, 3, groups=2)`,
/// `body.7` = `Conv1d(6, 2, 1)`, and a user layer `body.8` (a [`Gain`] of 2).
fn with_convs(fx: &mut Fixture) {
    let body = fx.vs.root() / "seq" / "body";
    let grouped = nn::ConvConfig {
        groups: 2,
        ..Default::default()
    };
    let first = nn::conv1d(&body / 6, 4, 6, 3, grouped);
    let second = nn::conv1d(&body / 7, 6, 2, 1, Default::default());
    let gain = Gain {
        gain: (&body / 8).var("gain", &[2], nn::Init::Const(1.0)),
    };
    let seq = fx.with_seq();
    seq.body.push(first);
    seq.body.push(second);
    seq.body.push(gain);
}

/// A patch with nothing of its own.
#[tch_patch::patch(from = L, module_t)]
struct Tagged<L: tch_patch::Layer> {}

/// The fixture's symbolic model with a `Tagged` linear slot (a patch) as `body.6`.
fn with_tagged_slot(fx: &mut Fixture) {
    let body = fx.vs.root() / "seq" / "body";
    let tagged = Tagged {
        base: nn::linear(&body / 6, 4, 4, Default::default()),
    };
    fx.with_seq().body.push(Slot::new(tagged));
}

/// A user layer: `xs * gain`, `gain` of `[dim]`. Its check refuses a `dim` above 64; its
/// rebuild refuses 13 although its check accepts it (its two halves disagree).
#[derive(Debug, tch_patch::Parameters)]
struct Gain {
    gain: tch::Tensor,
}

impl nn::Module for Gain {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        xs * &self.gain
    }
}

impl Hyperparameters for Gain {
    fn hyperparameters(&self) -> HyperList {
        vec![("dim", self.gain.size()[0].into())]
    }
}

impl Rebuild for Gain {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        match hyper.size("dim")? {
            dim if dim > 64 => Err(BadHyperparameter::new("dim", "at most 64")),
            _ => Ok(()),
        }
    }
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        match hyper.size("dim")? {
            13 => Err(BadHyperparameter::new("dim", "unlucky")),
            dim => Ok(Gain {
                gain: root.var("gain", &[dim], nn::Init::Const(1.0)),
            }),
        }
    }
}

tch_patch::leaf_layer!(rebuild: Gain);

/// Clones the fixture's body into its own VarStore under `clone`: a refusal must add
/// nothing there.
fn clone_body(fx: &mut Fixture) -> Result<(), PatchError> {
    let Fixture { vs, seq, .. } = fx;
    let seq = seq
        .as_ref()
        .expect("the case's setup made the symbolic model");
    seq.body
        .clone_into(&(vs.root() / "clone"), CloneMode::Deep)
        .map(drop)
}

macro_rules! tree_error {
    ($variant:ident) => {
        PatchError::Tree(TreeError::$variant { .. })
    };
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "rebind: out_features without the next in_features",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.0.out_features", 6.into())]),
            PatchError::Tree(TreeError::RebindMismatch { gives, takes, .. })
                if gives == "body.0.out_features" && takes == "body.2.0.in_features"
        ),
        case!(
            "rebind: the last layer of a nested sequence against the layer after it",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.2.0.out_features", 5.into())]),
            PatchError::Tree(TreeError::RebindMismatch { gives, takes, .. })
                if gives == "body.2.0.out_features" && takes == "body.3.normalized_shape"
        ),
        case!(
            "rebind: an embedding dimension of 0",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("emb.embedding_dim", 0.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a size of 0",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.0.in_features", 0.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a negative size",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.5.out_features", (-3).into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a bool for a size",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.0.in_features", true.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a dropout probability above 1",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.2.1.p", 1.5.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a NaN probability",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.2.1.p", f64::NAN.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: an infinite eps",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.3.eps", f64::INFINITY.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a normalized shape of another rank",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.3.normalized_shape", vec![2, 4].into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: an unknown GELU approximation",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.4.approximate", "fast".into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a hyperparameter the layer does not have",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.0.in_feature", 3.into())]),
            PatchError::Tree(TreeError::UnknownHyperparameter { name, known })
                if name == "body.0.in_feature" && known.len() == 3
        ),
        case!(
            "rebind: a layer without hyperparameters",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.1.inplace", true.into())]),
            PatchError::Tree(TreeError::UnknownHyperparameter { name, known })
                if name == "body.1.inplace" && known.is_empty()
        ),
        case!(
            "rebind: a closure",
            setup: |fx| fx.with_seq().body.push(layers::Func::new(|xs| xs * 2.0)),
            |fx| rebind(fx, &[("body.6.scale", 2.into())]),
            PatchError::Tree(TreeError::CannotRebind { layer, .. }) if layer == "Func"
        ),
        case!(
            "rebind: one hyperparameter twice",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.0.bias", false.into()), ("body.0.bias", true.into())]),
            tree_error!(RebindTwice)
        ),
        case!(
            "rebind: a path that is no node",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.9.in_features", 2.into())]),
            PatchError::Tree(TreeError::NoSuchNode { path, .. }) if path == "body.9"
        ),
        case!(
            "rebind: a sequence itself",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.2.in_features", 2.into())]),
            PatchError::Tree(TreeError::CannotRebind { layer, .. }) if layer == "Sequential"
        ),
        case!(
            "rebind: a good change next to a bad one changes neither",
            setup: |fx| fx.with_seq(),
            |fx| rebind(fx, &[("body.2.1.p", 0.5.into()), ("body.5.out_features", 0.into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a layer whose tensors the VarStore does not hold",
            setup: |fx| {
                let other = nn::VarStore::new(Device::Cpu);
                fx.with_seq().body.nodes_mut()[0].replace(nn::linear(other.root(), 4, 8, Default::default()));
            },
            |fx| rebind(fx, &[("body.0.bias", false.into())]),
            tree_error!(NotInVarStore)
        ),
        case!(
            "rebind: conv out_channels without the next in_channels",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.6.out_channels", 8.into())]),
            PatchError::Tree(TreeError::RebindMismatch { gives, takes, .. })
                if gives == "body.6.out_channels" && takes == "body.7.in_channels"
        ),
        case!(
            "rebind: conv in_channels that groups do not divide",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.6.in_channels", 5.into())]),
            PatchError::Tree(TreeError::BadRebindValue { name, .. }) if name == "body.6.in_channels"
        ),
        case!(
            "rebind: conv groups that do not divide the channels",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.6.groups", 4.into())]),
            PatchError::Tree(TreeError::BadRebindValue { name, .. }) if name == "body.6.groups"
        ),
        case!(
            "rebind: a conv kernel size of another rank",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.6.kernel_size", vec![3, 3].into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a negative conv padding",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.7.padding", vec![-1].into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: an unknown conv padding mode",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.7.padding_mode", "mirror".into())]),
            tree_error!(BadRebindValue)
        ),
        case!(
            "rebind: a user layer's check refuses the value",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.8.dim", 65.into())]),
            PatchError::Tree(TreeError::BadRebindValue { name, reason, .. })
                if name == "body.8.dim" && reason == "at most 64"
        ),
        case!(
            "rebind: a user layer's rebuild fails after its check passed, the layers rebuilt before are put back",
            setup: |fx| with_convs(fx),
            |fx| rebind(fx, &[("body.7.out_channels", 13.into()), ("body.8.dim", 13.into())]),
            PatchError::Tree(TreeError::RebuildFailed { path, name, .. })
                if path == "body.8" && name == "dim"
        ),
        case!(
            "rebind: a slot holding patches",
            setup: |fx| with_tagged_slot(fx),
            |fx| rebind(fx, &[("body.6.in_features", 2.into())]),
            PatchError::Tree(TreeError::PatchedSlot { path, patches, .. })
                if path == "body.6" && patches == &["Tagged"]
        ),
        case!(
            "clone: a slot holding patches adds nothing",
            setup: |fx| with_tagged_slot(fx),
            |fx| clone_body(fx),
            PatchError::Tree(TreeError::PatchedSlot { action: "clone", path, .. }) if path == "6"
        ),
        case!(
            "clone: a closure adds nothing",
            setup: |fx| fx.with_seq().body.push(layers::Func::new(|xs| xs * 2.0)),
            |fx| clone_body(fx),
            PatchError::Tree(TreeError::CannotClone { path, layer }) if path == "6" && layer == "Func"
        ),
        case!(
            "clone: a user layer whose check refuses its own hyperparameters adds nothing",
            setup: |fx| {
                let gain = (fx.vs.root() / "seq" / "body" / 6).var("gain", &[65], nn::Init::Const(1.0));
                fx.with_seq().body.push(Gain { gain });
            },
            |fx| clone_body(fx),
            PatchError::Tree(TreeError::RebuildFailed { path, reason, .. })
                if path == "6" && reason == "at most 64"
        ),
        case!(
            "clone: a name the VarStore holds already adds nothing",
            setup: |fx| {
                let _taken = (fx.vs.root() / "clone" / 0).zeros("weight", &[1]);
                fx.with_seq();
            },
            |fx| clone_body(fx),
            PatchError::NameTaken { name } if name == "clone.0.weight"
        ),
        case!(
            "replace_nodes: no node holds the type",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().replace_nodes::<layers::Tanh, _>(&glob("**"), |p, l| gelu(p, l)),
            tree_error!(NoNodeMatch)
        ),
        case!(
            "replace_nodes: the glob matches no node of the type",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().replace_nodes::<layers::Relu, _>(&glob("head.*"), |p, l| gelu(p, l)),
            PatchError::Tree(TreeError::NoNodeMatch { nodes, .. }) if nodes.len() == 9
        ),
        case!(
            "replace_nodes: the second replacement fails, the first is not made",
            setup: |fx| fx.with_seq(),
            |fx| {
                let mut count = 0;
                fx.seq().replace_nodes::<nn::Linear, _>(&glob("**"), |p, l| {
                    refuse_second(&mut count)?;
                    gelu(p, l)
                })
            },
            tree_error!(NothingToUndo)
        ),
        case!(
            "wrap_nodes: the second wrap fails, the first is not made",
            setup: |fx| fx.with_seq(),
            |fx| {
                let mut count = 0;
                fx.seq().wrap_nodes::<nn::Linear, _>(&glob("**"), |_, _| {
                    refuse_second(&mut count)?;
                    Ok((vec![Node::new(layers::dropout(0.2))], vec![]))
                })
            },
            tree_error!(NothingToUndo)
        ),
        case!(
            "wrap_nodes: no node holds the type",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().wrap_nodes::<layers::PRelu, _>(&glob("**"), |_, _| Ok((vec![], vec![]))),
            tree_error!(NoNodeMatch)
        ),
        case!(
            "node_mut: a path that is no node",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().node_mut("body.2.7").map(drop),
            PatchError::Tree(TreeError::NoSuchNode { known, .. }) if known.contains(&"body.2.1".to_owned())
        ),
        case!(
            "undo: a node that was never changed",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().body.nodes_mut()[1].undo(),
            tree_error!(NothingToUndo)
        ),
        case!(
            "Sequential::insert: past the end",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().body.insert(7, layers::Relu),
            PatchError::Tree(TreeError::IndexOutOfRange { index: 7, len: 6 })
        ),
        case!(
            "Sequential::remove: past the end",
            setup: |fx| fx.with_seq(),
            |fx| fx.seq().body.remove(6).map(drop),
            PatchError::Tree(TreeError::IndexOutOfRange { index: 6, len: 6 })
        ),
    ]
}
