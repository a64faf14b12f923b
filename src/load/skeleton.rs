//! A model that costs nothing until it is loaded: its tensors allocated (names, shapes,
//! dtypes, devices as the constructor makes them) but never initialized, which is what
//! PyTorch gets from the meta device and `load_state_dict(assign=True)`.
//!
//! tch's `Device` cannot name libtorch's meta device, and its constructors (`nn::linear`,
//! `Path::var`) always run an init kernel. So the skeleton is built by constructors that
//! take a [`Fill`]: [`linear`], [`embedding`], [`layer_norm`] and [`var`] make exactly
//! what tch's do, and with the uninitialized fill they allocate with `Tensor::empty`
//! instead (no kernel runs, and the allocator's fresh pages are not touched, so they cost
//! no resident memory). That fill only exists inside [`Skeleton::build`], and a skeleton
//! only gives its model back through a load that writes every tensor: no code can read a
//! value that was never written.
use super::{LoadError, LoadOptions};
use crate::params::{named_tensors, Parameters};
use crate::varstore::forget_tensors;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::{nn, Tensor};

/// How a constructor of this module fills its tensors: as tch does, or (only inside
/// [`Skeleton::build`]) not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    uninit: bool,
}

impl Fill {
    /// tch's own initialization: the constructors are then `nn::linear`, `nn::embedding`,
    /// `nn::layer_norm` and `Path::var` themselves.
    pub const INIT: Fill = Fill { uninit: false };

    /// Whether tensors are left uninitialized (the fill [`Skeleton::build`] hands out).
    pub fn is_uninit(self) -> bool {
        self.uninit
    }
}

/// `Path::var(name, dims, init)`, or with an uninitialized `fill` a tensor of that shape
/// whose memory is never written (a trainable variable of the VarStore either way).
pub fn var(path: &nn::Path, name: &str, dims: &[i64], init: nn::Init, fill: Fill) -> Tensor {
    if fill.uninit {
        path.add(name, empty(path, dims), true)
    } else {
        path.var(name, dims, init)
    }
}

/// `nn::linear`, or with an uninitialized `fill` the same layer without an init kernel.
pub fn linear(
    path: &nn::Path,
    in_dim: i64,
    out_dim: i64,
    config: nn::LinearConfig,
    fill: Fill,
) -> nn::Linear {
    if !fill.uninit {
        return nn::linear(path, in_dim, out_dim, config);
    }
    let bs = config
        .bias
        .then(|| path.add("bias", empty(path, &[out_dim]), true));
    let ws = path.add("weight", empty(path, &[out_dim, in_dim]), true);
    nn::Linear { ws, bs }
}

/// `nn::embedding`, or with an uninitialized `fill` the same layer without an init kernel.
pub fn embedding(
    path: &nn::Path,
    num_embeddings: i64,
    embedding_dim: i64,
    config: nn::EmbeddingConfig,
    fill: Fill,
) -> nn::Embedding {
    if !fill.uninit {
        return nn::embedding(path, num_embeddings, embedding_dim, config);
    }
    // The layer's config is private to tch: made by tch on a throwaway 1x1 table, then
    // given the real one.
    let scratch = nn::VarStore::new(path.device());
    let mut layer = nn::embedding(scratch.root(), 1, 1, config);
    layer.ws = path.add(
        "weight",
        empty(path, &[num_embeddings, embedding_dim]),
        true,
    );
    layer
}

/// `nn::layer_norm`, or with an uninitialized `fill` the same layer without an init
/// kernel.
pub fn layer_norm(
    path: &nn::Path,
    normalized_shape: Vec<i64>,
    config: nn::LayerNormConfig,
    fill: Fill,
) -> nn::LayerNorm {
    if !fill.uninit {
        return nn::layer_norm(path, normalized_shape, config);
    }
    let affine = config.elementwise_affine;
    let scratch = nn::VarStore::new(path.device());
    let mut layer = nn::layer_norm(scratch.root(), vec![1], config);
    if affine {
        layer.ws = Some(path.add("weight", empty(path, &normalized_shape), true));
        layer.bs = Some(path.add("bias", empty(path, &normalized_shape), true));
    }
    layer.normalized_shape = normalized_shape;
    layer
}

/// An uninitialized tensor of the path's kind and device.
fn empty(path: &nn::Path, dims: &[i64]) -> Tensor {
    Tensor::empty(dims, (path.kind(), path.device()))
}

