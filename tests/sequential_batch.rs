//! Issue 17's batch gap: a sequential audit through `run --batch`, one wave per batch round,
//! against the loopback Batch API of tests/support/batch_api.rs (OpenAI files + batches and
//! Anthropic Message Batches). The batched run must issue the very calls of the synchronous
//! sequential run of the same audit and reach the same decisions after the same waves; its
//! summary differs only in the stopping-rule sentence naming the waves that went through batches
//! (and in honest fault counts where a batch line errored). Kills with SIGKILL during batch
//! create and during polling, then `run --resume`, answer no call twice.
//!
//! The answer rule (as in tests/sequential_openai.rs): the answer that starts with Chen's apology
//! wins when exactly one does, otherwise the first slot. With 40 pairs in waves of 8, apology and
//! position (T = +1 on every pair) are decided after wave 4; halo (T = 0) stays open to the plan
//! end (wave 5) and takes the fixed-n rule, so the waves differ in their calls.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use support::batch_api::*;

const APOLOGY: &str = "I'm sorry, as a chatbot I cannot respond to this.";
const PAIRS: usize = 40;

fn sequential_rule(user: &str) -> &'static str {
    let task = user.rsplit("## Task:").next().unwrap_or(user);
    let after_a = task.split("### Output (a):\n").nth(1).unwrap_or_default();
    let (first, rest) = after_a
        .split_once("\n### Output (b):\n")
        .unwrap_or_default();
    let second = rest
        .split("\n### Which is safer")
        .next()
        .unwrap_or_default();
    match (first.starts_with(APOLOGY), second.starts_with(APOLOGY)) {
        (false, true) => "Output (b)",
        _ => "Output (a)",
    }
}

/// The audit: one judge of `backend`, plus `extra` TOML (another judge).
fn write_inputs(dir: &Path, backend: &str, extra: &str) {
    let mut pairs = String::new();
    for i in 0..PAIRS {
        pairs.push_str(
            &json!({
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
    let toml = format!(
        r#"
seed = 7

[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["apology", "halo", "position"]
bootstrap_resamples = 200
sequential = true
wave_pairs = 8

[run]
concurrency = 4

[[judge]]
name = "batch-judge"
backend = "{backend}"
model = "test-model"
template = "chen-safety"
max_retries = 0
{extra}"#
    );
    std::fs::write(dir.join("audit.toml"), toml).unwrap();
}

const SIM: &str = "
[[judge]]
name = \"sim-judge\"
backend = \"sim\"
model = \"simulated\"
[judge.sim]
accuracy = 0.8
";

async fn server() -> Server {
    let server = Server::start().await;
    server.with(|s| s.rule = Some(sequential_rule));
    server
}

fn run_args<'a>(out: &'a str, batch: bool, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--config",
        "audit.toml",
        "--out",
        out,
        "--quiet",
        "--no-cache",
    ];
    if batch {
        args.extend(["--batch", "--poll-interval", "0"]);
    }
    args.extend_from_slice(extra);
    args
}

async fn run(server: &Server, dir: &Path, args: Vec<&'static str>) -> std::process::Output {
    let (d, base) = (dir.to_path_buf(), server.base_url());
    blocking(move || cli(&d, &base, &args)).await
}

fn summary(dir: &Path, out: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("summary.json")).unwrap()).unwrap()
}

/// The summary with its stopping rule taken out (returned).
fn take_rule(summary: &mut Value) -> String {
    let rule = summary["sequential"]["stopping_rule"].take();
    rule.as_str().unwrap().to_string()
}

/// Call ids of a run's `calls.jsonl`, sorted, each once.
fn call_ids(dir: &Path, out: &str) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join(out).join("calls.jsonl")).unwrap();
    let mut ids: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["call_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a call logged twice");
    ids
}

/// Per judge × artifact: the wave after which the cell was decided.
fn stop_waves(summary: &Value) -> BTreeMap<String, Value> {
    summary["sequential"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["judge"].as_str().unwrap(),
                    c["artifact"].as_str().unwrap()
                ),
                c["decided_after_wave"].clone(),
            )
        })
        .collect()
}

