//! Fine-tune a few rows of a frozen embedding table: the blog post's `MostlyFrozenEmbedding`.
use super::build::{BuildError, BuildPatch};
use crate::error::{PatchError, Result};
use crate::params::TensorRole;
use crate::registry::PatchArgs;
use crate::varstore::register_tensors;
use crate::{patch, patch_forward};
use tch::{nn, nn::Module, Tensor};

/// New-token rows: trains a few rows of a frozen embedding table.
#[derive(Debug, Clone, PartialEq, PatchArgs)]
#[patch_args(name = "mostly_frozen_embedding", patch = MostlyFrozenEmbedding)]
pub struct MostlyFrozenEmbeddingConfig {
    /// the token ids whose rows train, e.g. [100, 101]
    pub tokens: Vec<i64>,
}

/// An `nn::Embedding` whose table stays frozen except for a few rows, each trained through
/// a `delta` added to it: new tokens in a vocabulary, or a handful of tokens to adapt.
///
/// The output equals `embedding(W + scatter(delta at token_ids), xs)`, as in the blog post
/// "runtime patching of a nn.Module", computed without materialising the patched table:
/// `W[xs]` comes from the parent's own forward (under `no_grad`, so the table is frozen
/// without touching its `requires_grad`), plus `one_hot(xs == token_ids) @ delta`, which
/// costs `O(batch × k × dim)` instead of `O(vocab × dim)` per call.
///
/// tch keeps `nn::Embedding`'s config (padding_idx, sparse, scale_grad_by_freq) private;
/// because the table's lookup *is* the parent's forward, whatever that config says still
/// holds for it. Those options only shape the table's gradient, and the table gets none
/// here; the trainable rows get a plain dense gradient.
///
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_patch::{patches::MostlyFrozenEmbedding, Patch};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let emb = nn::embedding(vs.root() / "emb", 16, 4, Default::default());
/// let weight_ptr = emb.ws.data_ptr();
/// let patched = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[1, 2])?;
/// assert_eq!(patched.ws.data_ptr(), weight_ptr);
/// let ids = Tensor::from_slice(&[0i64, 1, 5]);
/// assert!(patched.forward(&ids).equal(&patched.base().forward(&ids))); // delta starts at 0
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
#[patch(from = nn::Embedding, name = "mostly_frozen_embedding")]
pub struct MostlyFrozenEmbedding {
    /// Offsets added to the trainable rows: `[k, dim]`, zeros at first.
    #[param]
    delta: Tensor,
    /// The trainable token ids: `[k]`, int64.
    #[buffer]
    token_ids: Tensor,
}

impl MostlyFrozenEmbedding {
    /// Patches `base` so that only the rows `token_ids` train. `path` is where `base` was
    /// built in its VarStore: `delta` and `token_ids` are registered there (so
    /// `vs.root() / "emb"` gives `emb.delta` and `emb.token_ids`).
    ///
    /// Errors, with `base` dropped and the VarStore unchanged: an empty id list, an id out
    /// of the table's range or given twice, a table that is not 2-D, or a taken name.
    pub fn from_existing(base: nn::Embedding, path: &nn::Path, token_ids: &[i64]) -> Result<Self> {
        Self::build_from_ids(base, path, token_ids).map_err(|failed| failed.error)
    }

    /// The trainable row offsets, `[k, dim]`.
    pub fn delta(&self) -> &Tensor {
        &self.delta
    }

    /// The trainable token ids.
    ///
    /// # Panics
    /// If `token_ids` is no longer int64 (see [`forward`](Self::forward)).
    pub fn token_ids(&self) -> Vec<i64> {
        Vec::<i64>::try_from(self.ids()).unwrap_or_default()
    }

    /// The table as this patch sees it, `W + scatter(delta)`, as a new tensor.
    ///
    /// # Panics
    /// If `token_ids` is no longer int64 (see [`forward`](Self::forward)).
    pub fn effective_weight(&self) -> Tensor {
        let index = self.ids().unsqueeze(1).expand_as(&self.delta);
        self.base.ws.detach().scatter_add(0, &index, &self.delta)
    }

    /// The `token_ids` buffer, checked to be int64 still.
    ///
    /// `VarStore::set_kind` converts every variable, integer ones included, so it would
    /// turn the ids into floats and round them (bfloat16 holds integers exactly only up to
    /// 256: id 32001 becomes 32000), and the patch would silently train and look up the
    /// wrong rows. Refusing to go on is the only safe answer; the VarStore's `half`,
    /// `bfloat16`, `float` and `double` convert floating-point variables only.
    fn ids(&self) -> &Tensor {
        let kind = self.token_ids.kind();
        assert!(
            kind == tch::Kind::Int64,
            "MostlyFrozenEmbedding: `token_ids` is {}, not int64, so its ids may have been \
             rounded: `VarStore::set_kind` converts integer variables too; convert a VarStore \
             holding this patch with `half()`, `bfloat16()`, `float()` or `double()`, which \
             keep integer variables as they are, and rebuild this patch",
            crate::names::kind_name(kind)
        );
        &self.token_ids
    }
}

#[patch_forward]
impl MostlyFrozenEmbedding {
    /// The parent's lookup, plus `delta` on the rows of the trainable tokens.
    ///
    /// # Panics
    /// If the `token_ids` buffer is no longer int64: `VarStore::set_kind` converts every
    /// variable, and a float could not hold the ids exactly. Convert the VarStore with
    /// `half()`, `bfloat16()`, `float()` or `double()` instead (floating-point variables
    /// only).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let frozen = tch::no_grad(|| self.base.forward(xs));
        let hits = xs
            .unsqueeze(-1)
            .eq_tensor(self.ids())
            .to_kind(self.delta.kind());
        frozen + hits.matmul(&self.delta)
    }
}

