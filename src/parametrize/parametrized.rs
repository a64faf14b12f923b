//! `Parametrized<M>`: a module whose forward sees transformed tensors. Creation and the
//! names it keeps; forward, removal and the VarStore are in sibling files.
use super::nesting;
use super::registration;
use super::transform::Transform;
use super::ParametrizeError;
use crate::error::{PatchError, Result, TensorProblem};
use crate::names::{device_name, kind_name, shape_text};
use crate::params::{Parameters, TensorRole, Visitor};
use std::cell::RefCell;
use tch::{nn, Tensor};

/// A module whose forward sees `T(original)` in place of some of its tensors, while each
/// original stays in the module, under its own name (in [`Parameters`] and in the
/// VarStore), so checkpoints of the plain module load into it and back.
///
/// Several transforms on one tensor compose in the order they were pushed (prune, then
/// quantize); any number of the module's tensors can be parametrized. Wrapping means the
/// same as pushing: in `parametrize(parametrize(m, "weight", f)?, "weight", g)?` the outer
/// `g` applies to the inner `f`'s output, `g(f(w))`, in forward, in
/// [`transformed`](Parametrized::transformed), in `cached` scopes, when assigning and when
/// baking; the same holds for a `Parametrized` anywhere inside the module (a layer of a
/// model struct). Forward computes each
/// transformed tensor (once per call, or once per [`cached`](Parametrized::cached) scope),
/// puts it behind the module's own tensor handle for the duration of the module's forward
/// (O(1): a handle exchange, no storage copied) and puts the original back afterwards, also
/// on panic. That works for any module with [`Parameters`], without knowing its fields, and
/// gradients reach the original through the transform.
///
/// # No `Deref` to the module
/// A `Parametrized<nn::Linear>` is not an `nn::Linear`: the linear layer's own forward, run
/// on the module it wraps, would use the original weight, not the transformed one, and give
/// a wrong result without a word. So there is no `Deref`, `AsRef` or `Borrow` to it, and
/// `&Parametrized<nn::Linear>` does not coerce to `&nn::Linear`. Instead:
///
/// - its own `forward` (`nn::Module`), [`try_forward`](Parametrized::try_forward) and
///   [`try_forward_t`](Parametrized::try_forward_t), for generic `impl Module` code;
/// - [`with_transformed`](Parametrized::with_transformed)`(|m: &M| ..)`: the module, for any
///   function or method that wants `&M`, with the transformed tensors in place for the
///   duration of the closure (what PyTorch's `module.weight` is on a parametrized module);
/// - [`original_module`](Parametrized::original_module) and
///   [`original_module_mut`](Parametrized::original_module_mut): the module with its own,
///   untransformed tensors, to read or replace the originals.
///
/// [`Parameters`] lists the module's tensors, then each transform's own ones as
/// `{tensor}_{local}` (`weight_mask`, `weight_g`).
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::{parametrize::FnTransform, parametrize::Parametrized};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root() / "fc", 3, 2, Default::default());
/// let weight_ptr = linear.ws.data_ptr();
/// let mut doubled = Parametrized::new(linear);
/// doubled.push("weight", FnTransform::new("double", |w: &Tensor| w * 2))?;
///
/// let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
/// let original = doubled.original_module();
/// let expected = xs.linear(&(&original.ws * 2), original.bs.as_ref());
/// assert!(doubled.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
/// // A function that wants the `nn::Linear` gets it with the transformed weight in place.
/// let seen = doubled.with_transformed(|linear: &nn::Linear| linear.forward(&xs))?;
/// assert!(seen.allclose(&expected, 1e-6, 1e-6, false));
/// assert_eq!(original.ws.data_ptr(), weight_ptr); // the original, outside of forward
/// assert!(vs.variables().contains_key("fc.weight")); // under its own name
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub struct Parametrized<M> {
    pub(super) module: M,
    pub(super) stacks: Vec<Stack>,
    /// `Some` while a `cached` scope is open: the transformed tensor of each stack, once
    /// computed.
    pub(super) cache: RefCell<Option<Vec<Option<Tensor>>>>,
    /// `Some` while transformed tensors are behind the module's handles: handles to the
    /// originals, one per stack.
    pub(super) swapped_out: RefCell<Option<Vec<Tensor>>>,
}

