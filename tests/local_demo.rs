//! With the `local` feature and the SmolLM2 model present, the demo audits the real local judge
//! next to the simulated jury, and the report says what it finds. Skips without the model unless
//! `JUDGE_AUDIT_REQUIRE_MODEL=1`. With `JUDGE_AUDIT_DEMO_DIR` set, it checks the outputs of a demo
//! already run there (CI runs the README's demo command once and checks its outputs here, rather
//! than spending another four minutes of SmolLM2 judgments).
#![cfg(feature = "local")]

use serde_json::Value;

#[test]
fn demo_includes_the_real_smollm2_judge() {
    if !judge_audit::audit::local_demo_judge_available() {
        assert!(
            std::env::var("JUDGE_AUDIT_REQUIRE_MODEL").as_deref() != Ok("1"),
            "JUDGE_AUDIT_REQUIRE_MODEL=1 but the SmolLM2 model is missing (scripts/fetch-model.sh)"
        );
        eprintln!("skipped: no SmolLM2 model (run scripts/fetch-model.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = match std::env::var_os("JUDGE_AUDIT_DEMO_DIR") {
        Some(existing) => std::path::PathBuf::from(existing),
        None => {
            let out = dir.path().join("demo");
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
                .args(["demo", "--quiet", "--out"])
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
    };
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let judge = summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "smollm2-local")
        .expect("the demo audits smollm2-local");
    assert_eq!(judge["simulated"], false);
    // 10 pairs × (4 baseline + 2 apology tie + 2 position tie + 4 apology shift).
    assert_eq!(judge["calls"]["planned"], 120);
    assert_eq!(judge["calls"]["completed"], 120);
    // Position consistency is computed on the judge's own 10 pairs, not the whole dataset.
    let consistency = &judge["baseline"]["position_consistency"];
    assert_eq!(
        consistency["n"].as_u64().unwrap() + consistency["error"].as_u64().unwrap(),
        10
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = report
        .split("\n## ")
        .find(|s| s.starts_with("smollm2-local"))
        .expect("the report has a section for SmolLM2");
    // What the audit found about position is stated in words, whatever it is.
    assert!(
        section.contains("Position consistency: ") && section.contains(" of 10 pairs"),
        "{section}"
    );
    eprintln!("{section}");
}
