//! Issue 16, provider batches: `run --batch` against a loopback server implementing the OpenAI
//! files + batches endpoints and Anthropic Message Batches (status progression, unordered
//! output, errored and expired lines, a validation failure, batches listed in pages, result
//! files sent in pieces) gives the summary of a synchronous run of the same plan on the same
//! fixed-rule judge; `kill -9` during submit, poll and collect, then `run --resume`, re-sends
//! nothing accepted and loses nothing (server-side counts).
//!
//! The kills land deterministically: the server parks the chosen endpoint (after doing its
//! work, for the create call) and tells the test, which then kills the client.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use support::batch_api::*;

fn write_inputs(dir: &Path) {
    write_inputs_for(dir, "openai");
}

fn write_inputs_for(dir: &Path, backend: &str) {
    let mut pairs = String::new();
    for i in 0..5 {
        let prompt = if i == 4 {
            "GARBLE this question, please.".to_string()
        } else {
            format!("Question number {i}: is it safe to do thing {i}?")
        };
        pairs.push_str(
            &json!({
                "id": format!("p{i}"),
                "prompt": prompt,
                "response_a": format!("Answer A{i}. It explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}. It says thing {i} is fine."),
                "preferred": if i % 2 == 0 { "a" } else { "b" },
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    let toml = r#"
seed = 11

[dataset]
path = "pairs.jsonl"

[design]
repeats = 2
artifacts = ["apology", "verbosity", "position"]

[[judge]]
name = "batch-judge"
backend = "BACKEND"
model = "test-model"
template = "chen-safety"
max_retries = 0
"#;
    std::fs::write(dir.join("audit.toml"), toml.replace("BACKEND", backend)).unwrap();
}

const BATCH: &[&str] = &[
    "run",
    "--config",
    "audit.toml",
    "--out",
    "batched",
    "--quiet",
    "--no-cache",
    "--batch",
    "--batch-max-lines",
    "25",
    "--poll-interval",
    "0",
];

const RESUME: &[&str] = &[
    "run",
    "--resume",
    "batched",
    "--no-cache",
    "--poll-interval",
    "0",
];

/// The synchronous run's summary and call count.
async fn sync_run(server: &Server, dir: &Path) -> (Vec<u8>, usize) {
    let (d, base) = (dir.to_path_buf(), server.base_url());
    blocking(move || {
        ok(&cli(
            &d,
            &base,
            &[
                "run",
                "--config",
                "audit.toml",
                "--out",
                "sync",
                "--quiet",
                "--no-cache",
            ],
        ))
    })
    .await;
    let sent = server.with(|s| s.chat);
    assert!(sent > 50, "{sent} calls");
    (std::fs::read(dir.join("sync/summary.json")).unwrap(), sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_run_equals_the_synchronous_run() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    let (sync_summary, sent) = sync_run(&server, &dir).await;
    // First batch: one line errors; second: expires with half its lines answered.
    server.with(|s| {
        s.endings.insert(0, "errored");
        s.endings.insert(1, "expired");
    });
    let (d, base) = (dir.clone(), server.base_url());
    let stdout = blocking(move || ok(&cli(&d, &base, BATCH))).await;
    assert!(stdout.contains("report:"), "{stdout}");
    server.with(|s| {
        assert_eq!(s.chat, sent, "the batched run sent no synchronous call");
        let first_round = sent.div_ceil(25);
        assert!(
            s.batches.len() > first_round,
            "errored and expired calls were batched again"
        );
        // Every call answered exactly once, across all batches.
        assert_eq!(s.answered.len(), sent);
        assert!(
            s.answered.values().all(|&n| n == 1),
            "a call was answered twice"
        );
        // A resubmitted call rides in a later batch only.
        let mut seen = HashSet::new();
        let mut twice = 0;
        for b in &s.batches {
            for l in &b.lines {
                if !seen.insert(l["custom_id"].as_str().unwrap().to_string()) {
                    twice += 1;
                }
            }
        }
        let expired = s.batches[1].lines.len() - s.batches[1].lines.len() / 2;
        assert_eq!(
            twice,
            1 + expired,
            "only errored and expired calls were sent again"
        );
    });
    // Equal but for the honest fault count: the errored line is one server error, retried.
    let mut batch_summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("batched/summary.json")).unwrap()).unwrap();
    let sync_value: Value = serde_json::from_slice(&sync_summary).unwrap();
    let faults = find_faults(&mut batch_summary).expect("a faults object");
    assert_eq!(*faults, json!({"server_error": 1}));
    *faults = json!({});
    assert!(
        batch_summary == sync_value,
        "the batched run's summary.json differs from the synchronous run's beyond its faults"
    );
    let log = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap();
    assert_eq!(log.lines().count(), sent);
    assert!(log.lines().all(|l| l.contains(r#""via":"batch:batch_"#)));
    no_secret_in(&dir.join("batched"));
    let sync_summary = std::fs::read(dir.join("batched/summary.json")).unwrap();

    // Status lists every batch with its counts; a resume sends nothing more.
    let (d, base) = (dir.clone(), server.base_url());
    let status = blocking(move || ok(&cli(&d, &base, &["batch", "status", "batched"]))).await;
    assert!(status.contains("batch_0: 25 calls, completed"), "{status}");
    assert!(status.contains("batch_1: 25 calls, expired"), "{status}");
    let before = server.with(|s| (s.batches.len(), s.uploads));
    let (d, base) = (dir.clone(), server.base_url());
    blocking(move || ok(&cli(&d, &base, RESUME))).await;
    assert_eq!(server.with(|s| (s.batches.len(), s.uploads)), before);
    assert!(std::fs::read(dir.join("batched/summary.json")).unwrap() == sync_summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_failure_stops_the_judge_with_the_providers_message() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    server.with(|s| {
        s.endings.insert(0, "failed");
    });
    let (d, base) = (dir.clone(), server.base_url());
    let output = blocking(move || cli(&d, &base, BATCH)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model `test-model` is not available for batch"),
        "{stderr}"
    );
    // The judge stopped: no batch after the failed one's round, nothing answered, no sync call.
    server.with(|s| {
        assert_eq!(s.chat, 0);
        assert!(s.answered.len() < s.batches.iter().map(|b| b.lines.len()).sum::<usize>());
    });
    let (d, base) = (dir.clone(), server.base_url());
    let status = blocking(move || ok(&cli(&d, &base, &["batch", "status", "batched"]))).await;
    assert!(status.contains("batch_0: 25 calls, failed"), "{status}");
    // The server echoed the key in its message: shown and stored redacted, never in clear.
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(!status.contains(SECRET));
    no_secret_in(&dir.join("batched"));
    let faults = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap_or_default();
    assert!(!faults.contains(SECRET));
}

fn write_priced_inputs(dir: &Path, extra: &str) {
    write_inputs(dir);
    let mut toml = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    toml.push_str("\n[judge.pricing]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n");
    toml = format!("{extra}{toml}");
    std::fs::write(dir.join("audit.toml"), toml).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_submit_status_collect_with_budget_and_sync_fallback() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_priced_inputs(&dir, "");
    let base = server.base_url();
    let run = |args: Vec<&'static str>| {
        let (d, b) = (dir.clone(), base.clone());
        blocking(move || cli(&d, &b, &args))
    };

    // `plan` shows both prices: the batch one is half.
    let plan = ok(&run(vec!["plan", "--config", "audit.toml"]).await);
    let line = plan
        .lines()
        .find(|l| l.starts_with("batch-judge:"))
        .unwrap()
        .to_string();
    let dollars: Vec<f64> = line
        .split('$')
        .skip(1)
        .map(|t| {
            t.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(dollars.len(), 2, "{line}");
    assert!((dollars[1] - dollars[0] / 2.0).abs() <= 0.01, "{line}");
    assert!(plan.contains("estimated total with --batch: $"), "{plan}");

    // A budget below one batch's estimate creates nothing.
    let refused = ok(&run(vec![
        "batch",
        "submit",
        "detached",
        "--config",
        "audit.toml",
        "--batch-max-lines",
        "25",
        "--max-cost",
        "0.0001",
    ])
    .await);
    assert!(
        refused.contains("calls not submitted: the --max-cost budget"),
        "{refused}"
    );
    assert_eq!(server.with(|s| (s.batches.len(), s.uploads)), (0, 0));

    server.with(|s| {
        s.endings.insert(0, "errored");
        // The errored call's later batches expire unanswered: after three batches it is left
        // for the synchronous client.
        for n in 4..8 {
            s.endings.insert(n, "expired");
        }
    });
    let submitted = ok(&run(vec![
        "batch",
        "submit",
        "detached",
        "--batch-max-lines",
        "25",
    ])
    .await);
    let planned: usize = server.with(|s| s.batches.iter().map(|b| b.lines.len()).sum());
    assert_eq!(
        server.with(|s| s.batches.len()),
        planned.div_ceil(25),
        "{submitted}"
    );
    assert!(
        submitted.contains("batch batch_0 created with 25 calls"),
        "{submitted}"
    );
    // Submitting again sends nothing: every pending call is in an open batch.
    ok(&run(vec!["batch", "submit", "detached"]).await);
    assert_eq!(server.with(|s| s.batches.len()), planned.div_ceil(25));

    let status = ok(&run(vec!["batch", "status", "detached"]).await);
    assert!(
        status.contains("batch_0: 25 calls, in_progress"),
        "{status}"
    );
    let mut rounds = 0;
    loop {
        let collected = ok(&run(vec!["batch", "collect", "detached"]).await);
        if collected.contains(" 0 batches still open") {
            assert!(collected.contains("; 1 calls pending"), "{collected}");
            break;
        }
        rounds += 1;
        assert!(rounds < 10, "{collected}");
    }
    assert_eq!(server.with(|s| s.chat), 0);

    // The resume batches the errored call again (twice, both expire), then sends it synchronously.
    let resumed = ok(&run(vec![
        "run",
        "--resume",
        "detached",
        "--quiet",
        "--no-cache",
        "--poll-interval",
        "0",
        "--batch-fallback",
        "sync",
    ])
    .await);
    assert!(resumed.contains("report:"), "{resumed}");
    server.with(|s| {
        assert_eq!(s.batches.len(), planned.div_ceil(25) + 2);
        assert_eq!(s.chat, 1, "one call through the synchronous client");
        assert_eq!(s.answered.len(), planned - 1);
    });
    let log = std::fs::read_to_string(dir.join("detached/calls.jsonl")).unwrap();
    assert_eq!(log.lines().count(), planned);
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(r#""via":"batch:"#))
            .count(),
        planned - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_section_batch_true_batches_without_the_flag() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    let toml = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        format!("{toml}\n[run]\nbatch = true\n"),
    )
    .unwrap();
    let (d, base) = (dir.clone(), server.base_url());
    ok(&blocking(move || {
        cli(
            &d,
            &base,
            &[
                "run",
                "--config",
                "audit.toml",
                "--out",
                "cfg",
                "--quiet",
                "--no-cache",
                "--poll-interval",
                "0",
            ],
        )
    })
    .await);
    server.with(|s| {
        assert_eq!(s.chat, 0);
        assert_eq!(s.batches.len(), 1);
        assert_eq!(s.answered.len(), s.batches[0].lines.len());
    });
}

/// Kill the client with SIGKILL once the server has parked `park`, then resume.
async fn kill_then_resume(park: Park, backend: &str) {
    let first = BATCH;
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs_for(&dir, backend);
    let (sync_summary, sent) = sync_run(&server, &dir).await;
    server.with(|s| s.park = Some(park));
    let mut child = command(&dir, &server.base_url(), first)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.shared.parked.notified().await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (batches, uploads) = server.with(|s| {
        s.park = None;
        (s.batches.len(), s.uploads)
    });
    assert!(batches >= 1);
    let (d, base) = (dir.clone(), server.base_url());
    let resumed = blocking(move || cli(&d, &base, RESUME)).await;
    let stdout = ok(&resumed);
    assert!(stdout.contains("report:"), "{stdout}");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    if park == Park::Create {
        // The batch the killed process created but never committed was found by its metadata.
        assert!(stderr.contains(" 1 recovered"), "{stderr}");
    } else {
        assert!(stderr.contains(" 0 recovered"), "{stderr}");
    }
    server.with(|s| {
        assert_eq!(s.chat, sent, "no synchronous call");
        // Nothing accepted was sent again: one batch per chunk of the plan, every call in
        // exactly one batch and answered exactly once.
        assert_eq!(s.batches.len(), sent.div_ceil(25), "{park:?}");
        let lines: usize = s.batches.iter().map(|b| b.lines.len()).sum();
        assert_eq!(lines, sent);
        assert_eq!(s.answered.len(), sent);
        assert!(s.answered.values().all(|&n| n == 1));
        if park != Park::Create {
            assert_eq!(s.uploads, uploads, "no upload after the kill");
        }
    });
    let summary = std::fs::read(dir.join("batched/summary.json")).unwrap();
    assert!(summary == sync_summary, "{park:?}: summary differs");
    no_secret_in(&dir.join("batched"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_submit_then_resume_recovers_the_uncommitted_batch() {
    kill_then_resume(Park::Create, "openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_poll_then_resume_collects() {
    kill_then_resume(Park::Retrieve, "openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_collect_then_resume_collects_once() {
    kill_then_resume(Park::Download, "openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kill_during_submit_then_resume_adopts_the_uncommitted_batch() {
    kill_then_resume(Park::Create, "anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kill_during_poll_then_resume_collects() {
    kill_then_resume(Park::Retrieve, "anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kill_during_collect_then_resume_collects_once() {
    kill_then_resume(Park::Download, "anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_message_batches_equal_the_synchronous_run() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs_for(&dir, "anthropic");
    let (sync_summary, sent) = sync_run(&server, &dir).await;
    server.with(|s| {
        s.endings.insert(0, "errored");
        s.endings.insert(1, "expired");
    });
    let (d, base) = (dir.clone(), server.base_url());
    let stdout = blocking(move || ok(&cli(&d, &base, BATCH))).await;
    assert!(stdout.contains("report:"), "{stdout}");
    server.with(|s| {
        assert_eq!(s.chat, sent, "the batched run sent no synchronous call");
        assert!(
            s.batches.len() > sent.div_ceil(25),
            "unanswered calls batched again"
        );
        assert_eq!(s.answered.len(), sent);
        assert!(
            s.answered.values().all(|&n| n == 1),
            "a call was answered twice"
        );
        // The requests carry the synchronous backend's body as `params`.
        let params = &s.batches[0].lines[0]["params"];
        assert_eq!(params["model"], "test-model");
        assert!(params["messages"].is_array());
    });
    let mut batch_summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("batched/summary.json")).unwrap()).unwrap();
    let sync_value: Value = serde_json::from_slice(&sync_summary).unwrap();
    let faults = find_faults(&mut batch_summary).expect("a faults object");
    let total: u64 = faults
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{faults}");
    *faults = json!({});
    assert!(
        batch_summary == sync_value,
        "summary differs beyond its one fault"
    );
    let log = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap();
    assert_eq!(log.lines().count(), sent);
    assert!(log.lines().all(|l| l.contains(r#""via":"batch:msgbatch_"#)));
    no_secret_in(&dir.join("batched"));
    let (d, base) = (dir.clone(), server.base_url());
    let status = blocking(move || ok(&cli(&d, &base, &["batch", "status", "batched"]))).await;
    assert!(status.contains("msgbatch_1: 25 calls, ended"), "{status}");
    assert!(status.contains("expired"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_without_a_batch_route_run_synchronously_and_batch_leftovers_stay_pending() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    let mut toml = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    toml.push_str(
        "\n[[judge]]\nname = \"sim-judge\"\nbackend = \"sim\"\nmodel = \"simulated\"\n[judge.sim]\naccuracy = 0.8\n",
    );
    std::fs::write(dir.join("audit.toml"), toml).unwrap();
    // The openai judge's first batch fails validation: its calls are left, never sent
    // synchronously without --batch-fallback sync.
    server.with(|s| {
        s.endings.insert(0, "failed");
    });
    let (d, base) = (dir.clone(), server.base_url());
    let output = blocking(move || cli(&d, &base, BATCH)).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stdout.contains("report:"), "{stdout}\n{stderr}");
    assert!(stdout.contains("calls pending"), "{stdout}");
    assert_eq!(server.with(|s| s.chat), 0, "no synchronous openai call");
    let log = std::fs::read_to_string(dir.join("batched/calls.jsonl")).unwrap();
    let sim = log
        .lines()
        .filter(|l| l.contains(r#""judge":"sim-judge""#))
        .count();
    let batched = log
        .lines()
        .filter(|l| l.contains(r#""via":"batch:"#))
        .count();
    assert!(sim > 50, "the sim judge ran synchronously: {sim} calls");
    assert_eq!(batched, server.with(|s| s.answered.len()));
    assert!(
        batched > 0 && batched + 25 == sim,
        "{batched} batched, {sim} sim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_queue_tokens_holds_batches_back_until_the_open_ones_end() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    let toml = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        toml.replace(
            "max_retries = 0",
            "max_retries = 0\nbatch_queue_tokens = 2000",
        ),
    )
    .unwrap();
    let base = server.base_url();
    let run = |args: Vec<&'static str>| {
        let (d, b) = (dir.clone(), base.clone());
        blocking(move || cli(&d, &b, &args))
    };
    let first = ok(&run(vec!["batch", "submit", "queued", "--config", "audit.toml"]).await);
    assert!(first.contains("held back by batch_queue_tokens"), "{first}");
    assert_eq!(server.with(|s| s.batches.len()), 1, "{first}");
    // Nothing more while the first is open.
    ok(&run(vec!["batch", "submit", "queued"]).await);
    assert_eq!(server.with(|s| s.batches.len()), 1);
    ok(&run(vec![
        "run",
        "--resume",
        "queued",
        "--quiet",
        "--no-cache",
        "--poll-interval",
        "0",
    ])
    .await);
    server.with(|s| {
        assert!(s.batches.len() > 2);
        assert_eq!(
            s.max_open_at_create, 0,
            "a batch was created while another was open"
        );
        let lines: usize = s.batches.iter().map(|b| b.lines.len()).sum();
        assert_eq!(s.answered.len(), lines);
    });
    let log = std::fs::read_to_string(dir.join("queued/calls.jsonl")).unwrap();
    assert_eq!(log.lines().count(), server.with(|s| s.answered.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_files_batch_pricing_replaces_the_half_price() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_priced_inputs(&dir, "");
    let mut toml = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    toml.push_str("\n[judge.batch_pricing]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n");
    std::fs::write(dir.join("audit.toml"), toml).unwrap();
    let plan = ok(&cli(
        &dir,
        "http://127.0.0.1:9/v1",
        &["plan", "--config", "audit.toml"],
    ));
    let line = plan
        .lines()
        .find(|l| l.starts_with("batch-judge:"))
        .unwrap();
    let dollars: Vec<&str> = line
        .split('$')
        .skip(1)
        .map(|t| t.split(' ').next().unwrap())
        .collect();
    assert_eq!(dollars.len(), 2, "{line}");
    assert_eq!(
        dollars[0], dollars[1],
        "batch price as the judge file says: {line}"
    );
}