/// The transforms of one tensor, in application order.
pub(super) struct Stack {
    pub(super) name: String,
    pub(super) transforms: Vec<Box<dyn Transform>>,
}

impl Stack {
    /// Applies the transforms in order.
    pub(super) fn run(&self, original: &Tensor) -> Result<Tensor> {
        run(&self.transforms, original)
    }
}

fn run(transforms: &[Box<dyn Transform>], original: &Tensor) -> Result<Tensor> {
    let mut value = original.shallow_clone();
    for transform in transforms {
        value = transform.apply(&value)?;
    }
    Ok(value)
}

/// Wraps `module` and parametrizes its tensor `name` with `transform` in one step, like
/// qsparse's `imitate(module, name, thing)`. On error `module` is dropped, unchanged; use
/// [`Parametrized::new`] and [`Parametrized::push`] to keep it.
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::parametrize::parametrize;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let linear = nn::linear(vs.root(), 2, 2, Default::default());
/// let plus_one = parametrize(linear, "weight", |w: &Tensor| w + 1)?;
/// let w = plus_one.original("weight")?;
/// assert!(plus_one.transformed("weight")?.equal(&(&w + 1)));
///
/// // Wrapping again applies the new transform to the earlier one's output.
/// let doubled = parametrize(plus_one, "weight", |w: &Tensor| w * 2)?;
/// assert!(doubled.transformed("weight")?.equal(&((&w + 1) * 2)));
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn parametrize<M: Parameters>(
    module: M,
    name: &str,
    transform: impl Transform,
) -> Result<Parametrized<M>> {
    let mut parametrized = Parametrized::new(module);
    parametrized.push(name, transform)?;
    Ok(parametrized)
}

impl<M: Parameters> Parametrized<M> {
    /// Wraps `module` with no parametrization yet: its forward is the module's.
    pub fn new(module: M) -> Self {
        Parametrized {
            module,
            stacks: Vec::new(),
            cache: RefCell::new(None),
            swapped_out: RefCell::new(None),
        }
    }

    /// Adds `transform` on the tensor `name` (a dotted name of [`Parameters`], such as
    /// `weight` or `fc1.weight`), after the transforms already on it, and after those of
    /// any `Parametrized` inside the module: it receives what they compute.
    ///
    /// Checks everything before changing anything: the name exists, the transform accepts
    /// the tensor ([`Transform::prepare`]), its output keeps the shape, kind and device, its
    /// own tensors' names are free, and it has no trainable tensor (those need
    /// [`push_registered`](Parametrized::push_registered)). On error the module and its
    /// parametrizations are as they were.
    pub fn push(&mut self, name: &str, transform: impl Transform) -> Result<()> {
        self.add(name, Box::new(transform), None)
    }

    /// Like [`push`](Parametrized::push), and registers the transform's own tensors in the
    /// VarStore at `path`, the path the module was built at, as `{tensor}_{local}` (so
    /// `vs.root() / "fc"` and a weight norm on `weight` give `fc.weight_g`). Trainable ones
    /// are then trained by an optimizer built from the VarStore. A taken name is an error
    /// and registers nothing.
    pub fn push_registered(
        &mut self,
        path: &nn::Path,
        name: &str,
        transform: impl Transform,
    ) -> Result<()> {
        self.add(name, Box::new(transform), Some(path))
    }

