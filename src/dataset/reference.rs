//! Reference answers: the optional `reference` field of a dataset's rows (JSONL key or CSV
//! column), read for reference-guided judging only (`[mitigations] reference = true`, or a judge
//! file's `reference_guided = true`). The pairs themselves never carry it, so no other judge's
//! prompt, cache key or dataset hash changes with it.

use super::{DatasetError, jsonl};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The reference answers of the rows of `path` that have one, by pair id (JSONL: a
/// `reference` string beside `id`; CSV: a `reference` column beside `id`). A blank reference
/// counts as none; a row without an id is skipped (its pair then has no reference).
pub fn load_references(path: &Path) -> Result<BTreeMap<String, String>, DatasetError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let invalid = |line: usize, field: &str, message: String| DatasetError::Invalid {
        file: file.clone(),
        line,
        field: field.to_string(),
        message,
    };
    let mut out = BTreeMap::new();
    match extension.as_str() {
        "jsonl" | "json" => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                // The pair loader has already checked the record; only its two fields matter.
                let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let reference = jsonl::optional_string(&obj, "reference")
                    .map_err(|e| invalid(i + 1, "reference", e.message))?;
                let id =
                    jsonl::id_field(&obj, "id").map_err(|e| invalid(i + 1, "id", e.message))?;
                if let (Some(id), Some(r)) = (id, reference.filter(|r| !r.trim().is_empty())) {
                    out.insert(id, r);
                }
            }
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| invalid(1, "<csv>", e.to_string()))?
                .clone();
            let find = |name: &str| {
                headers
                    .iter()
                    .position(|h| h.trim().eq_ignore_ascii_case(name))
            };
            let (Some(id), Some(reference)) = (find("id"), find("reference")) else {
                return Ok(out);
            };
            for record in reader.records() {
                let record = record.map_err(|e| invalid(0, "<csv>", e.to_string()))?;
                let (Some(id), Some(r)) = (record.get(id), record.get(reference)) else {
                    continue;
                };
                if !id.trim().is_empty() && !r.trim().is_empty() {
                    out.insert(id.to_string(), r.to_string());
                }
            }
        }
        _ => return Err(DatasetError::UnsupportedFormat { file }),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_jsonl_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("d.jsonl");
        std::fs::write(
            &jsonl,
            "{\"id\": \"p0\", \"prompt\": \"q\", \"response_a\": \"a\", \"response_b\": \"b\", \"reference\": \"R0\"}\n\n\
             {\"id\": 7, \"prompt\": \"q\", \"response_a\": \"a\", \"response_b\": \"b\", \"reference\": \"R7\"}\n\
             {\"id\": \"p2\", \"prompt\": \"q\", \"response_a\": \"a\", \"response_b\": \"b\", \"reference\": \"  \"}\n\
             {\"id\": \"p3\", \"prompt\": \"q\", \"response_a\": \"a\", \"response_b\": \"b\"}\n",
        )
        .unwrap();
        let r = load_references(&jsonl).unwrap();
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            [("7".into(), "R7".into()), ("p0".into(), "R0".into())]
        );
        // The pair loader accepts the extra field.
        assert_eq!(
            super::super::load(&jsonl, &Default::default())
                .unwrap()
                .pairs
                .len(),
            4
        );
        std::fs::write(&jsonl, "{\"id\": \"p0\", \"reference\": 5}\n").unwrap();
        let e = load_references(&jsonl).unwrap_err().to_string();
        assert!(
            e.contains("reference") && e.contains("expected a string"),
            "{e}"
        );
        let csv = dir.path().join("d.csv");
        std::fs::write(
            &csv,
            "id,prompt,response_a,response_b,Reference\np0,q,a,b,\"R, zero\"\np1,q,a,b,\n",
        )
        .unwrap();
        let r = load_references(&csv).unwrap();
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            [("p0".into(), "R, zero".into())]
        );
        assert_eq!(
            super::super::load(&csv, &Default::default())
                .unwrap()
                .pairs
                .len(),
            2
        );
    }
}
