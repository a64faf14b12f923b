//! Building a layer again from its hyperparameters, freshly initialized: what rebind and
//! clone do. One mechanism for every layer: the [`Rebuild`] trait, implemented here for
//! tch's Linear, Embedding, LayerNorm, convolutions and transposed convolutions, beside
//! the crate's own [`layers`](crate::layers), and by a user for a layer of theirs; the tree
//! finds it from a `&dyn NodeLayer` through a hidden method that
//! [`leaf_layer!(rebuild: T)`](crate::leaf_layer) fills in. An unpatched
//! [`Slot`](crate::Slot) of such a layer is rebuilt as a slot of the rebuilt layer.
use super::hyper::{HyperList, HyperValue, Hyperparameters};
use super::layer::Layer;
use super::node::NodeLayer;
use super::slot::DynLayer;
use crate::Slot;
use std::any::Any;
use std::fmt;
use tch::nn;

/// A layer that rebind and clone can build again from its hyperparameters: tch's Linear,
/// Embedding, LayerNorm, `Conv1D`/`2D`/`3D` and `ConvTranspose1D`/`2D`/`3D`, this crate's
/// [`layers`](crate::layers), and a leaf layer of yours that implements it and is declared
/// with [`leaf_layer!(rebuild: YourType)`](crate::leaf_layer) (which also shows its
/// [`Hyperparameters`] in the tree).
///
/// [`check`](Self::check) is where a layer refuses values it cannot be built with (a size
/// of 0, `groups` that do not divide the channels): rebind and clone call it for every
/// layer they will rebuild before they rebuild any, so a bad value changes nothing. The
/// tree itself only checks that a new value has the old one's kind ([`HyperValue::Int`]
/// for an `Int`...) and that a float is finite. [`rebuild`](Self::rebuild) then makes the
/// layer at `root` (its tensors at `root / <their names>`, the names the layer had, so a
/// deep clone copies them by name). A rebuild that fails all the same is still reported;
/// a rebind then puts back every layer it had rebuilt.
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::tree::{BadHyperparameter, HyperArgs, HyperList, Hyperparameters, ModuleTreeExt, Rebuild};
/// use tch_patch::{layers, leaf_layer, Parameters};
///
/// /// `xs * factor`.
/// #[derive(Debug, Parameters)]
/// struct Scale { #[param(skip)] factor: f64 }
/// impl nn::Module for Scale {
///     fn forward(&self, xs: &Tensor) -> Tensor { xs * self.factor }
/// }
/// impl Hyperparameters for Scale {
///     fn hyperparameters(&self) -> HyperList { vec![("factor", self.factor.into())] }
/// }
/// impl Rebuild for Scale {
///     fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
///         match hyper.float("factor")? {
///             0.0 => Err(BadHyperparameter::new("factor", "a scale of 0 loses the input")),
///             _ => Ok(()),
///         }
///     }
///     fn rebuild(&self, _root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
///         Ok(Scale { factor: hyper.float("factor")? })
///     }
/// }
/// leaf_layer!(rebuild: Scale);
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut model = layers::seq().add(Scale { factor: 2.0 });
/// model.rebind(&vs, &[("0.factor", 0.5.into())])?;
/// assert_eq!(model.nodes()[0].downcast_ref::<Scale>().unwrap().factor, 0.5);
/// let refused = model.rebind(&vs, &[("0.factor", 0.0.into())]).unwrap_err();
/// assert_eq!(refused.to_string(), "cannot set `0.factor` to 0.0: a scale of 0 loses the input");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `tch_patch::tree::Rebuild`",
    label = "`leaf_layer!(rebuild: ...)` needs `Rebuild` (and `Hyperparameters`)",
    note = "implement `Rebuild` for it (`fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter>`), or declare it with `leaf_layer!(hyperparameters: ...)` if rebind and clone need not rebuild it"
)]
pub trait Rebuild: Hyperparameters + Sized {
    /// Whether the layer can be built with `hyper` (its hyperparameters, a rebind's new
    /// values in them): `Err` names the hyperparameter and says why not. Called before any
    /// layer is rebuilt. Accepts everything unless overridden.
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        let _ = hyper;
        Ok(())
    }

    /// The layer built again from `hyper`, its tensors at `root` and freshly initialized.
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter>;
}

