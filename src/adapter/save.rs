//! Saving an adapter folder: `adapter.safetensors` (only the patches' tensors) and
//! `adapter.json` (which patch, where, with which arguments, and each tensor's shape and
//! dtype).
use super::check_entries::check_entries;
use super::entry::{AdapterEntry, AdapterSummary};
use super::io;
use super::manifest::AdapterManifest;
use super::read_manifest::{
    ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, MANIFEST_FILE, SAVE_ID_KEY, TENSORS_FILE,
};
use super::tensors::to_safetensors_bytes;
use super::AdapterError;
use crate::error::Result;
use crate::registry::Registry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tch::Tensor;

/// Saves `entries` as an adapter folder `dir` (created if missing): `adapter.safetensors`
/// with every entry's tensors under their full dotted names (`blocks.0.attn.q.lora_a`),
/// and `adapter.json`, the manifest (see [the module docs](super) for an example).
///
/// Everything is checked first, with the [global registry](Registry::global): paths
/// (dotted, unique), specs (each patch registered, its arguments valid), tensors (defined,
/// of a dtype safetensors holds, unique names). Any problem is
/// [`AdapterError`](crate::adapter::AdapterError) listing them all, and nothing is written. Existing
/// files of the same names are replaced; the tensors file is written before the manifest.
///
/// ```
/// use tch::{nn, Device};
/// use tch_patch::adapter::{read_adapter, save_adapter, AdapterEntry};
/// use tch_patch::patches::{Lora, LoraConfig};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let path = vs.root() / "fc";
/// let lora = Lora::new(nn::linear(&path, 16, 16, Default::default()), &path, &LoraConfig { rank: 2, ..Default::default() })?;
/// let dir = std::env::temp_dir().join(format!("tch-patch-doc-save-{}", std::process::id()));
/// let summary = save_adapter(&dir, &[AdapterEntry::from_lora("fc", &lora)?])?;
/// assert_eq!((summary.tensors, summary.values), (2, 2 * 16 + 16 * 2));
/// let adapter = read_adapter(&dir)?;
/// assert!(adapter.entries[0].tensor("lora_a").unwrap().equal(lora.lora_a()));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), tch_patch::PatchError>(())
/// ```
pub fn save_adapter(dir: impl AsRef<Path>, entries: &[AdapterEntry]) -> Result<AdapterSummary> {
    save_adapter_with(dir, entries, Registry::global()?)
}

/// [`save_adapter`] with the specs checked against `registry`.
pub fn save_adapter_with(
    dir: impl AsRef<Path>,
    entries: &[AdapterEntry],
    registry: &Registry,
) -> Result<AdapterSummary> {
    let dir = dir.as_ref();
    let problems = check_entries(registry, entries);
    if !problems.is_empty() {
        return Err(AdapterError {
            operation: format!("save adapter to `{}`", dir.display()),
            problems,
        }
        .into());
    }
    let tensors: Vec<(String, &Tensor)> = entries
        .iter()
        .flat_map(|entry| {
            entry
                .tensors
                .iter()
                .map(|(local, tensor)| (entry.full_name(local), tensor))
        })
        .collect();
    let save_id = new_save_id();
    let metadata = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (
            ADAPTER_FORMAT.to_owned(),
            ADAPTER_FORMAT_VERSION.to_string(),
        ),
        (SAVE_ID_KEY.to_owned(), save_id.clone()),
    ]);
    let tensor_bytes = to_safetensors_bytes(&tensors, metadata)?;
    let manifest = AdapterManifest::of_entries(entries, save_id).to_json()?;
    write_pair(
        dir,
        (TENSORS_FILE, &tensor_bytes),
        (MANIFEST_FILE, &manifest),
        &tensors,
    )
}

/// An id no other save of this machine shares: the time in nanoseconds, the process and a
/// counter. It ties an adapter's two files together (see [`AdapterProblem::MixedSaves`](super::AdapterProblem::MixedSaves)).
fn new_save_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count:x}", std::process::id())
}

/// Creates `dir`, then writes the tensors file, then the JSON file, and says what was
/// written; `saved` are the tensors in the tensors file.
pub(crate) fn write_pair(
    dir: &Path,
    tensors: (&str, &[u8]),
    json: (&str, &[u8]),
    saved: &[(String, &Tensor)],
) -> Result<AdapterSummary> {
    io::create_dir(dir)?;
    io::write_file(&dir.join(tensors.0), tensors.1)?;
    io::write_file(&dir.join(json.0), json.1)?;
    Ok(AdapterSummary {
        manifest_file: dir.join(json.0),
        tensors_file: dir.join(tensors.0),
        manifest_bytes: json.1.len() as u64,
        tensors_bytes: tensors.1.len() as u64,
        tensors: saved.len(),
        values: saved.iter().map(|(_, t)| t.numel() as i64).sum(),
    })
}
