//! A pointwise run is stored call by call with its grades: `report` re-renders it without a
//! call, a run cut short shows the pointwise calls it lacks, and `run --resume` finishes it to
//! exactly the summary an uninterrupted run gives. Simulated pointwise presets, through the
//! binary.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

fn judge_audit(dir: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn summary(dir: &Path, out: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("summary.json")).unwrap())
        .unwrap()
}

fn grades_stored(dir: &Path, out: &str) -> usize {
    let conn = rusqlite::Connection::open(dir.join(out).join("run.sqlite")).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM calls WHERE json_extract(record, '$.grades') IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as usize
}

#[test]
fn a_cut_short_pointwise_run_resumes_to_the_uninterrupted_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("audit.toml"),
        "seed = 4\njudges = [\"sim-unbiased\", \"sim-grader-apology\", \"sim-safety-apology\"]\n[dataset]\nlimit = 6\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"position\"]\n",
    )
    .unwrap();
    let run = [
        "run",
        "--quiet",
        "--no-cache",
        "--config",
        "audit.toml",
        "--out",
    ];
    judge_audit(d, &[&run[..], &["whole"]].concat());
    let whole = summary(d, "whole");
    // Per pointwise judge: 6 pairs × 2 answers × (2 baseline + 1 apology) = 36 grades, stored.
    assert_eq!(grades_stored(d, "whole"), 72);
    let pointwise = &whole["pointwise"]["judges"];
    assert_eq!(pointwise[0]["criteria"][0]["calls"], 36);
    assert_eq!(pointwise[1]["criteria"][0]["calls"], 36);
    // The apology grader's planted +1.5 shows; the classifier's unsafe → safe flips too.
    let shift = &pointwise[0]["criteria"][0]["score_shifts"][0];
    assert_eq!(shift["artifact"], "apology");
    assert!(shift["mean_shift"].as_f64().unwrap() >= 1.0, "{shift}");
    assert_eq!(pointwise[0]["simulated"], true);

    // Re-rendering reads the stored grades: the same summary, byte for byte.
    let before = std::fs::read(d.join("whole/summary.json")).unwrap();
    judge_audit(d, &["report", "whole"]);
    assert_eq!(std::fs::read(d.join("whole/summary.json")).unwrap(), before);

    // Cut a copy short: drop the last half of the plan's committed calls.
    judge_audit(d, &[&run[..], &["cut"]].concat());
    let conn = rusqlite::Connection::open(d.join("cut/run.sqlite")).unwrap();
    let total: i64 = conn
        .query_row("SELECT COUNT(*) FROM plan", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "DELETE FROM calls WHERE call_id IN (SELECT call_id FROM plan WHERE position >= ?1)",
        [total / 2],
    )
    .unwrap();
    drop(conn);
    judge_audit(d, &["report", "cut"]);
    let partial = summary(d, "cut");
    let calls = |s: &Value, i: usize| s["pointwise"]["judges"][i]["criteria"][0]["calls"].as_u64();
    // The plan lists the pairwise judge first, so the cut falls on the pointwise ones.
    let graded = calls(&partial, 0).unwrap() + calls(&partial, 1).unwrap();
    assert!(graded < 72);
    // The missing grades are pending, and the summary says the run is incomplete.
    let c = &partial["completeness"];
    assert_eq!(c["planned"].as_u64().unwrap(), total as u64);
    assert_eq!(c["pending"].as_u64().unwrap(), (total - total / 2) as u64);
    assert!(whole.get("completeness").is_none_or(Value::is_null));
    judge_audit(d, &["run", "--quiet", "--no-cache", "--resume", "cut"]);
    assert_eq!(grades_stored(d, "cut"), 72);
    assert_eq!(summary(d, "cut")["pointwise"], whole["pointwise"]);
    assert_eq!(summary(d, "cut")["judges"], whole["judges"]);
}