/// A hyperparameter a layer refuses (see [`Rebuild`]): its name and why. Rebind reports it
/// as [`TreeError::BadRebindValue`](super::TreeError::BadRebindValue) (with the node's
/// path and the value), clone as
/// [`TreeError::RebuildFailed`](super::TreeError::RebuildFailed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHyperparameter {
    /// The hyperparameter's name in the layer (`in_channels`).
    pub name: String,
    /// Why it is refused, as a phrase (`a size must be at least 1`).
    pub reason: String,
}

impl BadHyperparameter {
    /// `name` refused for `reason`.
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        BadHyperparameter {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BadHyperparameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.name, self.reason)
    }
}

impl std::error::Error for BadHyperparameter {}

/// A layer's hyperparameters as [`Rebuild`] reads them: each getter gives the value of
/// one kind, or a [`BadHyperparameter`] (missing, or of another kind) for `?`.
///
/// ```
/// use tch_patch::tree::{HyperArgs, HyperValue};
///
/// let list = vec![("in_features", HyperValue::Int(4)), ("bias", HyperValue::Bool(true))];
/// let hyper = HyperArgs::new(&list);
/// assert_eq!(hyper.size("in_features"), Ok(4));
/// assert_eq!(hyper.flag("bias"), Ok(true));
/// assert_eq!(hyper.flag_or("sparse", false), Ok(false)); // absent: the default
/// assert!(hyper.float("bias").is_err()); // a flag, not a float
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HyperArgs<'h> {
    list: &'h [(&'static str, HyperValue)],
}

