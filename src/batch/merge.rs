//! `judge-audit merge`: shard run directories of one audit joined into one run directory that
//! reports as if one machine had run the whole plan.

use crate::audit::{self, AuditError, Prepared};
use crate::run::store::{FaultRow, RunStore};
use crate::run::{CallRecord, lock::RunLock};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A stored call: (call id, judge, record JSON text).
type CallRow = (String, String, String);

/// What a merge produced.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    /// Calls in the plan.
    pub planned: usize,
    /// Committed calls in the merged store.
    pub committed: usize,
    /// Calls of the plan no input holds (in plan order); `run --resume OUT` sends them.
    pub missing: Vec<String>,
}

/// One input, read.
struct Input {
    dir: PathBuf,
    prepared: Prepared,
    snapshot: serde_json::Value,
    tool_version: Option<String>,
    templates: Vec<(String, String)>,
}

fn read_input(dir: &Path) -> Result<Input, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    let store = RunStore::open(dir)?;
    audit::check_stored_plan(&store, &prepared, dir)?;
    let text = store.meta(audit::SNAPSHOT_KEY)?.unwrap_or_default();
    let mut snapshot: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| AuditError::Config(format!("{}: unreadable snapshot: {e}", dir.display())))?;
    if let Some(object) = snapshot.as_object_mut() {
        // Execution settings (concurrency) do not change a single answer, so machines may differ.
        object.remove("run");
        if let Some(dataset) = object.get_mut("dataset").and_then(|d| d.as_object_mut()) {
            // Runs of earlier versions kept the pairs in the snapshot; the hash stands for them.
            dataset.remove("pairs");
        }
    }
    let templates = prepared
        .judges
        .iter()
        .map(|h| {
            let sha = h
                .config
                .load_template()
                .map(|t| t.sha256())
                .unwrap_or_else(|e| format!("unreadable ({e})"));
            (h.config.name.clone(), sha)
        })
        .collect();
    Ok(Input {
        dir: dir.to_path_buf(),
        prepared,
        snapshot,
        tool_version: store.meta("tool_version")?,
        templates,
    })
}

