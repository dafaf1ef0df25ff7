//! A full audit of a real language model served by a real third-party OpenAI-compatible server
//! (llama.cpp's `llama-server` with SmolLM2-135M-Instruct), through the `openai` backend with
//! log-probability verdicts. `.ci/run` builds and starts the server and sets
//! `JUDGE_AUDIT_LLAMA_SERVER_URL`; without it (at build time, see build.rs) the test is reported
//! `ignored` with the reason, and `JUDGE_AUDIT_REQUIRE_LLAMA_SERVER=1` makes it run and fail.
//!
//! It asserts structure, not accuracy: a 135M-parameter judge is expected to be poor.

use serde_json::Value;
use std::path::Path;

/// The server under test; a test that is not ignored fails without one.
fn server_url() -> String {
    match std::env::var("JUDGE_AUDIT_LLAMA_SERVER_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "JUDGE_AUDIT_LLAMA_SERVER_URL is not set; unset JUDGE_AUDIT_REQUIRE_LLAMA_SERVER to have this test ignored"
        ),
    }
}

fn audit(dir: &Path, url: &str, out: &str) -> Value {
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            r#"
seed = 3
[dataset]
limit = 3
[design]
repeats = 2
artifacts = ["apology", "position"]
[run]
concurrency = 1
[[judge]]
name = "smollm2-llama-server"
backend = "openai"
model = "smollm2"
base_url = "{url}"
template = "letter-safety"
temperature = 0.0
max_tokens = 1
logprobs = true
top_logprobs = 10
timeout_secs = 120
"#
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .current_dir(dir)
        .args([
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            out,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("summary.json")).unwrap())
        .unwrap()
}

#[test]
#[cfg_attr(
    not(judge_audit_llama_server),
    ignore = "needs a llama-server: set JUDGE_AUDIT_LLAMA_SERVER_URL (scripts/start-llama-server.sh) and rebuild"
)]
fn audit_of_smollm2_through_llama_server_with_logprob_verdicts() {
    let url = server_url();
    let dir = tempfile::tempdir().unwrap();
    let first = audit(dir.path(), &url, "first");
    let judge = &first["judges"][0];
    // 3 pairs × (4 baseline + 2 apology tie + 2 position tie + 4 apology shift) = 36 judgments.
    assert_eq!(judge["calls"]["planned"], 36);
    assert_eq!(judge["calls"]["completed"], 36);
    let calls = judge_audit::run::read_calls(&dir.path().join("first/calls.jsonl")).unwrap();
    assert_eq!(calls.len(), 36);
    for call in &calls {
        let verdict = call.verdict.expect("every call has a verdict");
        assert!(
            !matches!(verdict, judge_audit::judge::SlotVerdict::Invalid),
            "{}: unparseable answer {:?}",
            call.call_id,
            call.raw
        );
        let probs = call.label_probs.expect("log-probability verdicts");
        for p in [probs.first, probs.second, probs.tie] {
            assert!(p.is_finite() && (0.0..=1.0).contains(&p), "{probs:?}");
        }
        assert!(
            probs.first + probs.second + probs.tie <= 1.0 + 1e-9,
            "{probs:?}"
        );
    }
    let consistency = &judge["baseline"]["position_consistency"];
    assert_eq!(
        consistency["n"], 3,
        "position consistency is computed on every pair"
    );
    // Temperature 0, one request at a time: a second audit gives the same verdicts.
    audit(dir.path(), &url, "second");
    let again = judge_audit::run::read_calls(&dir.path().join("second/calls.jsonl")).unwrap();
    let by_id: std::collections::HashMap<&str, _> = again
        .iter()
        .map(|c| (c.call_id.as_str(), c.verdict))
        .collect();
    for call in &calls {
        assert_eq!(
            by_id[call.call_id.as_str()],
            call.verdict,
            "{}",
            call.call_id
        );
    }
    eprintln!(
        "SmolLM2 via llama-server: trust {}, position consistency {}",
        judge["trust"]["verdict"], consistency["rate"]["estimate"]
    );
}
