//! Reads criterion's results: every `new/benchmark.json` (the case's full id) under the
//! criterion folder, with the `new/estimates.json` beside it (median, median_abs_dev).
use crate::results::{CaseId, Measurement, Results};
use serde_json::Value;
use std::path::Path;

/// Every case of the criterion folder whose id has the `group/variant/tN` shape. A missing
/// folder gives no results (the Rust suite did not run).
pub(crate) fn load(dir: &Path) -> Result<Results, String> {
    let mut results = Results::new();
    if dir.is_dir() {
        visit(dir, &mut results)?;
    }
    Ok(results)
}

fn visit(dir: &Path, results: &mut Results) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            visit(&path, results)?;
        } else if path.ends_with("new/benchmark.json") {
            let folder = path.parent().expect("a file's folder");
            if let Some((id, measurement)) = read_case(folder)? {
                results.insert(id, measurement);
            }
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_case(folder: &Path) -> Result<Option<(CaseId, Measurement)>, String> {
    let benchmark = read_json(&folder.join("benchmark.json"))?;
    let Some(id) = benchmark["full_id"].as_str().and_then(CaseId::parse) else {
        return Ok(None);
    };
    let estimates = read_json(&folder.join("estimates.json"))?;
    let point = |key: &str| estimates[key]["point_estimate"].as_f64();
    match (point("median"), point("median_abs_dev")) {
        (Some(median_ns), Some(spread_ns)) => Ok(Some((
            id,
            Measurement {
                median_ns,
                spread_ns,
            },
        ))),
        _ => Err(format!("{}: no median estimate", folder.display())),
    }
}
