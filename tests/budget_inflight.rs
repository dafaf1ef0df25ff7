//! `--max-cost` with calls in flight, through the binary against a loopback OpenAI-compatible
//! server: a call whose worst case does not fit waits for the calls in flight to settle (they
//! cost far less than their worst case) instead of ending the run, and the run still never
//! spends more than the budget.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::{MockServer, Reply, chat_completion_with_usage};

const PAIRS: usize = 60;
/// Calls planned: per pair 2 baseline + 4 apology shifts + 2 apology tie checks (`judge-audit
/// plan` on this config: 120 + 240 + 120).
const PLANNED: usize = 480;
const BUDGET: f64 = 30.0;

fn write_inputs(dir: &Path) {
    let mut pairs = String::new();
    for i in 0..PAIRS {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i:03}"),
                "prompt": format!("Question number {i}: is it safe to do thing {i}?"),
                "response_a": format!("Answer A{i}. It explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}. It says thing {i} is fine."),
                "preferred": if i % 2 == 0 { "a" } else { "b" },
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    // $10,000 per million tokens: a call's worst case (its prompt estimate of about 560 tokens
    // plus max_tokens = 16) is about $5.74, while each reply's 25 + 5 tokens cost $0.30.
    std::fs::write(
        dir.join("audit.toml"),
        r#"
seed = 7

[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["apology"]
bootstrap_resamples = 200

[run]
concurrency = 4

[[judge]]
name = "loopback"
backend = "openai"
model = "test-model"
template = "chen-safety"
max_retries = 0

[judge.pricing]
input_per_mtok = 10000.0
output_per_mtok = 10000.0
"#,
    )
    .unwrap();
}

fn command(dir: &Path, base_url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    cmd.args(args)
        .current_dir(dir)
        .env("OPENAI_BASE_URL", base_url)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY");
    cmd
}

/// A $30 budget holds about five worst cases but pays for about 80 actual calls. At concurrency
/// 4 the old budget latched "exhausted" at the first call that did not fit beside four
/// outstanding reservations (about 5 calls sent); now the run goes on until a call does not fit
/// with nothing in flight: spend above $30 − one worst case, so more than (30 − 5.8) / 0.30 ≈ 80
/// calls, and never above $30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_settle_before_the_budget_is_declared_exhausted() {
    let server = MockServer::start(|_| {
        let mut reply = Reply::json(chat_completion_with_usage("Output (a)", 25, 5));
        // Replies take a moment, so the four workers' calls overlap.
        reply.delay = Some(Duration::from_millis(15));
        reply
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let base_url = server.base_url();
    let (plan, output) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            let plan = command(&dir, &base_url, &["plan", "--config", "audit.toml"])
                .output()
                .unwrap();
            let budget = BUDGET.to_string();
            let args = [
                "run",
                "--config",
                "audit.toml",
                "--no-cache",
                "--max-cost",
                &budget,
                "--out",
                "out",
            ];
            (plan, command(&dir, &base_url, &args).output().unwrap())
        }
    })
    .await
    .unwrap();
    // The premise, from the plan's own estimate: the budget holds fewer than six worst cases.
    let plan = String::from_utf8_lossy(&plan.stdout).to_string();
    let total: f64 = plan
        .split("estimated total: $")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {plan}"));
    let worst = total / PLANNED as f64;
    assert!(
        BUDGET / worst > 4.0 && BUDGET / worst < 6.0,
        "worst case ${worst}"
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run failed: {stderr}");
    let sent = server.count();
    let lower = ((BUDGET - 1.05 * worst) / 0.30).floor() as usize;
    assert!(
        sent >= lower && sent < PLANNED,
        "sent {sent}, expected at least {lower}: {stderr}"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap(),
    )
    .unwrap();
    let calls = &summary["judges"][0]["calls"];
    assert_eq!(calls["completed"], sent, "every answer is kept");
    assert_eq!(calls["failed"], 0);
    assert_eq!(calls["pending"], (PLANNED - sent) as u64);
    let spent =
        (calls["input_tokens"].as_f64().unwrap() + calls["output_tokens"].as_f64().unwrap()) * 0.01;
    assert!(spent <= BUDGET, "spent ${spent}");
    assert!(
        stderr.contains(&format!("{sent} calls sent"))
            && stderr.contains("not sent for the cost budget"),
        "{stderr}"
    );
}