    fn add(
        &mut self,
        name: &str,
        mut transform: Box<dyn Transform>,
        path: Option<&nn::Path>,
    ) -> Result<()> {
        let original = self.module_tensor(name)?;
        require_defined(&format!("parametrize `{name}`"), name, &original)?;
        let position = self.stacks.iter().position(|stack| stack.name == name);
        let earlier = position.map_or(&[][..], |i| &self.stacks[i].transforms[..]);
        let input = tch::no_grad(|| -> Result<Tensor> {
            let base = match nesting::find(&self.inner(), name) {
                Some((inner, name)) => self.with_first_in_place(|| inner.effective(name))?,
                None => original,
            };
            run(earlier, &base)
        })?;
        tch::no_grad(|| -> Result<()> {
            transform.prepare(name, &input)?;
            let output = transform.apply(&input)?;
            check_same_layout(transform.name(), name, &input, &output)
        })?;
        let added = self.added_names(name, transform.as_ref())?;
        match path {
            Some(path) => {
                let tensors = added
                    .iter()
                    .zip(transform.tensors())
                    .map(|(full, (_, tensor, role))| (full.as_str(), tensor.shallow_clone(), role))
                    .collect();
                registration::register(path, tensors)?;
            }
            None => {
                let roles = transform.tensors().into_iter().map(|(_, _, role)| role);
                if let Some((full, _)) = added
                    .iter()
                    .zip(roles)
                    .find(|(_, role)| *role == TensorRole::Param)
                {
                    return Err(ParametrizeError::NeedsVarStore {
                        transform: transform.name().to_owned(),
                        tensor: full.clone(),
                    }
                    .into());
                }
            }
        }
        match position {
            Some(i) => self.stacks[i].transforms.push(transform),
            None => self.stacks.push(Stack {
                name: name.to_owned(),
                transforms: vec![transform],
            }),
        }
        Ok(())
    }

    /// Full names of a transform's own tensors on `name`, checked to be free.
    fn added_names(&self, name: &str, transform: &dyn Transform) -> Result<Vec<String>> {
        let mut taken = self.names();
        let mut added = Vec::new();
        for (local, _, _) in transform.tensors() {
            let full = format!("{name}_{local}");
            if taken.contains(&full) {
                return Err(PatchError::NameTaken { name: full });
            }
            taken.push(full.clone());
            added.push(full);
        }
        Ok(added)
    }

