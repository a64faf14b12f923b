//! [`diff`]: what differs between two models' trees.
use super::hyper::HyperValue;
use super::print::module_title;
use super::query::{NodeRef, Nodes};
use super::visit::{ModuleTree, TreeNode};
use crate::names::shape_text;
use crate::params::{join_name, named_tensors_with_prefix, TensorRole};
use std::collections::HashMap;
use std::fmt;

/// One difference between two module trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node only the left model has (its descendants are not listed).
    OnlyLeft {
        /// The node's path.
        path: String,
        /// Its kind and type, e.g. `Block` or `Lora(Linear)`.
        node: String,
    },
    /// A node only the right model has (its descendants are not listed).
    OnlyRight {
        /// The node's path.
        path: String,
        /// Its kind and type.
        node: String,
    },
    /// The node at one path is of another kind or type on each side.
    Node {
        /// The node's path.
        path: String,
        /// The left node.
        left: String,
        /// The right node.
        right: String,
    },
    /// Slots at one path whose patch stacks differ.
    Patches {
        /// The slot's path.
        path: String,
        /// The left slot's patch names, outermost first.
        left: Vec<&'static str>,
        /// The right slot's patch names.
        right: Vec<&'static str>,
    },
    /// A tensor with another shape on each side.
    Shape {
        /// The tensor's full name.
        name: String,
        /// Its left shape.
        left: Vec<i64>,
        /// Its right shape.
        right: Vec<i64>,
    },
    /// A tensor only the left node has.
    TensorOnlyLeft {
        /// The tensor's full name.
        name: String,
    },
    /// A tensor only the right node has.
    TensorOnlyRight {
        /// The tensor's full name.
        name: String,
    },
    /// A hyperparameter of the node at one path with another value on each side (`None`:
    /// that side does not report it).
    Hyperparameter {
        /// The hyperparameter's path: the node's path and its name, e.g. `0.in_features`.
        name: String,
        /// Its left value, as printed.
        left: Option<String>,
        /// Its right value, as printed.
        right: Option<String>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::OnlyLeft { path, node } => write!(f, "- {path}: {node}"),
            Change::OnlyRight { path, node } => write!(f, "+ {path}: {node}"),
            Change::Node { path, left, right } => write!(f, "~ {path}: {left} -> {right}"),
            Change::Patches { path, left, right } => {
                write!(
                    f,
                    "~ {path}: patches [{}] -> [{}]",
                    left.join(", "),
                    right.join(", ")
                )
            }
            Change::Shape { name, left, right } => {
                write!(
                    f,
                    "~ {name}: shape {} -> {}",
                    shape_text(left),
                    shape_text(right)
                )
            }
            Change::TensorOnlyLeft { name } => write!(f, "- {name}"),
            Change::TensorOnlyRight { name } => write!(f, "+ {name}"),
            Change::Hyperparameter { name, left, right } => {
                let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
                write!(f, "~ {name}: {} -> {}", text(left), text(right))
            }
        }
    }
}

/// The differences between two module trees, in the left model's order, then the right's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// Every difference found.
    pub changes: Vec<Change>,
}

