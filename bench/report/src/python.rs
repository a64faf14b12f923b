//! Reads `bench/python.json`, written by `bench/compare.py`.
use crate::results::{CaseId, Measurement, Results};
use serde_json::Value;
use std::path::Path;

/// The PyTorch side: its metadata (torch version, date, ...) and its cases.
pub(crate) struct PythonSide {
    pub meta: Value,
    pub results: Results,
}

/// Reads the file; a missing file gives an empty side (the script did not run).
pub(crate) fn load(path: &Path) -> Result<PythonSide, String> {
    if !path.exists() {
        return Ok(PythonSide {
            meta: Value::Null,
            results: Results::new(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut results = Results::new();
    for (id, case) in json["cases"].as_object().into_iter().flatten() {
        let (Some(id), Some(median_ns)) = (CaseId::parse(id), case["median_ns"].as_f64()) else {
            continue;
        };
        let spread_ns = case["mad_ns"].as_f64().unwrap_or(f64::NAN);
        results.insert(
            id,
            Measurement {
                median_ns,
                spread_ns,
            },
        );
    }
    Ok(PythonSide {
        meta: json["meta"].clone(),
        results,
    })
}
