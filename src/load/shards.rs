//! The shards of a sharded checkpoint: `model.safetensors.index.json`'s `weight_map` read,
//! each shard opened (its header only) and checked against the index.
use super::checkpoint::Checkpoint;
use super::LoadError;
use crate::safe_read::{read_regular_file, JSON_LIMIT};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every shard the index at `index` names, opened and checked: each holds exactly the
/// keys the index places in it.
pub(super) fn open_shards(index: &Path) -> Result<Vec<Checkpoint>, LoadError> {
    let invalid = |message: String| LoadError::Index {
        path: index.to_owned(),
        message,
    };
    let bytes = read_regular_file(index, JSON_LIMIT).map_err(invalid)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|error| invalid(format!("not valid JSON: {error}")))?;
    let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(invalid("no `weight_map` object".into()));
    };
    // Shard file -> the keys the index places in it.
    let mut placed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, file) in map {
        let Some(file) = file.as_str() else {
            return Err(invalid(format!("`weight_map.{key}` is not a file name")));
        };
        // A shard is a file of the index's folder: no path separators, no `..`.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(invalid(format!(
                "`weight_map.{key}` = {file:?} is not a file of the folder"
            )));
        }
        placed.entry(file).or_default().insert(key);
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut checkpoints = Vec::with_capacity(placed.len());
    for (file, keys) in placed {
        let path = dir.join(file);
        if !path.exists() {
            return Err(invalid(format!(
                "names shard {file:?}, which is not in {}",
                dir.display()
            )));
        }
        let checkpoint = Checkpoint::open(&path)?;
        let held: BTreeSet<&str> = checkpoint.entries().keys().map(String::as_str).collect();
        if let Some(key) = keys.difference(&held).next() {
            return Err(invalid(format!(
                "places `{key}` in {file:?}, which does not hold it"
            )));
        }
        if let Some(key) = held.difference(&keys).next() {
            return Err(invalid(format!(
                "shard {file:?} holds `{key}`, which the index does not place in it"
            )));
        }
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}
