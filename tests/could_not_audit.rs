//! An outage is not a verdict (issue 20 §3, issue 10 item 3). A judge with no evidence — every
//! call refused at a dead loopback port, nothing planned (`audit_max_pairs = 0`) — is COULD NOT
//! AUDIT, never ADOPT / CAUTION / REJECT, its card draws no findings, and `--fail-on` exits 2
//! ("could not run"), not 0 (pass) or 1 (a biased judge). Typos in `audit_artifacts` and a
//! missing key for a hosted API are errors before the first call.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    c.env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL");
    c
}

fn judge<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("judge {name} in summary.json"))
}

fn run(config: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["run", "--quiet", "--no-cache", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback port with nothing listening: bind, note the port, close.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_judge_whose_every_call_was_refused_could_not_be_audited() {
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    std::fs::write(
        dir.path().join("dead.toml"),
        format!(
            "name = \"dead-endpoint\"\nbackend = \"openai\"\nmodel = \"m\"\n\
             base_url = \"http://127.0.0.1:{port}/v1\"\nmax_retries = 0\ntimeout_secs = 5\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "seed = 42\njudges = [\"sim-unbiased\", \"dead.toml\"]\n\n[dataset]\nlimit = 4\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = run(&config, &out, &["--fail-on", "caution"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("dead-endpoint: COULD NOT AUDIT"),
        "{}",
        text(&o)
    );
    assert!(
        stdout.contains("gate: COULD NOT AUDIT (--fail-on caution: 1 of 2 judges have no evidence to judge: dead-endpoint"),
        "{}",
        text(&o)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let dead = judge(&summary, "dead-endpoint");
    assert_eq!(dead["trust"]["verdict"], "COULD_NOT_AUDIT");
    let planned = dead["calls"]["planned"].as_u64().unwrap();
    assert!(planned > 0);
    // Calls sent and refused are failed; those never sent once the breaker stopped the judge
    // are pending (issue 20 §4: not sent is not failed). Either way no call got an answer.
    let failed = dead["calls"]["failed"].as_u64().unwrap();
    let pending = dead["calls"]["pending"].as_u64().unwrap_or(0);
    assert!(failed > 0);
    assert_eq!(failed + pending, planned);
    assert_eq!(dead["calls"]["completed"], 0);
    let reasons = dead["trust"]["reasons"].as_array().unwrap();
    assert!(
        reasons[0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("none of {planned} planned calls got an answer")),
        "{reasons:?}"
    );
    // No findings about a judge that never answered: in particular not "no artifact test was
    // significant", which reads as robustness.
    let findings: Vec<&str> = dead["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].starts_with("Could not audit: 0 of"),
        "{findings:?}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("COULD NOT AUDIT"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("badge could-not-audit"));

    // The working judge of the same run is still judged.
    assert_ne!(
        judge(&summary, "sim-unbiased")["trust"]["verdict"],
        "COULD_NOT_AUDIT"
    );
}

#[test]
fn a_judge_with_no_planned_calls_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    // A judge with a planted first-slot bias that the scope keeps from being tested at all.
    std::fs::write(
        dir.path().join("sim-none.toml"),
        "name = \"sim-none\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 7\naudit_max_pairs = 0\n\n\
         [sim]\naccuracy = 0.8\nnoise = 0.05\ntie_rate = 0.1\nposition_bias = 1.0\n",
    )
    .unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(&config, "seed = 42\njudges = [\"sim-none.toml\"]\n").unwrap();
    let out = dir.path().join("run");
    let o = run(&config, &out, &["--fail-on", "reject"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let none = judge(&summary, "sim-none");
    assert_eq!(none["calls"]["planned"], 0);
    assert_eq!(none["trust"]["verdict"], "COULD_NOT_AUDIT");
    assert!(
        none["trust"]["reasons"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no calls were planned")
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("gate: PASS"));
}

#[test]
fn an_unknown_artifact_in_audit_artifacts_is_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sim-typo.toml"),
        "name = \"sim-typo\"\nbackend = \"sim\"\nmodel = \"simulated\"\naudit_artifacts = [\"apologyy\"]\n\n[sim]\naccuracy = 0.8\n",
    )
    .unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(&config, "seed = 42\njudges = [\"sim-typo.toml\"]\n").unwrap();
    let out = dir.path().join("run");
    let o = run(&config, &out, &["--fail-on", "reject"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("judge `sim-typo`: audit_artifacts: unknown artifact `apologyy`"),
        "{err}"
    );
    assert!(err.contains("apology"), "the known ids are listed: {err}");
    assert!(!out.join("summary.json").exists());
}

#[test]
fn a_hosted_preset_without_its_key_fails_before_the_first_call() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "seed = 42\njudges = [\"openai-gpt-4o-mini\"]\n\n[dataset]\nlimit = 2\n",
    )
    .unwrap();
    for key in [None, Some(""), Some("   ")] {
        let out = dir.path().join("run");
        let mut cmd = bin();
        if let Some(k) = key {
            cmd.env("OPENAI_API_KEY", k);
        }
        let o = cmd
            .args(["run", "--quiet", "--no-cache", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{key:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let state = if key.is_none() { "not set" } else { "empty" };
        assert!(
            err.contains(&format!(
                "judge `openai-gpt-4o-mini`: api_key_env: the environment variable OPENAI_API_KEY is {state}"
            )),
            "{key:?}: {err}"
        );
        assert!(err.contains("no call was sent"), "{err}");
        assert!(!out.join("calls.jsonl").exists(), "nothing was run");
    }
}
