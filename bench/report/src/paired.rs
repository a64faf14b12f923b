//! Reads the alternation timings (`BENCH_MEASURE=paired`): `target/paired/<group>/<variant>.json`,
//! each with the case id, the median of the per-round ratios and each side's median time.
use crate::results::CaseId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One variant timed in alternation with its group's baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Alternated {
    pub ratio: f64,
    pub baseline_ns: f64,
    pub variant_ns: f64,
}

/// Every record under `dir`; a missing folder gives none (the pass did not run).
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<CaseId, Alternated>, String> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let read_dir =
        |dir: &Path| std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()));
    for group in read_dir(dir)? {
        let group = group.map_err(|e| e.to_string())?.path();
        if !group.is_dir() {
            continue;
        }
        for file in read_dir(&group)? {
            let file = file.map_err(|e| e.to_string())?.path();
            if file.extension().is_some_and(|e| e == "json") {
                let (id, record) = parse(&file)?;
                out.insert(id, record);
            }
        }
    }
    Ok(out)
}

fn parse(file: &Path) -> Result<(CaseId, Alternated), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let number = |key: &str| {
        json[key]
            .as_f64()
            .ok_or_else(|| format!("{}: no number `{key}`", file.display()))
    };
    let id = json["id"]
        .as_str()
        .and_then(CaseId::parse)
        .ok_or_else(|| format!("{}: no `group/variant/tN` id", file.display()))?;
    let record = Alternated {
        ratio: number("ratio")?,
        baseline_ns: number("baseline_ns")?,
        variant_ns: number("variant_ns")?,
    };
    Ok((id, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_by_case_id_and_a_missing_folder_is_empty() {
        let dir = std::env::temp_dir().join(format!("paired-{}", std::process::id()));
        let group = dir.join("linear_64_custom");
        std::fs::create_dir_all(&group).unwrap();
        let record = r#"{"id":"linear_64_custom/patched/t1","ratio":0.996,"baseline_ns":6706.0,"variant_ns":6725.0}"#;
        std::fs::write(group.join("patched.json"), record).unwrap();
        let loaded = load(&dir).unwrap();
        let id = CaseId::parse("linear_64_custom/patched/t1").unwrap();
        assert_eq!(loaded[&id].ratio, 0.996);
        assert_eq!(loaded[&id].variant_ns, 6725.0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load(&dir).unwrap().is_empty());
    }
}