impl MostlyFrozenEmbedding {
    /// Like [`from_existing`](Self::from_existing), but a failure gives `base` back.
    pub fn build_from_ids(
        base: nn::Embedding,
        path: &nn::Path,
        token_ids: &[i64],
    ) -> std::result::Result<Self, Box<BuildError<nn::Embedding>>> {
        match init(&base, path, token_ids) {
            Ok([delta, token_ids]) => Ok(MostlyFrozenEmbedding {
                base,
                delta,
                token_ids,
            }),
            Err(error) => Err(Box::new(BuildError::new(error, base))),
        }
    }
}

impl BuildPatch<nn::Embedding> for MostlyFrozenEmbedding {
    type Config = MostlyFrozenEmbeddingConfig;

    fn build(
        base: nn::Embedding,
        path: &nn::Path,
        config: &MostlyFrozenEmbeddingConfig,
    ) -> std::result::Result<Self, BuildError<nn::Embedding>> {
        Self::build_from_ids(base, path, &config.tokens).map_err(|failed| *failed)
    }
}

/// Checks the table and the ids, then makes and registers `delta` and `token_ids`.
fn init(base: &nn::Embedding, path: &nn::Path, token_ids: &[i64]) -> Result<[Tensor; 2]> {
    let size = base.ws.size();
    let &[rows, dim] = size.as_slice() else {
        return Err(PatchError::ShapeMismatch {
            name: "weight".into(),
            actual: size,
            expected: "[num_embeddings, embedding_dim]".into(),
        });
    };
    validate_token_ids(token_ids, rows)?;
    let options = (base.ws.kind(), base.ws.device());
    let delta = Tensor::f_zeros([token_ids.len() as i64, dim], options)
        .map_err(PatchError::torch("allocating delta"))?;
    let ids = Tensor::from_slice(token_ids).to_device(base.ws.device());
    register_tensors(
        path,
        [
            ("delta", delta, TensorRole::Param),
            ("token_ids", ids, TensorRole::Buffer),
        ],
    )
}

fn validate_token_ids(token_ids: &[i64], rows: i64) -> Result<()> {
    if token_ids.is_empty() {
        return Err(PatchError::Empty {
            what: "the list of trainable token ids",
        });
    }
    let mut seen = std::collections::HashSet::new();
    for &id in token_ids {
        if !(0..rows).contains(&id) {
            return Err(PatchError::IndexOutOfRange {
                what: "trainable token id",
                index: id,
                len: rows,
            });
        }
        if !seen.insert(id) {
            return Err(PatchError::DuplicateIndex {
                what: "trainable token id",
                index: id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn table(vs: &nn::VarStore) -> nn::Embedding {
        nn::embedding(vs.root() / "emb", 8, 3, Default::default())
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of (input, expected error) cases
    fn rejects_bad_ids_and_leaves_the_var_store_alone() {
        type Expect = fn(&PatchError) -> bool;
        let cases: [(&[i64], Expect); 3] = [
            (&[], |e| matches!(e, PatchError::Empty { .. })),
            (&[1, 8], |e| {
                matches!(
                    e,
                    PatchError::IndexOutOfRange {
                        index: 8,
                        len: 8,
                        ..
                    }
                )
            }),
            (&[2, 2], |e| {
                matches!(e, PatchError::DuplicateIndex { index: 2, .. })
            }),
        ];
        for (ids, expected) in cases {
            let vs = nn::VarStore::new(Device::Cpu);
            let error = MostlyFrozenEmbedding::from_existing(table(&vs), &(vs.root() / "emb"), ids)
                .unwrap_err();
            assert!(expected(&error), "{ids:?}: {error}");
            assert_eq!(
                vs.variables().len(),
                1,
                "only the parent's weight is registered"
            );
        }
    }

    #[test]
    fn ids_a_float_dtype_would_round_are_refused_not_looked_up() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let big = nn::embedding(vs.root() / "emb", 300, 3, Default::default());
        let patched =
            MostlyFrozenEmbedding::from_existing(big, &(vs.root() / "emb"), &[257]).unwrap();
        vs.bfloat16(); // floating-point variables only
        assert_eq!(patched.token_ids(), [257]);
        assert_eq!(patched.delta.kind(), Kind::BFloat16);
        let xs = Tensor::from_slice(&[256i64, 257]);
        assert_eq!(patched.forward(&xs).kind(), Kind::BFloat16);
        vs.set_kind(Kind::BFloat16); // every variable: the id becomes 256.0
        let forward = std::panic::catch_unwind(|| patched.forward(&xs));
        assert!(forward.is_err(), "forward must not look up rounded ids");
        assert!(std::panic::catch_unwind(|| patched.effective_weight()).is_err());
    }

    #[test]
    fn forward_equals_the_scattered_table_lookup() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut patched =
            MostlyFrozenEmbedding::from_existing(table(&vs), &(vs.root() / "emb"), &[1, 6])
                .unwrap();
        tch::no_grad(|| {
            patched
                .delta
                .copy_(&Tensor::randn([2, 3], (Kind::Float, Device::Cpu)))
        });
        let xs = Tensor::from_slice(&[0i64, 1, 6, 6, 7]).reshape([5, 1]);
        let expected = Tensor::embedding(&patched.effective_weight(), &xs, -1, false, false);
        assert!(patched.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
    }
}