    /// Every tensor name of this parametrized module (the module's, then the transforms').
    fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut collect = |name: &str, _: &Tensor, _: TensorRole| names.push(name.to_owned());
        self.visit(&mut Visitor::new("", &mut collect));
        names
    }

    /// A handle to the module's tensor `name`, or an error listing the names there are.
    pub(super) fn module_tensor(&self, name: &str) -> Result<Tensor> {
        let (handles, _) = self.walk();
        match handles.iter().find(|(n, _)| n == name) {
            Some((_, tensor)) => Ok(tensor.shallow_clone()),
            None => Err(PatchError::UnknownTensor {
                name: name.to_owned(),
                known: handles.into_iter().map(|(n, _)| n).collect(),
            }),
        }
    }

    /// The module's handle for each stack, in stack order.
    pub(super) fn stack_handles(&self) -> Result<Vec<&Tensor>> {
        Ok(self.stack_handles_and_inner()?.0)
    }

    /// The module's handle for each stack, in stack order, and the parametrizations
    /// directly inside the module.
    pub(super) fn stack_handles_and_inner(&self) -> Result<(Vec<&Tensor>, nesting::InnerAt<'_>)> {
        let (handles, inner) = self.walk();
        let stacks = self
            .stacks
            .iter()
            .map(
                |stack| match handles.iter().find(|(n, _)| *n == stack.name) {
                    Some((_, tensor)) => Ok(*tensor),
                    None => Err(PatchError::UnknownTensor {
                        name: stack.name.clone(),
                        known: handles.iter().map(|(n, _)| n.clone()).collect(),
                    }),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        Ok((stacks, inner))
    }

    /// Handles to every transform's own tensors.
    pub(super) fn transform_tensors(&self) -> Vec<Tensor> {
        let transforms = self.stacks.iter().flat_map(|s| &s.transforms);
        transforms
            .flat_map(|t| t.tensors().into_iter().map(|(_, t, _)| t.shallow_clone()))
            .collect()
    }

    /// The position of `name`'s stack, or an error listing the parametrized names.
    pub(super) fn stack_index(&self, name: &str) -> Result<usize> {
        self.stacks
            .iter()
            .position(|stack| stack.name == name)
            .ok_or_else(|| ParametrizeError::NotParametrized {
                name: name.to_owned(),
                parametrized: self.stacks.iter().map(|s| s.name.clone()).collect(),
            })
            .map_err(Into::into)
    }

    /// Each parametrized tensor's name with the names of its transforms, in order.
    pub fn parametrizations(&self) -> Vec<(&str, Vec<&str>)> {
        self.stacks
            .iter()
            .map(|stack| {
                let names = stack.transforms.iter().map(|t| t.name()).collect();
                (stack.name.as_str(), names)
            })
            .collect()
    }

    /// The wrapped module with its own, **untransformed** tensors: the originals, not what
    /// forward sees. Its own methods (`nn::Linear::forward` included) compute the module
    /// as it was before it was parametrized; use
    /// [`with_transformed`](Parametrized::with_transformed) for the module the way forward
    /// sees it. (Called from inside a forward or a `with_transformed` closure, its handles
    /// hold the transformed tensors for that while; [`original`](Parametrized::original)
    /// is the original there too.)
    ///
    /// ```
    /// use tch::{nn, nn::Module, Device, Tensor};
    /// use tch_patch::parametrize::parametrize;
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let linear = nn::linear(vs.root(), 2, 2, Default::default());
    /// let zeroed = parametrize(linear, "weight", |w: &Tensor| w.zeros_like())?;
    /// let xs = Tensor::ones([1, 2], (tch::Kind::Float, Device::Cpu));
    /// let untransformed = zeroed.original_module().forward(&xs); // the original weight
    /// assert!(!untransformed.equal(&zeroed.forward(&xs)));
    /// # Ok::<(), tch_patch::PatchError>(())
    /// ```
    pub fn original_module(&self) -> &M {
        &self.module
    }

    /// The wrapped module with its untransformed tensors, mutably, as
    /// [`original_module`](Parametrized::original_module). A tensor replaced here is what
    /// the transforms see next.
    pub fn original_module_mut(&mut self) -> &mut M {
        &mut self.module
    }
}

/// `Ok` when `output` has `input`'s shape, kind and device (an undefined output, from a
/// user's transform, never does).
pub(super) fn check_same_layout(
    transform: &str,
    name: &str,
    input: &Tensor,
    output: &Tensor,
) -> Result<()> {
    if layout(input) == layout(output) {
        Ok(())
    } else {
        Err(ParametrizeError::TransformChangedTensor {
            transform: transform.to_owned(),
            name: name.to_owned(),
            expected: describe(input),
            actual: describe(output),
        }
        .into())
    }
}

/// Shape, kind and device of a tensor; `None` when it is undefined.
type Layout = Option<(Vec<i64>, Option<tch::Kind>, tch::Device)>;

fn layout(tensor: &Tensor) -> Layout {
    tensor
        .defined()
        .then(|| (tensor.size(), tensor.f_kind().ok(), tensor.device()))
}

fn describe(tensor: &Tensor) -> String {
    match layout(tensor) {
        Some((size, kind, device)) => format!(
            "shape {}, dtype {}, device {}",
            shape_text(&size),
            kind.map_or("unknown", kind_name),
            device_name(device)
        ),
        None => "an undefined tensor".into(),
    }
}

/// An error when `tensor`, the value for `name`, is undefined.
pub(super) fn require_defined(operation: &str, name: &str, tensor: &Tensor) -> Result<()> {
    if tensor.defined() {
        return Ok(());
    }
    Err(PatchError::InvalidTensors {
        operation: operation.to_owned(),
        problems: vec![TensorProblem::Undefined {
            name: name.to_owned(),
        }],
    })
}