impl<'h> HyperArgs<'h> {
    /// The hyperparameters `list` (a [`HyperList`]).
    pub fn new(list: &'h [(&'static str, HyperValue)]) -> Self {
        HyperArgs { list }
    }

    /// Every hyperparameter, in order.
    pub fn list(&self) -> &'h [(&'static str, HyperValue)] {
        self.list
    }

    /// The value of `name`, if the list has it.
    pub fn get(&self, name: &str) -> Option<&'h HyperValue> {
        self.list.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn kind<T>(
        &self,
        name: &str,
        kind: &str,
        read: impl FnOnce(&'h HyperValue) -> Option<T>,
    ) -> Result<T, BadHyperparameter> {
        match self.get(name) {
            None => Err(BadHyperparameter::new(name, "it is missing")),
            Some(value) => read(value)
                .ok_or_else(|| BadHyperparameter::new(name, format!("it must be {kind}"))),
        }
    }

    /// An integer.
    pub fn int(&self, name: &str) -> Result<i64, BadHyperparameter> {
        self.kind(name, "an integer", |v| match v {
            HyperValue::Int(v) => Some(*v),
            _ => None,
        })
    }

    /// A size: an integer of at least 1.
    pub fn size(&self, name: &str) -> Result<i64, BadHyperparameter> {
        let value = self.int(name)?;
        if value < 1 {
            return Err(BadHyperparameter::new(name, "a size must be at least 1"));
        }
        Ok(value)
    }

    /// A float.
    pub fn float(&self, name: &str) -> Result<f64, BadHyperparameter> {
        self.kind(name, "a float", |v| match v {
            HyperValue::Float(v) => Some(*v),
            _ => None,
        })
    }

    /// A flag.
    pub fn flag(&self, name: &str) -> Result<bool, BadHyperparameter> {
        self.kind(name, "a flag", |v| match v {
            HyperValue::Bool(v) => Some(*v),
            _ => None,
        })
    }

    /// A flag, or `default` when the list does not have it (a flag shown only when set).
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, BadHyperparameter> {
        match self.get(name) {
            None => Ok(default),
            Some(_) => self.flag(name),
        }
    }

    /// An integer, or `default` when the list does not have it.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, BadHyperparameter> {
        match self.get(name) {
            None => Ok(default),
            Some(_) => self.int(name),
        }
    }

    /// A text.
    pub fn text(&self, name: &str) -> Result<&'h str, BadHyperparameter> {
        self.kind(name, "a text", |v| match v {
            HyperValue::Text(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// A list of integers.
    pub fn ints(&self, name: &str) -> Result<&'h [i64], BadHyperparameter> {
        self.kind(name, "a list of integers", |v| match v {
            HyperValue::Ints(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    /// `N` integers, each at least `min` (one value per spatial dimension).
    fn per_dim<const N: usize>(&self, name: &str, min: i64) -> Result<[i64; N], BadHyperparameter> {
        let values = self.ints(name)?;
        let array: [i64; N] = values.try_into().map_err(|_| {
            BadHyperparameter::new(name, format!("it must have {N} values, one per dimension"))
        })?;
        if array.iter().any(|v| *v < min) {
            return Err(BadHyperparameter::new(
                name,
                format!("each value must be at least {min}"),
            ));
        }
        Ok(array)
    }
}

/// A rebuildable layer behind `&dyn`: what [`ModuleTree`](crate::ModuleTree)'s hidden
/// hook gives for a bare layer or an unpatched slot. Not public API.
#[doc(hidden)]
pub trait DynRebuild {
    /// [`Rebuild::check`].
    fn check_dyn(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter>;
    /// [`Rebuild::rebuild`], boxed.
    fn rebuild_dyn(
        &self,
        root: &nn::Path,
        hyper: &HyperArgs<'_>,
    ) -> Result<Box<dyn NodeLayer>, BadHyperparameter>;
}

impl<T: Rebuild + NodeLayer> DynRebuild for T {
    fn check_dyn(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        self.check(hyper)
    }
    fn rebuild_dyn(
        &self,
        root: &nn::Path,
        hyper: &HyperArgs<'_>,
    ) -> Result<Box<dyn NodeLayer>, BadHyperparameter> {
        Ok(Box::new(self.rebuild(root, hyper)?))
    }
}

/// A rebuildable root layer of a slot, rebuilt as what a `Slot<T>` holds. Not public API.
#[doc(hidden)]
pub trait RebuildRoot<T: 'static> {
    /// [`Rebuild::check`].
    fn check_root(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter>;
    /// [`Rebuild::rebuild`], as a slot's content.
    fn rebuild_root(
        &self,
        root: &nn::Path,
        hyper: &HyperArgs<'_>,
    ) -> Result<DynLayer<T>, BadHyperparameter>;
}

impl<T: Rebuild + Layer<Root = T>> RebuildRoot<T> for T {
    fn check_root(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        self.check(hyper)
    }
    fn rebuild_root(
        &self,
        root: &nn::Path,
        hyper: &HyperArgs<'_>,
    ) -> Result<DynLayer<T>, BadHyperparameter> {
        Ok(self.rebuild(root, hyper)?.into_content())
    }
}

/// An unpatched slot rebuilds as a slot of its rebuilt layer.
impl<T: crate::Parameters + Any + Send> DynRebuild for Slot<T> {
    fn check_dyn(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        match self.content().root_rebuilder() {
            Some(root) => root.check_root(hyper),
            None => Err(BadHyperparameter::new("", "the slot holds patches")),
        }
    }
    fn rebuild_dyn(
        &self,
        root: &nn::Path,
        hyper: &HyperArgs<'_>,
    ) -> Result<Box<dyn NodeLayer>, BadHyperparameter> {
        match self.content().root_rebuilder() {
            Some(rebuilder) => Ok(Box::new(Slot::from_content(
                rebuilder.rebuild_root(root, hyper)?,
            ))),
            None => Err(BadHyperparameter::new("", "the slot holds patches")),
        }
    }
}

/// `leaf_layer!(rebuild: T)`'s `ModuleTree` hook.
pub fn rebuilder_of<T: Rebuild + NodeLayer>(layer: &T) -> Option<&dyn DynRebuild> {
    Some(layer)
}

/// `leaf_layer!(T)`'s `ModuleTree` hook: not rebuilt.
pub fn no_rebuilder<T>(_layer: &T) -> Option<&dyn DynRebuild> {
    None
}

/// `leaf_layer!(rebuild: T)`'s `Layer` hook.
pub fn root_rebuilder_of<T: Rebuild + Layer<Root = T>>(layer: &T) -> Option<&dyn RebuildRoot<T>> {
    Some(layer)
}

/// `leaf_layer!(T)`'s `Layer` hook: not rebuilt.
pub fn no_root_rebuilder<T: 'static>(_layer: &T) -> Option<&dyn RebuildRoot<T>> {
    None
}

/// What rebuilds `layer`, if anything does.
pub(super) fn rebuilder(layer: &dyn NodeLayer) -> Option<&dyn DynRebuild> {
    layer.__rebuilder()
}

/// The patches of `layer` when it is a slot holding some, outermost first.
pub(super) fn slot_patches(layer: &dyn NodeLayer) -> Option<Vec<String>> {
    let nodes = super::query::Nodes::of(layer);
    let first = nodes.iter().next()?;
    match first.node {
        super::visit::TreeNode::Slot(slot) if slot.is_patched() && first.depth == 0 => {
            Some(slot.patch_names().into_iter().map(str::to_owned).collect())
        }
        _ => None,
    }
}

impl Rebuild for nn::Linear {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        hyper.size("in_features")?;
        hyper.size("out_features")?;
        hyper.flag("bias")?;
        Ok(())
    }
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        self.check(hyper)?;
        let config = nn::LinearConfig {
            bias: hyper.flag("bias")?,
            ..Default::default()
        };
        Ok(nn::linear(
            root,
            hyper.size("in_features")?,
            hyper.size("out_features")?,
            config,
        ))
    }
}

impl Rebuild for nn::Embedding {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        let count = hyper.size("num_embeddings")?;
        hyper.size("embedding_dim")?;
        let index = hyper.int_or("padding_idx", -1)?;
        if hyper.get("padding_idx").is_some() && !(0..count).contains(&index) {
            return Err(BadHyperparameter::new(
                "padding_idx",
                format!("a padding index must be in [0, num_embeddings = {count})"),
            ));
        }
        hyper.flag_or("sparse", false)?;
        hyper.flag_or("scale_grad_by_freq", false)?;
        Ok(())
    }
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        self.check(hyper)?;
        let config = nn::EmbeddingConfig {
            padding_idx: hyper.int_or("padding_idx", -1)?,
            sparse: hyper.flag_or("sparse", false)?,
            scale_grad_by_freq: hyper.flag_or("scale_grad_by_freq", false)?,
            ..Default::default()
        };
        Ok(nn::embedding(
            root,
            hyper.size("num_embeddings")?,
            hyper.size("embedding_dim")?,
            config,
        ))
    }
}

impl Rebuild for nn::LayerNorm {
    fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
        let shape = hyper.ints("normalized_shape")?;
        if shape.len() != self.normalized_shape.len() || shape.iter().any(|v| *v < 1) {
            return Err(BadHyperparameter::new(
                "normalized_shape",
                "a shape keeps its rank and has sizes of at least 1",
            ));
        }
        if hyper.float("eps")? <= 0.0 {
            return Err(BadHyperparameter::new("eps", "it must be above 0"));
        }
        hyper.flag("elementwise_affine")?;
        Ok(())
    }
    fn rebuild(&self, root: &nn::Path, hyper: &HyperArgs<'_>) -> Result<Self, BadHyperparameter> {
        self.check(hyper)?;
        let config = nn::LayerNormConfig {
            eps: hyper.float("eps")?,
            elementwise_affine: hyper.flag("elementwise_affine")?,
            ..Default::default()
        };
        Ok(nn::layer_norm(
            root,
            hyper.ints("normalized_shape")?.to_vec(),
            config,
        ))
    }
}

