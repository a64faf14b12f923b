//! Hyperparameters: the constructor arguments a node reports (`in_features`, `p`,
//! `kernel_size`...), shown by [`print_tree`](super::print_tree) and compared by
//! [`diff`](super::diff), as PyTorch's module repr and PyGlove's symbolic fields show them.
use std::fmt;

/// One hyperparameter's value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HyperValue {
    /// A flag (`bias`).
    Bool(bool),
    /// A count or a size (`in_features`).
    Int(i64),
    /// A rate or a tolerance (`p`, `eps`).
    Float(f64),
    /// A mode (`approximate`).
    Text(String),
    /// A shape, or one value per spatial dimension (`kernel_size`, `normalized_shape`).
    Ints(Vec<i64>),
}

impl fmt::Display for HyperValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HyperValue::Bool(value) => write!(f, "{value}"),
            HyperValue::Int(value) => write!(f, "{value}"),
            HyperValue::Float(value) => write!(f, "{value:?}"),
            HyperValue::Text(value) => write!(f, "{value:?}"),
            HyperValue::Ints(values) => write!(f, "{values:?}"),
        }
    }
}

impl From<bool> for HyperValue {
    fn from(value: bool) -> Self {
        HyperValue::Bool(value)
    }
}

impl From<i64> for HyperValue {
    fn from(value: i64) -> Self {
        HyperValue::Int(value)
    }
}

impl From<f64> for HyperValue {
    fn from(value: f64) -> Self {
        HyperValue::Float(value)
    }
}

impl From<&str> for HyperValue {
    fn from(value: &str) -> Self {
        HyperValue::Text(value.to_owned())
    }
}

impl From<Vec<i64>> for HyperValue {
    fn from(value: Vec<i64>) -> Self {
        HyperValue::Ints(value)
    }
}

/// A layer's hyperparameters, by name, in constructor order.
pub type HyperList = Vec<(&'static str, HyperValue)>;

/// What a layer reports as its constructor arguments. tch's layers and this crate's
/// [`layers`](crate::layers) implement it; a layer of yours does too, then
/// `leaf_layer!(hyperparameters: YourType)` makes the tree show them.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::tree::{HyperValue, Hyperparameters};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 4, 8, Default::default());
/// assert_eq!(linear.hyperparameters(), [
///     ("in_features", HyperValue::Int(4)),
///     ("out_features", HyperValue::Int(8)),
///     ("bias", HyperValue::Bool(true)),
/// ]);
/// ```
pub trait Hyperparameters {
    /// Name and value of each hyperparameter.
    fn hyperparameters(&self) -> HyperList;
}

/// What a leaf without hyperparameters reports.
struct NoHyperparameters;

impl Hyperparameters for NoHyperparameters {
    fn hyperparameters(&self) -> HyperList {
        Vec::new()
    }
}

/// `leaf_layer!(hyperparameters: T)`'s `Layer::hyperparameters`.
pub fn hyper_of<T: Hyperparameters>(layer: &T) -> HyperList {
    layer.hyperparameters()
}

/// `leaf_layer!(T)`'s `Layer::hyperparameters`: none.
pub fn no_hyper<T>(_layer: &T) -> HyperList {
    Vec::new()
}

/// `leaf_layer!(hyperparameters: T)`'s tree leaf reports the layer itself.
pub fn hyper_source<T: Hyperparameters>(layer: &T) -> &dyn Hyperparameters {
    layer
}

/// `leaf_layer!(T)`'s tree leaf reports no hyperparameters.
pub fn no_hyper_source<T>(_layer: &T) -> &'static dyn Hyperparameters {
    &NoHyperparameters
}

/// `name(a=1, b=2)`, or `name` alone when there are none.
pub(crate) fn with_hyperparameters(name: &str, hyperparameters: &[(&str, HyperValue)]) -> String {
    if hyperparameters.is_empty() {
        return name.to_owned();
    }
    let args: Vec<String> = hyperparameters
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{name}({})", args.join(", "))
}
