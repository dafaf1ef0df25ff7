//! The run store keeps the pairs one row each and the snapshot without them. Runs written by
//! earlier versions, whose snapshot held the pairs inline and had no pair rows, still re-render
//! and resume to the same summary; and stored pairs that no longer match the snapshot's dataset
//! hash are refused.

use rusqlite::{Connection, params};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn judge_audit(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

fn run_small_audit(root: &Path) -> std::path::PathBuf {
    let config = root.join("audit.toml");
    std::fs::write(
        &config,
        "seed = 3\njudges = [\"sim-unbiased\", \"sim-apology-lover\"]\n\n[dataset]\nlimit = 12\n",
    )
    .unwrap();
    let out = root.join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["run", "--quiet", "--no-cache", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

#[test]
fn pairs_are_stored_one_row_each_outside_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_small_audit(dir.path());
    let db = Connection::open(out.join("run.sqlite")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM pairs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 12);
    let snapshot: String = db
        .query_row("SELECT value FROM meta WHERE key = 'snapshot'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["dataset"]["pairs"], Value::Array(Vec::new()));
    assert!(snapshot["dataset"]["hash"].as_str().unwrap().len() == 64);
}

#[test]
fn a_run_in_the_earlier_format_rerenders_and_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_small_audit(dir.path());
    let original = std::fs::read(out.join("summary.json")).unwrap();

    // Rewrite the store the way earlier versions wrote it: pairs inside the snapshot, no rows.
    {
        let db = Connection::open(out.join("run.sqlite")).unwrap();
        let text: String = db
            .query_row("SELECT value FROM meta WHERE key = 'snapshot'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut snapshot: Value = serde_json::from_str(&text).unwrap();
        let mut query = db
            .prepare("SELECT pair FROM pairs ORDER BY position")
            .unwrap();
        let pairs: Vec<Value> = query
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
            .collect();
        assert_eq!(pairs.len(), 12);
        snapshot["dataset"]["pairs"] = Value::Array(pairs);
        db.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'snapshot'",
            params![serde_json::to_string(&snapshot).unwrap()],
        )
        .unwrap();
        db.execute("DELETE FROM pairs", []).unwrap();
    }

    let rendered = judge_audit(&["report"], &out);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), original);

    let resumed = judge_audit(&["run", "--quiet", "--no-cache", "--resume"], &out);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), original);
}

#[test]
fn stored_pairs_that_do_not_match_the_dataset_hash_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_small_audit(dir.path());
    {
        let db = Connection::open(out.join("run.sqlite")).unwrap();
        let text: String = db
            .query_row("SELECT pair FROM pairs WHERE position = 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut pair: Value = serde_json::from_str(&text).unwrap();
        pair["response_a"] = Value::String("tampered".into());
        db.execute(
            "UPDATE pairs SET pair = ?1 WHERE position = 0",
            params![serde_json::to_string(&pair).unwrap()],
        )
        .unwrap();
    }
    let rendered = judge_audit(&["report"], &out);
    assert_eq!(rendered.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(
        stderr.contains("do not match the snapshot's dataset hash"),
        "{stderr}"
    );
}
