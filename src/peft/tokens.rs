//! PEFT's trainable tokens (`trainable_token_indices`, its `TrainableTokensLayer`) as
//! [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding) patches, both ways.
//!
//! PEFT saves `base_model.model.<path>.token_adapter.trainable_tokens_delta` `[k, dim]`:
//! despite its name, the *new values* of rows `ids` (its forward and merge
//! `index_copy` them into the table), not an offset. This library's patch holds
//! `delta = values - W[ids]` and looks up `W[x] + delta`: reading subtracts the model's
//! rows, saving adds them.
use super::{PeftLoraConfig, PEFT_KEY_PREFIX, PEFT_TENSORS_FILE};
use crate::adapter::tensors::FileTensor;
use crate::adapter::{AdapterEntry, AdapterProblem};
use crate::error::{PatchError, Result};
use crate::patches::MostlyFrozenEmbeddingConfig;
use crate::registry::PatchArgs;
use tch::{Kind, Tensor};

/// PEFT's key suffix of a module's trainable-token rows.
pub(crate) const TOKENS_SUFFIX: &str = "token_adapter.trainable_tokens_delta";
/// [`MostlyFrozenEmbedding`](crate::patches::MostlyFrozenEmbedding)'s local tensor names.
pub(crate) const DELTA_LOCAL: &str = "delta";
pub(crate) const IDS_LOCAL: &str = "token_ids";

/// PEFT's key of the trainable-token rows of module `path`.
pub(crate) fn tokens_key(path: &str) -> String {
    format!("{PEFT_KEY_PREFIX}{path}.{TOKENS_SUFFIX}")
}

/// The token ids `config` gives module `path` (PEFT: the dict's names that the module's
/// path ends with), with a problem naming `key` when no name or more than one does, or
/// when the rows saved are not `[k, dim]` for its `k` ids, or not floating point.
pub(crate) fn check_tokens(
    config: &PeftLoraConfig,
    path: &str,
    tensor: &FileTensor,
    problems: &mut Vec<AdapterProblem>,
) -> Option<Vec<i64>> {
    let key = tokens_key(path);
    let names: Vec<&(String, Vec<i64>)> = config
        .trainable_token_indices
        .iter()
        .filter(|(name, _)| path.ends_with(name.as_str()))
        .collect();
    let ids = match names.as_slice() {
        [(_, ids)] => ids.clone(),
        [] => {
            problems.push(AdapterProblem::UnexpectedTensor {
                name: key,
                file: PEFT_TENSORS_FILE.into(),
                reason: format!(
                    "it is the trainable tokens of `{path}`, and no name of `trainable_token_indices` in the config is one its path ends with"
                ),
            });
            return None;
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(name, _)| name.as_str()).collect();
            problems.push(AdapterProblem::Field {
                file: super::PEFT_CONFIG_FILE.into(),
                field: "trainable_token_indices".into(),
                message: format!(
                    "has several names that `{path}` ends with ({}): PEFT would wrap the module once for each",
                    names.join(", ")
                ),
            });
            return None;
        }
    };
    let before = problems.len();
    let k = ids.len() as i64;
    if tensor.shape.len() != 2 || tensor.shape[0] != k {
        problems.push(AdapterProblem::Shape {
            name: key.clone(),
            found: tensor.shape.clone(),
            expected: format!("[{k}, embedding_dim] (one row for each of the {k} token ids of `{path}` in trainable_token_indices)"),
        });
    }
    super::read::float_problem(key, tensor, problems);
    (problems.len() == before).then_some(ids)
}

/// A problem for each name of `trainable_token_indices` that no saved module's path ends
/// with: PEFT would wrap such a module and start its rows from the base table, so the
/// file is not what the config says.
pub(crate) fn missing_tokens<'p>(
    config: &PeftLoraConfig,
    paths: impl Iterator<Item = &'p str> + Clone,
    problems: &mut Vec<AdapterProblem>,
) {
    for (name, _) in &config.trainable_token_indices {
        if !paths.clone().any(|path| path.ends_with(name.as_str())) {
            problems.push(AdapterProblem::MissingTensor {
                name: tokens_key(name),
                file: PEFT_TENSORS_FILE.into(),
                reason: format!(
                    "`trainable_token_indices` names `{name}`, and the file has no trainable tokens of a module whose path ends with it"
                ),
            });
        }
    }
}