impl TreeDiff {
    /// Whether the two trees have the same nodes, patches and tensor shapes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for TreeDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

/// What differs between two models' trees: nodes present on one side only, nodes of
/// another type, hyperparameters with another value (`out.out_features: 2 -> 3`), slots
/// whose patch stacks differ, and tensors whose shapes differ or that one side lacks.
/// Tensor values are not compared. Where patch stacks differ, only the layers'
/// own tensors are compared (the patches' tensors follow from the stacks).
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::{tree::diff, patch, Layer, ModuleTree, Slot};
///
/// #[patch(from = L, module_t)]
/// struct Marked<L: Layer> {}
///
/// #[derive(ModuleTree)]
/// struct Head { out: Slot<nn::Linear> }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let a = Head { out: Slot::new(nn::linear(vs.root(), 4, 2, Default::default())) };
/// let mut b = Head { out: Slot::new(nn::linear(vs.root(), 4, 3, Default::default())) };
/// b.out.replace_with(|base| Ok(Box::new(Marked { base })))?;
/// assert_eq!(diff(&a, &b).to_string(), "\
/// ~ out.out_features: 2 -> 3
/// ~ out: patches [] -> [Marked]
/// ~ out.weight: shape [2, 4] -> [3, 4]
/// ~ out.bias: shape [2] -> [3]
/// ");
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn diff<A: ModuleTree + ?Sized, B: ModuleTree + ?Sized>(left: &A, right: &B) -> TreeDiff {
    let (left, right) = (Nodes::of(left), Nodes::of(right));
    let right_by_path: HashMap<&str, NodeRef<'_>> =
        right.iter().map(|node| (node.path, node)).collect();
    let left_paths: HashMap<&str, ()> = left.iter().map(|node| (node.path, ())).collect();
    let mut changes = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for node in left.iter() {
        match right_by_path.get(node.path) {
            Some(other) => compare(node, *other, &mut changes),
            None if !under_any(node.path, &missing) => {
                missing.push(node.path.to_owned());
                changes.push(Change::OnlyLeft {
                    path: node.path.to_owned(),
                    node: title(&node),
                });
            }
            None => {}
        }
    }
    missing.clear();
    for node in right.iter() {
        if !left_paths.contains_key(node.path) && !under_any(node.path, &missing) {
            missing.push(node.path.to_owned());
            changes.push(Change::OnlyRight {
                path: node.path.to_owned(),
                node: title(&node),
            });
        }
    }
    TreeDiff { changes }
}

fn under_any(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|root| {
        root.is_empty()
            || path
                .strip_prefix(root.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

fn title(node: &NodeRef<'_>) -> String {
    module_title(node.node).unwrap_or_else(|| match node.node {
        TreeNode::Tensor {
            role: TensorRole::Buffer,
            ..
        } => "Tensor (buffer)".to_owned(),
        _ => "Tensor".to_owned(),
    })
}

fn compare(left: NodeRef<'_>, right: NodeRef<'_>, changes: &mut Vec<Change>) {
    let path = left.path.to_owned();
    let (left_tensors, right_tensors) = match (left.node, right.node) {
        (TreeNode::Slot(a), TreeNode::Slot(b)) if a.root_type_id() == b.root_type_id() => {
            compare_hyperparameters(&path, &a.hyperparameters(), &b.hyperparameters(), changes);
            let (pa, pb) = (a.patch_names(), b.patch_names());
            if pa == pb {
                (a.parameters(), b.parameters())
            } else {
                changes.push(Change::Patches {
                    path: path.clone(),
                    left: pa,
                    right: pb,
                });
                (a.root_parameters(), b.root_parameters())
            }
        }
        (
            TreeNode::Leaf {
                type_name: ta,
                module: a,
                hyperparameters: ha,
                ..
            },
            TreeNode::Leaf {
                type_name: tb,
                module: b,
                hyperparameters: hb,
                ..
            },
        ) if ta == tb => {
            let (ha, hb) = (ha.hyperparameters(), hb.hyperparameters());
            compare_hyperparameters(&path, &ha, &hb, changes);
            (a, b)
        }
        (TreeNode::Branch { type_name: ta }, TreeNode::Branch { type_name: tb }) if ta == tb => {
            return
        }
        (
            TreeNode::Tensor {
                tensor: a,
                role: ra,
            },
            TreeNode::Tensor {
                tensor: b,
                role: rb,
            },
        ) if ra == rb => {
            if a.size() != b.size() {
                changes.push(Change::Shape {
                    name: path,
                    left: a.size(),
                    right: b.size(),
                });
            }
            return;
        }
        _ => {
            changes.push(Change::Node {
                path,
                left: title(&left),
                right: title(&right),
            });
            return;
        }
    };
    let a = named_tensors_with_prefix(left_tensors, left.path);
    let b = named_tensors_with_prefix(right_tensors, right.path);
    for ta in &a {
        match b.iter().find(|tb| tb.name == ta.name) {
            Some(tb) if ta.tensor.size() != tb.tensor.size() => changes.push(Change::Shape {
                name: ta.name.clone(),
                left: ta.tensor.size(),
                right: tb.tensor.size(),
            }),
            Some(_) => {}
            None => changes.push(Change::TensorOnlyLeft {
                name: ta.name.clone(),
            }),
        }
    }
    for tb in &b {
        if !a.iter().any(|ta| ta.name == tb.name) {
            changes.push(Change::TensorOnlyRight {
                name: tb.name.clone(),
            });
        }
    }
}

/// A [`Change::Hyperparameter`] for each name whose value differs or that one side lacks,
/// in the left's order, then the right's.
fn compare_hyperparameters(
    path: &str,
    left: &[(&'static str, HyperValue)],
    right: &[(&'static str, HyperValue)],
    changes: &mut Vec<Change>,
) {
    let find = |list: &[(&'static str, HyperValue)], name: &str| {
        list.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    let mut names: Vec<&str> = left.iter().map(|(n, _)| *n).collect();
    names.extend(
        right
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !left.iter().any(|(l, _)| l == n)),
    );
    for name in names {
        let (a, b) = (find(left, name), find(right, name));
        if a != b {
            changes.push(Change::Hyperparameter {
                name: join_name(path, name),
                left: a,
                right: b,
            });
        }
    }
}