/// Name the first part of the audit in which `b` differs from `a`, if any.
fn difference(a: &Input, b: &Input) -> Option<String> {
    let field = |input: &Input, key: &str| input.snapshot.get(key).cloned();
    let show = |v: Option<serde_json::Value>| {
        let text = v.map_or_else(|| "none".into(), |v| v.to_string());
        if text.chars().count() > 80 {
            format!("{}…", text.chars().take(80).collect::<String>())
        } else {
            text
        }
    };
    if a.tool_version != b.tool_version {
        return Some(format!(
            "tool version ({} vs {})",
            a.tool_version.as_deref().unwrap_or("unknown"),
            b.tool_version.as_deref().unwrap_or("unknown")
        ));
    }
    if field(a, "seed") != field(b, "seed") {
        return Some(format!(
            "seed ({} vs {})",
            show(field(a, "seed")),
            show(field(b, "seed"))
        ));
    }
    if a.prepared.dataset.hash != b.prepared.dataset.hash {
        return Some(format!(
            "dataset hash ({} vs {})",
            a.prepared.dataset.hash, b.prepared.dataset.hash
        ));
    }
    if field(a, "artifacts") != field(b, "artifacts") {
        let ids = |i: &Input| {
            i.prepared
                .artifacts
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Some(format!(
            "artifact catalog ([{}] vs [{}], or the same ids with different definitions)",
            ids(a),
            ids(b)
        ));
    }
    if a.templates != b.templates {
        return Some(format!(
            "judge templates ({:?} vs {:?})",
            a.templates, b.templates
        ));
    }
    if let (Some(x), Some(y)) = (a.snapshot.as_object(), b.snapshot.as_object()) {
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for key in keys {
            if x.get(key) != y.get(key) {
                return Some(format!(
                    "configuration `{key}` ({} vs {})",
                    show(x.get(key).cloned()),
                    show(y.get(key).cloned())
                ));
            }
        }
    }
    None
}

/// The parts of a record that are the judge's answer (not how long it took or how often it was
/// tried): two honest copies of one call agree on these.
fn response(record: &CallRecord) -> serde_json::Value {
    serde_json::json!({
        "raw": record.raw,
        "verdict": record.verdict,
        "label_probs": record.label_probs,
        "usage": record.usage,
    })
}

/// Merge the run directories `inputs` (shards of one audit, or any partial runs of it) into
/// `out` and write its reports. Refuses inputs of different audits, and a call that two inputs
/// answered differently; calls no input holds are listed in the outcome.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeOutcome, AuditError> {
    if inputs.is_empty() {
        return Err(AuditError::Config(
            "merge: name at least one run directory".into(),
        ));
    }
    let mut read = Vec::new();
    for dir in inputs {
        if std::fs::canonicalize(dir).ok() == std::fs::canonicalize(out).ok() {
            return Err(AuditError::Config(format!(
                "merge: {} is both an input and --out",
                dir.display()
            )));
        }
        read.push(read_input(dir)?);
    }
    let first = &read[0];
    for other in &read[1..] {
        if let Some(what) = difference(first, other) {
            return Err(AuditError::Config(format!(
                "merge: {} and {} are not shards of the same audit: they differ in {what}",
                first.dir.display(),
                other.dir.display()
            )));
        }
    }

    // Faults are summed across inputs, so merging into a run that already holds some would count
    // them twice; a merge always writes a new run directory.
    if RunStore::exists(out) {
        return Err(AuditError::Config(format!(
            "merge: {} already holds a run; merge into a new directory",
            out.display()
        )));
    }
    let mut store = audit::open_run(&first.prepared, out)?;
    let _lock = RunLock::acquire(out).map_err(crate::run::RunError::from)?;
    // Call id -> (where it came from, its row).
    let mut rows: BTreeMap<String, (PathBuf, CallRow)> = BTreeMap::new();
    let mut sources: Vec<(PathBuf, Vec<CallRow>)> = Vec::new();
    let mut faults: Vec<FaultRow> = Vec::new();
    for input in &read {
        let input_store = RunStore::open(&input.dir)?;
        sources.push((input.dir.clone(), input_store.call_rows()?));
        faults.extend(input_store.fault_rows()?);
    }
    let mut new_rows = Vec::new();
    for (dir, list) in sources {
        for row in list {
            match rows.get(&row.0) {
                Some((seen_dir, seen)) => {
                    let decode = |text: &str, at: &Path| {
                        serde_json::from_str::<CallRecord>(text).map_err(|e| {
                            AuditError::Config(format!(
                                "{}: stored call `{}` is unreadable: {e}",
                                at.display(),
                                row.0
                            ))
                        })
                    };
                    let (a, b) = (decode(&seen.2, seen_dir)?, decode(&row.2, &dir)?);
                    if response(&a) != response(&b) {
                        return Err(AuditError::Config(format!(
                            "merge: call `{}` has two different committed responses: {} answered {} and {} answered {}; these are not honest copies of one call (a judge that is not deterministic, or changed between machines), so nothing was merged",
                            row.0,
                            seen_dir.display(),
                            response(&a),
                            dir.display(),
                            response(&b)
                        )));
                    }
                }
                None => {
                    new_rows.push(row.clone());
                    rows.insert(row.0.clone(), (dir.clone(), row));
                }
            }
        }
    }
    store.insert_call_rows(&new_rows)?;
    // Faults are what every machine saw, so one machine would have seen all of them.
    store.commit(&[], &faults)?;

    let plan = &first.prepared.plan;
    let missing: Vec<String> = plan
        .calls
        .iter()
        .filter(|c| !rows.contains_key(&c.id))
        .map(|c| c.id.clone())
        .collect();
    // `calls.jsonl` is rewritten as a faithful log of the merged store, in plan order.
    let records = store.records_in_plan_order()?;
    let log = out.join("calls.jsonl");
    let io = |source| AuditError::Io {
        path: log.clone(),
        source,
    };
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&log).map_err(io)?);
    for record in &records {
        serde_json::to_writer(&mut writer, record).map_err(|e| io(e.into()))?;
        writer.write_all(b"\n").map_err(io)?;
    }
    writer.flush().map_err(io)?;
    drop(writer);
    drop(store);
    drop(_lock);
    audit::rerender(out)?;
    Ok(MergeOutcome {
        planned: plan.calls.len(),
        committed: records.len(),
        missing,
    })
}
