//! `--fail-on caution|reject`: exit code 0 when the gate passes, 1 when it trips, 2 when the
//! audit could not run; the printed `gate:` line always agrees with the exit code.

mod report_common;

use judge_audit::analyze::Trust;
use judge_audit::report::gate;
use report_common::{bin, scratch};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gate_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with("gate: "))
        .map(str::to_string)
        .collect()
}

fn verdicts(out: &Path) -> Vec<String> {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Pairwise judges, then pointwise ones: the gate counts both, in that order.
    let pointwise = summary["pointwise"]["judges"].as_array().cloned();
    summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pointwise.iter().flatten())
        .map(|j| j["trust"]["verdict"].as_str().unwrap().to_string())
        .collect()
}

fn demo(out: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["demo", "--quiet", "--seed", "42", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn demo_without_a_gate_exits_0() {
    let out = scratch("no-gate").join("run");
    let o = demo(&out, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(gate_lines(&o).is_empty(), "no gate, no gate line");
    assert!(out.join("report.html").is_file() && out.join("results.csv").is_file());
}

#[test]
fn demo_fail_on_reject_exits_1() {
    let out = scratch("reject").join("run");
    let o = demo(&out, &["--fail-on", "reject"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let verdicts = verdicts(&out);
    let rejected = verdicts.iter().filter(|v| *v == "REJECT").count();
    assert!(rejected >= 1, "the demo has REJECT judges");
    assert_eq!(
        gate_lines(&o),
        [format!(
            "gate: FAIL (--fail-on reject: {rejected} of {} judges at REJECT or worse: {})",
            verdicts.len(),
            stdout(&o)
                .lines()
                .filter(|l| l.ends_with(": REJECT"))
                // "name [simulated]: REJECT" or "name [simulated] (score judge): REJECT".
                .map(|l| format!("{} REJECT", l.split(" [simulated]").next().unwrap()))
                .collect::<Vec<_>>()
                .join(", ")
        )]
    );
    // The reports are written before the gate is applied.
    assert!(out.join("report.html").is_file());
}

#[test]
fn demo_fail_on_caution_counts_caution_and_reject() {
    let out = scratch("caution").join("run");
    let o = demo(&out, &["--fail-on", "caution"]);
    assert_eq!(o.status.code(), Some(1));
    let verdicts = verdicts(&out);
    let tripped = verdicts.iter().filter(|v| *v != "ADOPT").count();
    let line = &gate_lines(&o)[0];
    assert!(
        line.starts_with(&format!(
            "gate: FAIL (--fail-on caution: {tripped} of {} judges at CAUTION or worse: ",
            verdicts.len()
        )),
        "{line}"
    );
}

#[test]
fn unbiased_judge_alone_passes_a_caution_gate() {
    let dir = scratch("unbiased");
    let config = dir.join("audit.toml");
    std::fs::write(&config, "seed = 42\njudges = [\"sim-unbiased\"]\n").unwrap();
    let out = dir.join("run");
    let o = bin()
        .args(["run", "--quiet", "--fail-on", "caution", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    // The premise: with the demo seed the unbiased judge is adopted.
    assert_eq!(verdicts(&out), ["ADOPT"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        gate_lines(&o),
        ["gate: PASS (--fail-on caution: no judge at CAUTION or worse; worst verdict ADOPT)"]
    );
}

#[test]
fn an_audit_that_cannot_run_exits_2() {
    let dir = scratch("broken");
    let cases = [
        (
            "unknown-field.toml",
            "seed = 42\njudgez = [\"sim-unbiased\"]\n",
        ),
        ("unknown-judge.toml", "judges = [\"no-such-judge\"]\n"),
        ("not-toml.toml", "this is not = = toml\n"),
    ];
    for (name, text) in cases {
        let config = dir.join(name);
        std::fs::write(&config, text).unwrap();
        let o = bin()
            .args(["run", "--quiet", "--fail-on", "reject", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            gate_lines(&o).is_empty(),
            "{name}: no verdict, no gate line"
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("judge-audit: error:"), "{name}: {stderr}");
    }
    let o = bin()
        .args(["run", "--fail-on", "reject", "--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
    // A bad gate value is a usage error, also 2.
    let o = bin().args(["demo", "--fail-on", "maybe"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn gate_thresholds() {
    let mut summary = report_common::demo_summary(42);
    let set = |s: &mut judge_audit::report::Summary, verdicts: &[Trust]| {
        for (j, v) in s.judges.iter_mut().zip(verdicts) {
            j.trust.verdict = *v;
        }
        // The demo's pointwise judges pass here, so the pairwise verdicts decide the gate.
        for j in s.pointwise.iter_mut().flat_map(|p| &mut p.judges) {
            j.trust.verdict = Adopt;
        }
    };
    use Trust::*;
    set(
        &mut summary,
        &[Adopt, Adopt, Caution, Adopt, Adopt, Adopt, Adopt],
    );
    assert!(gate(&summary, Reject).passed);
    let g = gate(&summary, Caution);
    assert!(!g.passed);
    assert_eq!(
        g.line,
        "gate: FAIL (--fail-on caution: 1 of 10 judges at CAUTION or worse: sim-first-slot CAUTION)"
    );
    set(&mut summary, &[Adopt; 7]);
    assert!(gate(&summary, Caution).passed);
    summary.judges.clear();
    summary.pointwise = None;
    let g = gate(&summary, Reject);
    assert!(!g.passed, "nothing checked is not a pass");
    assert!(g.line.starts_with("gate: FAIL"));
}