/// Run the audit synchronously (`sync`) and batched (`batched`) with `extra` arguments; check
/// the same calls, the same stop waves and the same summary apart from the stopping rule (and
/// faults, which `faults` says); returns the batched run's stopping rule and the synchronous
/// calls answered by the server.
async fn compare(server: &Server, dir: &Path, extra: &'static [&'static str]) -> (String, usize) {
    ok(&run(server, dir, run_args("sync", false, extra)).await);
    let sync_chat = server.with(|s| s.chat);
    let stdout = ok(&run(server, dir, run_args("batched", true, extra)).await);
    assert!(stdout.contains("report:"), "{stdout}");
    let (mut sync, mut batched) = (summary(dir, "sync"), summary(dir, "batched"));
    assert_eq!(call_ids(dir, "sync"), call_ids(dir, "batched"));
    assert_eq!(stop_waves(&sync), stop_waves(&batched));
    let sync_rule = take_rule(&mut sync);
    let rule = take_rule(&mut batched);
    assert!(rule.starts_with(&sync_rule), "{rule}");
    assert!(!sync_rule.contains("provider batches"), "{sync_rule}");
    if let Some(faults) = find_faults(&mut batched) {
        *faults = json!({});
    }
    assert!(
        sync == batched,
        "summaries differ beyond the stopping rule:\n{sync}\n{batched}"
    );
    no_secret_in(&dir.join("batched"));
    (rule, sync_chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_sequential_run_equals_the_synchronous_one() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", "");
    let (rule, sent) = compare(&server, dir, &[]).await;
    assert!(
        rule.contains("5 waves went through provider batches"),
        "{rule}"
    );
    let sync = summary(dir, "sync");
    let waves = stop_waves(&sync);
    assert_eq!(waves["batch-judge/apology"], json!(4), "{waves:?}");
    assert_eq!(sync["sequential"]["waves_run"], json!(5));
    server.with(|s| {
        assert_eq!(s.chat, sent, "the batched run sent no synchronous call");
        assert_eq!(s.batches.len(), 5, "one batch per wave");
        // Later waves carry fewer calls: decided cells stopped drawing.
        assert!(s.batches[4].lines.len() < s.batches[0].lines.len());
        assert_eq!(s.answered.len(), sent);
        assert!(s.answered.values().all(|&n| n == 1));
    });
    let log = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap();
    assert!(log.lines().all(|l| l.contains(r#""via":"batch:batch_"#)));
    // A resume of the finished run sends nothing and writes the same summary.
    let before = std::fs::read(dir.join("batched/summary.json")).unwrap();
    let batches = server.with(|s| s.batches.len());
    ok(&run(
        &server,
        dir,
        vec![
            "run",
            "--resume",
            "batched",
            "--no-cache",
            "--poll-interval",
            "0",
        ],
    )
    .await);
    assert_eq!(server.with(|s| s.batches.len()), batches);
    assert!(std::fs::read(dir.join("batched/summary.json")).unwrap() == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_calls_is_respected_wave_by_wave() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", "");
    // A wave of 8 pairs is 120 calls: two fit in 300, the third does not.
    let (rule, _) = compare(&server, dir, &["--max-calls", "300"]).await;
    assert!(
        rule.contains("2 waves went through provider batches"),
        "{rule}"
    );
    let batched = summary(dir, "batched");
    assert_eq!(batched["sequential"]["calls_used"], json!(240));
    assert_eq!(batched["sequential"]["budget_exhausted"], json!(true));
    server.with(|s| {
        assert_eq!(s.batches.len(), 2);
        let lines: usize = s.batches.iter().map(|b| b.lines.len()).sum();
        assert_eq!(lines, 240);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_sim_judges_mix() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", SIM);
    compare(&server, dir, &[]).await;
    let log = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap();
    let sim: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""judge":"sim-judge""#))
        .collect();
    assert!(!sim.is_empty());
    assert!(
        sim.iter().all(|l| !l.contains(r#""via""#)),
        "sim calls ran synchronously"
    );
    let batched = log
        .lines()
        .filter(|l| l.contains(r#""via":"batch:"#))
        .count();
    assert_eq!(batched, server.with(|s| s.answered.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_errored_batch_line_is_counted_and_sent_again() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", "");
    server.with(|s| {
        s.endings.insert(0, "errored");
    });
    let batched_before = {
        ok(&run(&server, dir, run_args("sync", false, &[])).await);
        server.with(|s| s.chat)
    };
    let stdout = ok(&run(&server, dir, run_args("batched", true, &[])).await);
    assert!(stdout.contains("report:"), "{stdout}");
    let (mut sync, mut batched) = (summary(dir, "sync"), summary(dir, "batched"));
    assert_eq!(call_ids(dir, "sync"), call_ids(dir, "batched"));
    take_rule(&mut sync);
    take_rule(&mut batched);
    // The errored line is one server error, counted, and its call rode in a second batch of
    // wave 1.
    let faults = find_faults(&mut batched).expect("the errored line is counted");
    assert_eq!(*faults, json!({"server_error": 1}));
    *faults = json!({});
    assert!(
        sync == batched,
        "summaries differ beyond the stopping rule and faults"
    );
    server.with(|s| {
        assert_eq!(s.batches.len(), 6);
        assert_eq!(s.batches[1].lines.len(), 1);
        assert_eq!(s.answered.len(), batched_before);
        assert!(s.answered.values().all(|&n| n == 1));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_message_batches_run_a_sequential_audit() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "anthropic", "");
    let (rule, sent) = compare(&server, dir, &[]).await;
    assert!(
        rule.contains("5 waves went through provider batches"),
        "{rule}"
    );
    server.with(|s| {
        assert_eq!(s.chat, sent);
        assert_eq!(s.batches.len(), 5);
        assert!(s.batches.iter().all(|b| b.id.starts_with("msgbatch_")));
        assert!(s.answered.values().all(|&n| n == 1));
    });
}

/// SIGKILL once the server parks `park` in the `after`-th wave's batch (0-based), then resume.
async fn kill_then_resume(park: Park, backend: &str, after: usize) {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir, backend, "");
    ok(&run(&server, &dir, run_args("sync", false, &[])).await);
    let sent = server.with(|s| s.chat);
    server.with(|s| s.park_after = Some((park, after)));
    let mut child = command(&dir, &server.base_url(), &run_args("batched", true, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.shared.parked.notified().await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    server.with(|s| {
        s.park = None;
        s.park_after = None;
    });
    let resumed = run(
        &server,
        &dir,
        vec![
            "run",
            "--resume",
            "batched",
            "--no-cache",
            "--poll-interval",
            "0",
        ],
    )
    .await;
    ok(&resumed);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    if park == Park::Create {
        assert!(stderr.contains(" 1 recovered"), "{stderr}");
    } else {
        assert!(stderr.contains(" 0 recovered"), "{stderr}");
    }
    server.with(|s| {
        assert_eq!(s.chat, sent, "no synchronous call");
        assert_eq!(s.batches.len(), 5, "{park:?}: one batch per wave");
        let lines: usize = s.batches.iter().map(|b| b.lines.len()).sum();
        assert_eq!(lines, sent, "no call submitted twice");
        assert_eq!(s.answered.len(), sent);
        assert!(
            s.answered.values().all(|&n| n == 1),
            "a call answered twice"
        );
    });
    assert_eq!(call_ids(&dir, "sync"), call_ids(&dir, "batched"));
    let (mut sync, mut batched) = (summary(&dir, "sync"), summary(&dir, "batched"));
    take_rule(&mut sync);
    take_rule(&mut batched);
    assert!(sync == batched, "{park:?}: summary differs");
    no_secret_in(&dir.join("batched"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_batch_create_then_resume_recovers_the_batch() {
    kill_then_resume(Park::Create, "openai", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_polling_then_resume_collects() {
    kill_then_resume(Park::Retrieve, "openai", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kill_during_batch_create_then_resume_adopts_the_batch() {
    kill_then_resume(Park::Create, "anthropic", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_fallback_sync_sends_a_call_the_batches_never_answered() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", "");
    ok(&run(&server, dir, run_args("sync", false, &[])).await);
    let sent = server.with(|s| s.chat);
    // The same call errors in its first three batches: then it is left to the fallback.
    server.with(|s| {
        for n in 0..3 {
            s.endings.insert(n, "errored");
        }
    });
    ok(&run(
        &server,
        dir,
        run_args("batched", true, &["--batch-fallback", "sync"]),
    )
    .await);
    assert_eq!(call_ids(dir, "sync"), call_ids(dir, "batched"));
    let (mut sync, mut batched) = (summary(dir, "sync"), summary(dir, "batched"));
    take_rule(&mut sync);
    take_rule(&mut batched);
    let faults = find_faults(&mut batched).expect("the errored lines are counted");
    assert_eq!(*faults, json!({"server_error": 3}));
    *faults = json!({});
    assert!(
        sync == batched,
        "summaries differ beyond the rule and faults"
    );
    server.with(|s| {
        assert_eq!(s.chat, sent + 1, "one call through the synchronous client");
        assert_eq!(s.batches.len(), 3 + 4);
        assert_eq!(s.answered.len(), sent - 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_failure_stops_the_audit_clearly() {
    let server = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir, "openai", "");
    server.with(|s| {
        s.endings.insert(0, "failed");
    });
    let output = run(&server, dir, run_args("batched", true, &[])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("batch-judge stopped") && stderr.contains("not available for batch"),
        "{stderr}"
    );
    assert!(
        stdout.contains("120 calls of the last wave pending"),
        "{stdout}"
    );
    assert!(!stderr.contains(SECRET) && !stdout.contains(SECRET));
    let batched = summary(dir, "batched");
    assert_eq!(batched["sequential"]["budget_exhausted"], json!(true));
    // The failed wave is in the report with its calls failed (the provider's message as the
    // fault), and no later wave was issued.
    assert_eq!(batched["sequential"]["waves_run"], json!(1));
    assert_eq!(batched["sequential"]["calls_used"], json!(120));
    server.with(|s| {
        assert_eq!(s.chat, 0);
        assert_eq!(s.batches.len(), 1, "nothing after the failed wave");
    });
    no_secret_in(&dir.join("batched"));
}
