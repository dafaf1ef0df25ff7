//! An interrupted run says so (issue 20 §4): calls never sent are pending, not failed; every
//! format carries the "incomplete run: verdicts provisional" banner; `run --resume DIR --dry-run`
//! prints what is left; and the resumed run's summary is byte-identical to an uninterrupted one.
//!
//! The interruption is made deterministic: a finished run's store loses the records of the last
//! part of its plan, exactly what a kill before those calls were committed leaves behind.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

fn judge_audit(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: exit {:?}\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

const AUDIT: &str = r#"
seed = 7
judges = ["sim-unbiased", "sim-apology-lover"]

[dataset]
limit = 6

[design]
artifacts = ["apology", "position"]
bootstrap_resamples = 200
"#;

const ALL_FORMATS: [&str; 12] = [
    "--format",
    "json",
    "--format",
    "markdown",
    "--format",
    "html",
    "--format",
    "csv",
    "--format",
    "junit",
    "--format",
    "gh-summary",
];

/// Keep only the first `keep` calls of the stored plan, as a kill would.
fn drop_records_after(out: &Path, keep: usize) -> usize {
    let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
    conn.execute(
        "DELETE FROM calls WHERE call_id IN (SELECT call_id FROM plan WHERE position >= ?1)",
        [keep as i64],
    )
    .unwrap()
}

fn pending_by_judge(out: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
    let mut q = conn
        .prepare(
            "SELECT p.judge, COUNT(*) FROM plan p LEFT JOIN calls c ON c.call_id = p.call_id
             WHERE c.call_id IS NULL GROUP BY p.judge ORDER BY MIN(p.position)",
        )
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_interrupted_run_is_incomplete_pending_is_not_failed_and_resume_dry_run_shows_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.toml"), AUDIT).unwrap();
    let mut args = vec![
        "run",
        "--quiet",
        "--no-cache",
        "--config",
        "audit.toml",
        "--out",
        "out",
    ];
    args.extend(ALL_FORMATS);
    judge_audit(dir.path(), &args);
    let out = dir.path().join("out");
    let complete = std::fs::read(out.join("summary.json")).unwrap();
    let complete_json: Value = serde_json::from_slice(&complete).unwrap();
    assert!(
        complete_json.get("completeness").is_none(),
        "a finished run carries no completeness block"
    );
    let planned = complete_json["plan"]["total_calls"].as_u64().unwrap();
    let keep = 29;
    let removed = drop_records_after(&out, keep) as u64;
    assert_eq!(removed, planned - keep as u64);

    let mut report = vec!["report", "out"];
    report.extend(ALL_FORMATS);
    let rendered = judge_audit(dir.path(), &report);
    let stdout = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        stdout.starts_with("incomplete run: verdicts provisional"),
        "{stdout}"
    );

    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reports/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&summary)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema: {errors:?}");
    let c = &summary["completeness"];
    assert_eq!(c["planned"], planned);
    assert_eq!(c["committed"], keep as u64);
    assert_eq!(c["failed"], 0, "no committed call failed");
    assert_eq!(c["pending"], planned - keep as u64);
    // Per judge: the calls with no record are pending, never failed (the old code said
    // "151 failed" here and derived REJECT from it).
    let expected = pending_by_judge(&out);
    assert!(!expected.is_empty());
    for judge in summary["judges"].as_array().unwrap() {
        let name = judge["name"].as_str().unwrap();
        let want = expected
            .iter()
            .find(|(j, _)| j == name)
            .map_or(0, |(_, n)| *n);
        assert_eq!(judge["calls"]["failed"], 0, "{name}");
        assert_eq!(
            judge["calls"]["pending"].as_i64().unwrap_or(0),
            want,
            "{name}"
        );
    }
    let first = &summary["warnings"][0];
    assert_eq!(first["kind"], "run_incomplete");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("incomplete run: verdicts provisional"),
        "{first}"
    );
    for file in [
        "report.md",
        "report.html",
        "report.junit.xml",
        "step-summary.md",
    ] {
        let path = out.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("incomplete run: verdicts provisional"),
            "{file} has no banner"
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.contains("calls_pending_count"), "results.csv");

    // The dry run lists what is left per judge, not the whole plan.
    let dry = judge_audit(dir.path(), &["run", "--resume", "out", "--dry-run"]);
    let dry = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.contains(&format!(
            "{} of {planned} planned calls pending ({keep} committed)",
            planned - keep as u64
        )),
        "{dry}"
    );
    for (judge, n) in &expected {
        assert!(
            dry.contains(&format!("{judge}: {n} calls pending")),
            "{dry}"
        );
    }
    assert!(
        !dry.contains("plan:"),
        "the dry run printed the whole plan:\n{dry}"
    );
    assert_eq!(pending_by_judge(&out), expected, "a dry run sends nothing");

    // Resumed to the end, the run is complete again and its summary is the uninterrupted one.
    let mut resume = vec!["run", "--quiet", "--no-cache", "--resume", "out"];
    resume.extend(ALL_FORMATS);
    judge_audit(dir.path(), &resume);
    assert_eq!(
        std::fs::read(out.join("summary.json")).unwrap(),
        complete,
        "resumed summary differs from the uninterrupted one"
    );
    let dry = judge_audit(dir.path(), &["run", "--resume", "out", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("nothing left to send"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
}