/// tch's padding modes by PyTorch's names.
fn padding_mode(name: &str) -> Option<nn::PaddingMode> {
    Some(match name {
        "zeros" => nn::PaddingMode::Zeros,
        "reflect" => nn::PaddingMode::Reflect,
        "replicate" => nn::PaddingMode::Replicate,
        "circular" => nn::PaddingMode::Circular,
        _ => return None,
    })
}

/// The hyperparameter of `names` whose value differs from `old`'s (the one a rebind
/// changed), else the last of them.
fn changed_of(old: &HyperList, hyper: &HyperArgs<'_>, names: &[&'static str]) -> &'static str {
    names
        .iter()
        .copied()
        .find(|name| old.iter().find(|(n, _)| n == name).map(|(_, v)| v) != hyper.get(name))
        .unwrap_or(names[names.len() - 1])
}

/// `groups` must divide `channels` (both sizes).
fn check_groups(
    old: &HyperList,
    hyper: &HyperArgs<'_>,
    channels: &'static str,
) -> Result<(), BadHyperparameter> {
    let groups = hyper.size("groups")?;
    let count = hyper.size(channels)?;
    if count % groups != 0 {
        return Err(BadHyperparameter::new(
            changed_of(old, hyper, &[channels, "groups"]),
            format!("`groups` = {groups} must divide `{channels}` = {count}"),
        ));
    }
    Ok(())
}

/// What a convolution of `N` dimensions is built from.
struct ConvArgs<const N: usize> {
    in_channels: i64,
    out_channels: i64,
    kernel_size: [i64; N],
    config: nn::ConvConfigND<[i64; N]>,
}

