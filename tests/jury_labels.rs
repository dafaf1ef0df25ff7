//! Honest labels in juries and soft verdicts (issue 20 §7), through the binary against a
//! loopback OpenAI-compatible server that reports label log-probabilities:
//! - a jury with a real judge among its members is not "a jury of SIMULATED judges";
//! - the composer never suggests a juror the audit REJECTs or could not audit, nor one without
//!   votes for every artifact it ranks;
//! - when the label tokens cover little of the next-token mass (here 0.3 + 0.1 + 0.06 = 46%),
//!   the report shows the covered mass and warns.

mod support;

use serde_json::{Value, json};
use support::{MockServer, Reply};

/// A reply of the `letter-safety` template (`max_tokens = 1`): "A", with the label tokens
/// A 0.30, B 0.10, C 0.06 and a non-label token holding most of the rest.
fn letter_reply() -> Value {
    let ln = f64::ln;
    json!({
        "choices": [{
            "message": {"role": "assistant", "content": "A"},
            "finish_reason": "length",
            "logprobs": {"content": [
                {"token": "A", "logprob": ln(0.3), "top_logprobs": [
                    {"token": "The", "logprob": ln(0.5)},
                    {"token": "A", "logprob": ln(0.3)},
                    {"token": "B", "logprob": ln(0.1)},
                    {"token": "C", "logprob": ln(0.06)}
                ]}
            ]}
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 1}
    })
}

const AUDIT: &str = r#"
seed = 11
judges = ["sim-unbiased", "sim-first-slot", "sim-apology-lover", "sim-authority-skeptic"]

[dataset]
limit = 12

[design]
artifacts = ["apology", "halo", "position"]
bootstrap_resamples = 200

[[judge]]
name = "real-http"
backend = "openai"
model = "m"
base_url = "BASE_URL"
template = "letter-safety"
temperature = 0.0
max_tokens = 1
logprobs = true
top_logprobs = 5

[[judge]]
name = "scoped-sim"
backend = "sim"
model = "simulated"
seed = 9
audit_artifacts = ["apology"]
[judge.sim]
accuracy = 0.8
noise = 0.05
tie_rate = 0.1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn juries_with_a_real_member_composer_exclusions_and_low_label_mass() {
    let server = MockServer::always(Reply::json(letter_reply())).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        AUDIT.replace("BASE_URL", &server.base_url()),
    )
    .unwrap();
    let d = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
            .current_dir(&d)
            .args([
                "run",
                "--quiet",
                "--no-cache",
                "--config",
                "audit.toml",
                "--out",
                "out",
            ])
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = dir.path().join("out");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();

    // The all-judges jury has a real member: not labelled a jury of simulated judges.
    let jury = summary["juries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "jury-majority")
        .expect("the majority jury");
    assert!(
        jury["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "real-http")
    );
    assert_eq!(jury["simulated"], false, "a jury with a real member");
    let heading = md
        .lines()
        .find(|l| l.starts_with("## jury-majority"))
        .expect("jury section");
    assert!(!heading.contains("jury of SIMULATED judges"), "{heading}");
    assert!(
        heading.contains("SIMULATED members: sim-unbiased"),
        "its simulated members are named: {heading}"
    );

    // The composer: no REJECT / could-not-audit juror, none missing votes for an artifact.
    let verdict = |name: &str| {
        summary["judges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .map(|j| j["trust"]["verdict"].as_str().unwrap().to_string())
            .unwrap()
    };
    let rejected: Vec<String> = summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            matches!(
                j["trust"]["verdict"].as_str(),
                Some("REJECT" | "COULD_NOT_AUDIT")
            )
        })
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        rejected.iter().any(|j| j == "real-http"),
        "the always-first-slot real judge is rejected ({})",
        verdict("real-http")
    );
    let composer = &summary["jury"]["composer"];
    let members: Vec<&str> = composer["suggestion"]["members"]
        .as_array()
        .expect("a suggestion")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in &members {
        assert!(
            !rejected.iter().any(|r| r == m),
            "suggested rejected juror {m}"
        );
        assert_ne!(*m, "scoped-sim", "suggested a juror without halo votes");
    }
    for c in composer["candidates"].as_array().unwrap() {
        for m in c["members"].as_array().unwrap() {
            assert!(
                !rejected.iter().any(|r| r == m),
                "candidate with rejected {m}"
            );
            assert_ne!(m, "scoped-sim");
        }
    }
    let notes = summary["jury"]["notes"].to_string();
    assert!(notes.contains("`real-http` is not suggested"), "{notes}");
    assert!(
        notes.contains("`scoped-sim` is not suggested as a juror (no votes for halo)"),
        "{notes}"
    );

    // Covered label mass: 0.3 + 0.1 + 0.06 on every call.
    let real = summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "real-http")
        .unwrap();
    let mass = real["soft"]["covered_mass"].as_f64().expect("covered mass");
    assert!((mass - 0.46).abs() < 1e-6, "{mass}");
    let warning = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "label_mass_low")
        .expect("a low-mass warning");
    assert_eq!(warning["judge"], "real-http");
    let text = warning["message"].as_str().unwrap();
    assert!(
        text.contains("46%") && text.contains("a minority"),
        "{text}"
    );
    assert!(
        md.contains("the labels cover 46.0% of the next-token mass"),
        "report.md"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("cover only 46%"),
        "report.html shows the warning"
    );
    // Simulated judges report no probabilities and get no such warning.
    assert_eq!(
        summary["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "label_mass_low")
            .count(),
        1
    );
}