/// A model whose tensors were allocated but never written, to be filled by a load.
///
/// [`build`](Self::build) hands the constructor the uninitialized [`Fill`]; the model comes
/// back only through a load that gives every tensor a value ([`load`](Self::load),
/// [`load_sharded`](Self::load_sharded), [`load_with`](Self::load_with): missing tensors
/// are always an error, whatever the options say). A load that fails drops the model
/// and takes its tensors out of the VarStore it was built in, so the VarStore is as it was
/// before [`build`](Self::build): no variable of unwritten memory is left to save. With [`LoadMode::Assign`] the load
/// gives the model the file's tensors and the skeleton's storage is freed untouched;
/// with [`LoadMode::Copy`] each tensor is read straight into it.
///
/// [`LoadMode::Assign`]: super::LoadMode::Assign
/// [`LoadMode::Copy`]: super::LoadMode::Copy
///
/// ```
/// use tch::{nn, Device, Tensor};
/// use tch_patch::load::{self, LoadMode, LoadOptions, Skeleton};
///
/// let path = std::env::temp_dir().join(format!("tch-patch-doc-skeleton-{}.safetensors", std::process::id()));
/// let source = nn::VarStore::new(Device::Cpu);
/// let trained = nn::linear(source.root(), 1024, 1024, Default::default());
/// source.save(&path).unwrap();
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let skeleton = Skeleton::build(&vs, |fill| load::linear(&vs.root(), 1024, 1024, Default::default(), fill));
/// let linear = skeleton.load(&path, &LoadOptions::new().mode(LoadMode::Assign))?;
/// assert!(linear.ws.equal(&trained.ws));
/// assert!(vs.variables()["weight"].is_set_to(&linear.ws)); // the VarStore holds the loaded tensor
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), tch_patch::load::LoadError>(())
/// ```
pub struct Skeleton<M> {
    module: M,
    variables: Arc<Mutex<nn::Variables>>,
}

impl<M: Parameters> Skeleton<M> {
    /// Builds the model with `build`, handed the uninitialized fill; `vs` is the VarStore
    /// it builds in (a failed load takes the model's tensors out of it again).
    pub fn build(vs: &nn::VarStore, build: impl FnOnce(Fill) -> M) -> Self {
        Skeleton {
            module: build(Fill { uninit: true }),
            variables: vs.variables_.clone(),
        }
    }

    /// The model if `loaded` succeeded; else the error, the model dropped and its tensors
    /// taken out of the VarStore.
    fn finish<T>(self, loaded: Result<T, LoadError>) -> Result<M, LoadError> {
        match loaded {
            Ok(_) => Ok(self.module),
            Err(error) => {
                let tensors: Vec<Tensor> = named_tensors(&self.module)
                    .into_iter()
                    .map(|t| t.tensor)
                    .collect();
                forget_tensors(&self.variables, &tensors);
                Err(error)
            }
        }
    }

    /// The model as built, to read its structure (names, dtypes: what a load hook such as
    /// [`Int8Linear::load_hook`](crate::patches::Int8Linear::load_hook) is made from);
    /// its tensors' values are not readable until a load has filled them.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The names and shapes of the model's tensors (their values are not readable).
    pub fn shapes(&self) -> Vec<(String, Vec<i64>)> {
        named_tensors(&self.module)
            .into_iter()
            .map(|named| (named.name, named.tensor.size()))
            .collect()
    }

    /// The model, loaded from one file ([`super::load_safetensors`]); every tensor must
    /// be in it.
    pub fn load(mut self, path: impl AsRef<Path>, options: &LoadOptions) -> Result<M, LoadError> {
        let loaded = super::load_safetensors(&mut self.module, path, &strict(options));
        self.finish(loaded)
    }

    /// The model, loaded from a sharded checkpoint ([`super::load_sharded`]); every tensor
    /// must be in it.
    pub fn load_sharded(
        mut self,
        index: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<M, LoadError> {
        let loaded = super::load_sharded(&mut self.module, index, &strict(options));
        self.finish(loaded)
    }

    /// The model, loaded through a hook ([`super::load_safetensors_with`]); every tensor
    /// must be given a value.
    pub fn load_with<H, O>(
        mut self,
        path: impl AsRef<Path>,
        options: &LoadOptions,
        hook: H,
    ) -> Result<M, LoadError>
    where
        H: FnMut(&str, Tensor) -> crate::Result<O>,
        O: Into<super::HookOutput>,
    {
        let loaded = super::load_safetensors_with(&mut self.module, path, &strict(options), hook);
        self.finish(loaded)
    }
}

/// `options` with missing tensors refused: a skeleton's tensor left out would keep
/// memory nobody wrote.
fn strict(options: &LoadOptions) -> LoadOptions {
    options.clone().allow_missing(false)
}
