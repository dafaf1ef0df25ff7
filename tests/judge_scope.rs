//! A judge audited on a scope (`audit_max_pairs`, `audit_artifacts`) is analysed on that scope
//! alone: pairs it never saw are neither counted as errors nor listed in its categories, while
//! an unscoped judge of the same run still covers the whole dataset. The scoped judge here always
//! picks the first slot, and its findings say so first.

use serde_json::Value;
use std::process::Command;

fn judge<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("judge {name} in summary.json"))
}

#[test]
fn a_scoped_judge_is_analysed_on_its_own_pairs_only() {
    let dir = tempfile::tempdir().unwrap();
    let scoped = dir.path().join("sim-scoped.toml");
    std::fs::write(
        &scoped,
        r#"name = "sim-scoped"
backend = "sim"
model = "simulated"
seed = 7
audit_max_pairs = 10
audit_artifacts = ["apology", "position"]

[sim]
accuracy = 0.8
noise = 0.05
tie_rate = 0.1
position_bias = 1.0
"#,
    )
    .unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "seed = 42\njudges = [\"sim-unbiased\", \"sim-scoped.toml\"]\n",
    )
    .unwrap();
    let out = dir.path().join("run");
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
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let total_pairs = summary["dataset"]["pairs"].as_u64().unwrap();
    assert!(
        total_pairs > 10,
        "the built-in dataset is larger than the scope"
    );

    let scoped = judge(&summary, "sim-scoped");
    // 10 pairs × (4 baseline + 2 × 2 tie-detection for apology and position + 4 apology shifts).
    assert_eq!(scoped["calls"]["planned"], 10 * (4 + 4 + 4));
    let consistency = &scoped["baseline"]["position_consistency"];
    assert_eq!(
        consistency["n"].as_u64().unwrap() + consistency["error"].as_u64().unwrap(),
        10
    );
    assert_eq!(consistency["error"], 0, "every call of the scope completed");
    let category_pairs: u64 = scoped["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pairs"].as_u64().unwrap())
        .sum();
    assert_eq!(category_pairs, 10);
    // A judge that always picks the first slot is called position-biased, first and plainly.
    assert_eq!(consistency["prefers_first"], 10);
    let findings = scoped["findings"].as_array().unwrap();
    assert!(
        findings[0]
            .as_str()
            .unwrap()
            .starts_with("Heavily position-biased: in 10 of 10 pairs the answer shown first won"),
        "{findings:?}"
    );
    let artifacts: Vec<&str> = scoped["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["artifact"].as_str().unwrap())
        .collect();
    assert!(artifacts.contains(&"apology") && artifacts.contains(&"position"));
    // The small-audit flag counts the judge's own 10 pairs, not the 0 of the artifacts outside
    // its scope (the SmolLM2 demo said "only 0 pairs").
    assert_eq!(
        scoped["small_audit"]["pairs"], 10,
        "{}",
        scoped["small_audit"]
    );
    // Its confirmatory family (one per judge by default) is its own 2 artifacts × 3 tests, in
    // the small-audit flag, in every artifact's minimum-detectable row and in the Holm family.
    assert_eq!(
        scoped["small_audit"]["family_size"], 6,
        "{}",
        scoped["small_audit"]
    );
    for a in scoped["artifacts"].as_array().unwrap() {
        assert_eq!(a["mde"]["family_size"], 6, "{}", a["artifact"]);
    }
    let family = scoped["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a["tie_detection"]["p_family"].as_str())
        .expect("a tested artifact");
    assert!(
        family.contains("over 6 tests (grid[sim-scoped])"),
        "{family}"
    );
    let holm_tests = summary["analysis"]["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "grid[sim-scoped]")
        .map(|f| f["tests"].clone());
    assert_eq!(holm_tests, Some(serde_json::json!(6)));

    let full = judge(&summary, "sim-unbiased");
    let consistency = &full["baseline"]["position_consistency"];
    assert_eq!(
        consistency["n"].as_u64().unwrap() + consistency["error"].as_u64().unwrap(),
        total_pairs
    );
    assert!(
        !full["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().contains("position-biased")),
        "the unbiased judge is not called position-biased"
    );
    let category_pairs: u64 = full["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pairs"].as_u64().unwrap())
        .sum();
    assert_eq!(category_pairs, total_pairs);
}