/// The problems of PEFT's rows `values` for ids `ids` of module `path` against its table
/// `table_size` (`[num_embeddings, embedding_dim]`): an id out of range, rows of another
/// width.
pub(crate) fn table_problems(
    path: &str,
    ids: &[i64],
    values: &Tensor,
    table_size: &[i64],
) -> Vec<AdapterProblem> {
    let key = tokens_key(path);
    let &[rows, dim] = table_size else {
        return vec![AdapterProblem::Tensor {
            name: key,
            message: format!("is for `{path}`, whose table is not 2-D ({table_size:?})"),
        }];
    };
    let mut problems = Vec::new();
    for &id in ids.iter().filter(|id| !(0..rows).contains(*id)) {
        problems.push(AdapterProblem::Tensor {
            name: key.clone(),
            message: format!(
                "is for token id {id} (trainable_token_indices), out of range for `{path}`'s {rows} embeddings"
            ),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for &id in ids.iter().filter(|id| !seen.insert(**id)) {
        problems.push(AdapterProblem::Tensor {
            name: key.clone(),
            message: format!("is for token id {id} twice (trainable_token_indices)"),
        });
    }
    if values.size() != [ids.len() as i64, dim] {
        problems.push(AdapterProblem::Shape {
            name: key,
            found: values.size(),
            expected: format!(
                "[{}, {dim}] (the token ids of `{path}`; its embeddings are of size {dim})",
                ids.len()
            ),
        });
    }
    problems
}

/// The `mostly_frozen_embedding` entry of module `path` whose table is `weight`: PEFT's
/// rows `values` become `delta = values - weight[ids]`, in the table's dtype.
pub(crate) fn tokens_entry(
    path: &str,
    ids: &[i64],
    values: &Tensor,
    weight: &Tensor,
) -> Result<AdapterEntry> {
    let index = Tensor::from_slice(ids).to_device(weight.device());
    let delta = tch::no_grad(|| {
        values
            .f_to_device(weight.device())
            .and_then(|values| values.f_to_kind(weight.kind()))
            .and_then(|values| values.f_sub(&weight.f_index_select(0, &index)?))
    })
    .map_err(PatchError::torch(
        "converting PEFT's trainable-token rows to a delta",
    ))?;
    let spec = MostlyFrozenEmbeddingConfig {
        tokens: ids.to_vec(),
    }
    .to_spec(path.to_owned())?;
    Ok(AdapterEntry::new(
        path,
        spec,
        vec![(DELTA_LOCAL.into(), delta), (IDS_LOCAL.into(), index)],
    ))
}

/// PEFT's rows of a `mostly_frozen_embedding` entry on table `weight`:
/// `weight[token_ids] + delta`, in `delta`'s dtype, and its ids; a problem naming the
/// entry's tensor if it has no `delta` or `token_ids`.
pub(crate) fn tokens_values(
    entry: &AdapterEntry,
    weight: &Tensor,
    problems: &mut Vec<AdapterProblem>,
) -> Option<(Vec<i64>, Tensor)> {
    let mut get = |name: &str| entry.required_tensor(name, problems);
    let (delta, index) = (get(DELTA_LOCAL), get(IDS_LOCAL));
    let (delta, index) = (delta?, index?);
    let computed = tch::no_grad(|| -> std::result::Result<_, tch::TchError> {
        let index = index.f_to_kind(Kind::Int64)?.f_to_device(weight.device())?;
        let ids = Vec::<i64>::try_from(&index)?;
        let rows = weight.f_index_select(0, &index)?.f_to_kind(delta.kind())?;
        let values = rows.f_add(&delta.f_to_device(weight.device())?)?;
        Ok((ids, values.f_to_device(delta.device())?))
    });
    match computed {
        Ok(computed) => Some(computed),
        Err(error) => {
            problems.push(AdapterProblem::Tensor {
                name: entry.full_name(DELTA_LOCAL),
                message: format!("cannot be added to its rows of the table: {error}"),
            });
            None
        }
    }
}