fn conv_args<const N: usize>(
    old: &HyperList,
    hyper: &HyperArgs<'_>,
) -> Result<ConvArgs<N>, BadHyperparameter> {
    check_groups(old, hyper, "in_channels")?;
    check_groups(old, hyper, "out_channels")?;
    let mode = hyper.text("padding_mode")?;
    let padding_mode = padding_mode(mode).ok_or_else(|| {
        BadHyperparameter::new(
            "padding_mode",
            "it is \"zeros\", \"reflect\", \"replicate\" or \"circular\"",
        )
    })?;
    Ok(ConvArgs {
        in_channels: hyper.size("in_channels")?,
        out_channels: hyper.size("out_channels")?,
        kernel_size: hyper.per_dim("kernel_size", 1)?,
        config: nn::ConvConfigND {
            stride: hyper.per_dim("stride", 1)?,
            padding: hyper.per_dim("padding", 0)?,
            dilation: hyper.per_dim("dilation", 1)?,
            groups: hyper.size("groups")?,
            bias: hyper.flag("bias")?,
            ws_init: nn::init::DEFAULT_KAIMING_UNIFORM,
            bs_init: nn::Init::Const(0.),
            padding_mode,
        },
    })
}

macro_rules! rebuild_conv {
    ($($n:literal => $ty:ty),*) => {$(
        impl Rebuild for $ty {
            fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
                conv_args::<$n>(&Hyperparameters::hyperparameters(self), hyper).map(drop)
            }
            fn rebuild(
                &self,
                root: &nn::Path,
                hyper: &HyperArgs<'_>,
            ) -> Result<Self, BadHyperparameter> {
                let args = conv_args::<$n>(&Hyperparameters::hyperparameters(self), hyper)?;
                Ok(nn::conv(root, args.in_channels, args.out_channels, args.kernel_size, args.config))
            }
        }
    )*};
}

rebuild_conv!(1 => nn::Conv1D, 2 => nn::Conv2D, 3 => nn::Conv3D);

/// One value for every dimension of `name` (tch builds a transposed convolution from one
/// value per hyperparameter), at least `min`.
fn uniform(hyper: &HyperArgs<'_>, name: &str, min: i64) -> Result<i64, BadHyperparameter> {
    let values = hyper.ints(name)?;
    match values {
        [first, rest @ ..] if rest.iter().all(|v| v == first) && *first >= min => Ok(*first),
        [first, rest @ ..] if rest.iter().all(|v| v == first) => Err(BadHyperparameter::new(
            name,
            format!("each value must be at least {min}"),
        )),
        _ => Err(BadHyperparameter::new(
            name,
            "tch builds a transposed convolution with the same value for every dimension",
        )),
    }
}

fn conv_transpose_args<const N: usize>(
    old: &HyperList,
    hyper: &HyperArgs<'_>,
) -> Result<(i64, i64, i64, nn::ConvTransposeConfig), BadHyperparameter> {
    check_groups(old, hyper, "in_channels")?;
    check_groups(old, hyper, "out_channels")?;
    let rank = |name: &'static str| -> Result<(), BadHyperparameter> {
        match hyper.ints(name)?.len() {
            len if len == N => Ok(()),
            _ => Err(BadHyperparameter::new(
                name,
                format!("it must have {N} values, one per dimension"),
            )),
        }
    };
    for name in [
        "kernel_size",
        "stride",
        "padding",
        "output_padding",
        "dilation",
    ] {
        rank(name)?;
    }
    let config = nn::ConvTransposeConfig {
        stride: uniform(hyper, "stride", 1)?,
        padding: uniform(hyper, "padding", 0)?,
        output_padding: uniform(hyper, "output_padding", 0)?,
        groups: hyper.size("groups")?,
        bias: hyper.flag("bias")?,
        dilation: uniform(hyper, "dilation", 1)?,
        ..Default::default()
    };
    Ok((
        hyper.size("in_channels")?,
        hyper.size("out_channels")?,
        uniform(hyper, "kernel_size", 1)?,
        config,
    ))
}

macro_rules! rebuild_conv_transpose {
    ($($n:literal => $ty:ty, $make:path);*) => {$(
        impl Rebuild for $ty {
            fn check(&self, hyper: &HyperArgs<'_>) -> Result<(), BadHyperparameter> {
                conv_transpose_args::<$n>(&Hyperparameters::hyperparameters(self), hyper).map(drop)
            }
            fn rebuild(
                &self,
                root: &nn::Path,
                hyper: &HyperArgs<'_>,
            ) -> Result<Self, BadHyperparameter> {
                let (i, o, k, config) = conv_transpose_args::<$n>(&Hyperparameters::hyperparameters(self), hyper)?;
                Ok($make(root, i, o, k, config))
            }
        }
    )*};
}

rebuild_conv_transpose!(
    1 => nn::ConvTranspose1D, nn::conv_transpose1d;
    2 => nn::ConvTranspose2D, nn::conv_transpose2d;
    3 => nn::ConvTranspose3D, nn::conv_transpose3d
);
