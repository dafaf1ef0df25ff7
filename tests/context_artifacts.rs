//! Planted effects on the new context-side (`bandwagon`, `compassion-fade`) and answer-side
//! (`flattery`, `markdown-bold`) artifacts: simulated judges that see only the rendered prompt
//! (the note or the model names in it, the flattery phrase, the bold markup) are audited on the
//! built-in pairs. The biased judge's effects are recovered inside their intervals and flagged;
//! the unbiased judge is not flagged on any of them. Small on purpose: 48 pairs, one repeat,
//! 300 bootstrap resamples.

use serde_json::Value;

const AUDIT: &str = r#"
seed = 11

[design]
repeats = 1
bootstrap_resamples = 300
artifacts = ["bandwagon", "compassion-fade", "flattery", "markdown-bold"]

[[judge]]
name = "sim-planted"
backend = "sim"
[judge.sim]
accuracy = 0.8
artifact_preference = { bandwagon = 0.6, compassion-fade = -0.5, flattery = 0.5, markdown-bold = 0.4 }

[[judge]]
name = "sim-clean"
backend = "sim"
[judge.sim]
accuracy = 0.8
"#;

#[test]
fn planted_effects_on_new_artifacts_are_recovered_and_the_unbiased_judge_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.toml"), AUDIT).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .current_dir(dir.path())
        .args([
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap(),
    )
    .unwrap();
    let judge = |name: &str| {
        summary["judges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap()
            .clone()
    };
    let planted = judge("sim-planted");
    let artifacts = planted["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 4);
    for a in artifacts {
        let value = a["planted"]["value"].as_f64().unwrap();
        let t = &a["tie_detection"];
        let (lo, hi) = (
            t["ci_low"].as_f64().unwrap(),
            t["ci_high"].as_f64().unwrap(),
        );
        assert_eq!(
            a["planted"]["recovered"], true,
            "{}: {value} not in [{lo}, {hi}]",
            a["artifact"]
        );
        assert!(lo <= value && value <= hi, "{a}");
        // Detected, not merely covered: the interval excludes 0 on the planted side.
        assert!(if value > 0.0 { lo > 0.0 } else { hi < 0.0 }, "{a}");
        assert_eq!(a["significant"], true, "{}", a["artifact"]);
        // Every answer is a treatment (none already carries these artifacts).
        assert_eq!(
            a["perturbation"]["effective"], a["perturbation"]["targets"],
            "{a}"
        );
    }
    let clean = judge("sim-clean");
    for a in clean["artifacts"].as_array().unwrap() {
        assert_eq!(a["significant"], false, "{a}");
        let t = &a["tie_detection"];
        assert!(
            t["ci_low"].as_f64().unwrap() <= 0.0 && 0.0 <= t["ci_high"].as_f64().unwrap(),
            "{a}"
        );
    }
    let reasons: Vec<String> = clean["trust"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    for id in ["bandwagon", "compassion-fade", "flattery", "markdown-bold"] {
        assert!(!reasons.iter().any(|r| r.contains(id)), "{reasons:?}");
    }
    assert_ne!(clean["trust"]["verdict"], "REJECT");
}
