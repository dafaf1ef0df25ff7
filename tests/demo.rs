//! The demo as a user runs it: the simulated jury's planted effects are recovered, the unbiased
//! judge shows nothing, every output is labelled, and reruns are byte-identical.

use serde_json::Value;
use std::path::Path;

fn run_demo(out: &Path, seed: u64) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["demo", "--quiet", "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn demo_recovers_planted_effects_and_clears_the_unbiased_judge() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    run_demo(&out, 42);
    for file in ["summary.json", "report.md", "calls.jsonl"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let summary = summary(&out);
    let judges = summary["judges"].as_array().unwrap();
    assert_eq!(judges.len(), 7);
    let mut planted_nonzero = 0;
    let (mut zero_cells, mut zero_missed) = (0, Vec::new());
    for judge in judges {
        assert_eq!(judge["simulated"], true, "{} is simulated", judge["name"]);
        for artifact in judge["artifacts"].as_array().unwrap() {
            let planted = &artifact["planted"];
            let value = planted["value"].as_f64().unwrap();
            let cell = format!(
                "{} / {}: planted {value}, T in [{}, {}]",
                judge["name"],
                artifact["artifact"],
                artifact["tie_detection"]["ci_low"],
                artifact["tie_detection"]["ci_high"]
            );
            if value != 0.0 {
                planted_nonzero += 1;
                assert_eq!(planted["recovered"], true, "{cell}");
                // A planted effect at the rejection size (|T| ≥ 0.2) must also be detected, not
                // merely covered; the mild ±0.12 jurors are below what 48 pairs detect reliably
                // (the MDE note says so), so only their coverage is asserted.
                if value.abs() >= 0.2 {
                    assert_eq!(artifact["significant"], true, "{cell}");
                }
            } else {
                // The simulated judges now judge identical-substance answers by a fresh coin per
                // call (as a real judge at temperature > 0), so a 95% interval misses a zero
                // effect in about 1 cell in 20; the old all-cells expectation relied on shared
                // draws that cancelled the two orders by construction (issue 13).
                zero_cells += 1;
                if planted["recovered"] != true {
                    zero_missed.push(cell);
                }
            }
        }
    }
    // 41 null cells (7 judges × 7 artifacts − 8 planted): at 95% coverage, P(6 or more misses)
    // is 1.6% (binomial(41, 0.05)).
    assert_eq!(zero_cells, 41, "null cells");
    assert!(zero_missed.len() <= 5, "null cells missed: {zero_missed:?}");
    assert_eq!(planted_nonzero, 8, "the demo plants eight effects");
    let unbiased = judges.iter().find(|j| j["name"] == "sim-unbiased").unwrap();
    for artifact in unbiased["artifacts"].as_array().unwrap() {
        assert_eq!(artifact["significant"], false, "{}", artifact["artifact"]);
    }
    assert_eq!(unbiased["trust"]["verdict"], "ADOPT");
    let apology = judges
        .iter()
        .find(|j| j["name"] == "sim-apology-lover")
        .unwrap();
    assert_eq!(apology["trust"]["verdict"], "REJECT");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for judge in judges {
        let heading = format!(
            "## {} (SIMULATED judge)",
            judge["name"].as_str().unwrap().replace('_', "\\_")
        );
        assert!(report.contains(&heading), "{heading}");
    }
}

#[test]
fn same_seed_gives_byte_identical_reports_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    run_demo(&a, 42);
    run_demo(&b, 42);
    run_demo(&c, 43);
    for file in ["summary.json", "report.md"] {
        let first = std::fs::read(a.join(file)).unwrap();
        assert_eq!(
            first,
            std::fs::read(b.join(file)).unwrap(),
            "{file} differs between reruns"
        );
        assert_ne!(
            first,
            std::fs::read(c.join(file)).unwrap(),
            "{file} ignores the seed"
        );
    }
}

#[test]
fn report_rerenders_every_output_byte_identically_without_judges() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    run_demo(&out, 42);
    let files = ["summary.json", "report.md", "report.html", "results.csv"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    let calls_before = std::fs::read(out.join("calls.jsonl")).unwrap();
    for f in files {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (file, bytes) in files.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(out.join(file)).unwrap(),
            bytes,
            "{file} differs after re-rendering"
        );
    }
    // No judge was called: the call log is untouched.
    assert_eq!(
        std::fs::read(out.join("calls.jsonl")).unwrap(),
        calls_before
    );
}
