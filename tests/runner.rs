//! The runner under real faults, kills, caching and budgets, through the binary and real HTTP
//! servers on loopback.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::chat_completion;
use support::faults::{Action, FaultServer};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

fn write_pairs(dir: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(
            &json!({
                "id": format!("p{i:02}"),
                "prompt": format!("Is activity {i} safe?"),
                "response_a": format!("Activity {i} needs care. Wear protection and ask an expert."),
                "response_b": format!("Activity {i} is totally fine, do whatever you want."),
                "preferred": if i % 2 == 0 { "a" } else { "b" },
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), text).unwrap();
}

/// An audit.toml with one openai judge at `base_url` (plus extra TOML for that judge).
fn write_audit(dir: &Path, base_url: &str, judge_extra: &str, extra: &str) {
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            r#"
seed = 11
{extra}
[dataset]
path = "pairs.jsonl"

[design]
artifacts = ["apology", "halo", "position"]

[[judge]]
name = "http-judge"
backend = "openai"
model = "m"
base_url = "{base_url}"
{judge_extra}
"#
        ),
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("default-cache"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

async fn run_async(dir: PathBuf, args: Vec<String>, envs: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&dir, &args, &envs)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_completes_under_twenty_percent_mixed_faults_and_counts_every_fault() {
    // First attempt of a fifth of the calls fails, in one of seven ways; retries succeed.
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let injected: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    let (a, inj) = (attempts.clone(), injected.clone());
    let server = FaultServer::start(move |seen| {
        let id = seen.call_id();
        let attempt = {
            let mut map = a.lock().unwrap();
            let n = map.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let h = fnv(&id);
        if attempt > 1 || h % 5 != 0 {
            return Action::ok(&chat_completion("Output (a)"));
        }
        let (kind, action) = match (h / 5) % 7 {
            0 => (
                "rate_limited",
                Action::Respond {
                    status: 429,
                    headers: vec![("retry-after".into(), "1".into())],
                    body: r#"{"error":{"message":"slow down","type":"rate_limit"}}"#.into(),
                    delay: Duration::ZERO,
                },
            ),
            1 => (
                "server_error",
                Action::status(500, r#"{"error":{"message":"boom"}}"#),
            ),
            2 => (
                "server_error",
                Action::status(503, r#"{"error":{"message":"busy"}}"#),
            ),
            3 => ("connection", Action::Reset),
            4 => ("malformed_response", Action::status(200, "{not json")),
            5 => (
                "malformed_response",
                Action::ok(&json!({"id": "x", "object": "chat.completion", "choices": []})),
            ),
            _ => (
                "timeout",
                Action::Respond {
                    status: 200,
                    headers: Vec::new(),
                    body: chat_completion("Output (a)").to_string(),
                    delay: Duration::from_millis(1500),
                },
            ),
        };
        *inj.lock().unwrap().entry(kind).or_default() += 1;
        action
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 8);
    write_audit(
        dir.path(),
        &server.base_url(),
        "timeout_secs = 0.4\nmax_retries = 4\nconcurrency = 8",
        "",
    );
    let output = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&output);
    let s = summary(&dir.path().join("out"));
    let judge = &s["judges"][0];
    // 8 pairs × (4 baseline + 2 + 2 + 2 tie detection + 4 + 4 shift) = 144 calls.
    assert_eq!(judge["calls"]["planned"], 144);
    assert_eq!(judge["calls"]["completed"], 144);
    assert_eq!(judge["calls"]["failed"], 0);
    for artifact in judge["artifacts"].as_array().unwrap() {
        assert_eq!(
            artifact["tie_detection"]["n"], 16,
            "{}",
            artifact["artifact"]
        );
        // Text artifacts: 8 pairs × 2 sides × 2 orders; position: 8 pairs × 2 orders × 2 repeats.
        assert_eq!(
            artifact["winrate_shift"]["n"], 32,
            "{}",
            artifact["artifact"]
        );
    }
    assert_eq!(judge["baseline"]["noise_flip_rate"]["n"], 16);
    // Every injected fault is counted under its kind.
    let injected = injected.lock().unwrap().clone();
    let total: u64 = injected.values().sum();
    assert!(total >= 15, "about a fifth of 144 calls: {injected:?}");
    assert!(injected.len() >= 5, "most kinds occur: {injected:?}");
    let faults = judge["faults"].as_object().unwrap();
    let counted: BTreeMap<&str, u64> = faults
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counted, injected.into_iter().collect::<BTreeMap<_, _>>());
    assert_eq!(
        server.seen().len() as u64,
        144 + total,
        "one retry per fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_without_resending_and_matches_an_uninterrupted_run() {
    let phase = Arc::new(AtomicUsize::new(1));
    let log: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let (p, l) = (phase.clone(), log.clone());
    let server = FaultServer::start(move |seen| {
        l.lock()
            .unwrap()
            .push((p.load(Ordering::SeqCst), seen.call_id()));
        let user = seen.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        // Deterministic and content-dependent, so the summary has real variation.
        let verdict = if fnv(user) % 3 == 0 {
            "Output (b)"
        } else {
            "Output (a)"
        };
        Action::Respond {
            status: 200,
            headers: Vec::new(),
            body: chat_completion(verdict).to_string(),
            delay: Duration::from_millis(25),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 12);
    write_audit(dir.path(), &server.base_url(), "concurrency = 2", "");
    let out = dir.path().join("killed");

    // Phase 1: start, wait until some calls are committed, SIGKILL.
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(out.join("calls.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 60 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let committed: HashSet<String> = {
        let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
        let mut q = conn.prepare("SELECT call_id FROM calls").unwrap();
        q.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let planned = 12 * 18;
    assert!(
        !committed.is_empty() && committed.len() < planned,
        "killed mid-run: {}",
        committed.len()
    );

    // Phase 2: resume.
    phase.store(2, Ordering::SeqCst);
    let resumed = run_async(
        dir.path().to_path_buf(),
        vec![
            "run".into(),
            "--quiet".into(),
            "--no-cache".into(),
            "--resume".into(),
            out.display().to_string(),
        ],
        Vec::new(),
    )
    .await;
    assert_ok(&resumed);

    // Phase 3: the same audit, uninterrupted.
    phase.store(3, Ordering::SeqCst);
    let clean = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "clean",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&clean);

    let log = log.lock().unwrap().clone();
    let phase2: Vec<&String> = log
        .iter()
        .filter(|(p, _)| *p == 2)
        .map(|(_, id)| id)
        .collect();
    for id in &phase2 {
        assert!(
            !committed.contains(*id),
            "committed call {id} was sent again"
        );
    }
    let mut sent_per_id: HashMap<&String, usize> = HashMap::new();
    for (_, id) in log.iter().filter(|(p, _)| *p <= 2) {
        *sent_per_id.entry(id).or_default() += 1;
    }
    assert_eq!(sent_per_id.len(), planned, "every planned call was sent");
    for id in &committed {
        assert_eq!(sent_per_id[id], 1, "{id} sent once");
    }
    assert_eq!(log.iter().filter(|(p, _)| *p == 3).count(), planned);
    assert_eq!(
        std::fs::read(out.join("summary.json")).unwrap(),
        std::fs::read(dir.path().join("clean/summary.json")).unwrap(),
        "resumed and uninterrupted summaries differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_with_the_cache_sends_nothing_and_gives_the_same_summary() {
    let server = FaultServer::start(|seen| {
        let user = seen.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        let verdict = if fnv(user) % 2 == 0 {
            "Output (b)"
        } else {
            "Tie"
        };
        Action::ok(&chat_completion(verdict))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 5);
    write_audit(dir.path(), &server.base_url(), "", "");
    let cache = dir.path().join("cache");
    let cache_arg = cache.display().to_string();
    let first = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--quiet",
            "--cache",
            &cache_arg,
            "--config",
            "audit.toml",
            "--out",
            "first",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&first);
    let sent = server.seen().len();
    assert_eq!(sent, 5 * 18);
    let second = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--quiet",
            "--cache",
            &cache_arg,
            "--config",
            "audit.toml",
            "--out",
            "second",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&second);
    assert_eq!(server.seen().len(), sent, "the second run sent requests");
    assert_eq!(
        std::fs::read(dir.path().join("first/summary.json")).unwrap(),
        std::fs::read(dir.path().join("second/summary.json")).unwrap()
    );
    // A changed judge (another model) must not get the first judge's answers.
    let text = std::fs::read_to_string(dir.path().join("audit.toml")).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        text.replace("model = \"m\"", "model = \"m2\""),
    )
    .unwrap();
    let third = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--quiet",
            "--cache",
            &cache_arg,
            "--config",
            "audit.toml",
            "--out",
            "third",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&third);
    assert_eq!(server.seen().len(), 2 * sent);
    let stats = run(dir.path(), &["cache", "stats", "--cache", &cache_arg], &[]);
    assert_ok(&stats);
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains(&format!("{} cached replies", 2 * sent))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_never_appears_in_any_output() {
    const KEY: &str = "sk-LEAKCANARY-7f3a9c0e11d24b58";
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let a = attempts.clone();
    let server = FaultServer::start(move |seen| {
        let auth = seen
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let attempt = {
            let mut map = a.lock().unwrap();
            let n = map.entry(seen.call_id()).or_default();
            *n += 1;
            *n
        };
        // A careless server echoes the credential back in its errors.
        if attempt == 1 && fnv(&seen.call_id()) % 3 == 0 {
            let status = if fnv(&seen.call_id()) % 2 == 0 {
                429
            } else {
                500
            };
            return Action::status(
                status,
                &json!({"error": {"message": format!("bad request from {auth}")}}).to_string(),
            );
        }
        Action::ok(&chat_completion("Output (b)"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 4);
    write_audit(
        dir.path(),
        &server.base_url(),
        "api_key_env = \"JUDGE_AUDIT_TEST_KEY\"\nmax_retries = 3",
        "",
    );
    let output = run_async(
        dir.path().to_path_buf(),
        args(&["run", "--config", "audit.toml", "--out", "out"]),
        vec![
            ("JUDGE_AUDIT_TEST_KEY".into(), KEY.into()),
            ("RUST_LOG".into(), "trace".into()),
        ],
    )
    .await;
    assert_ok(&output);
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.headers.get("authorization").map(String::as_str)
                == Some(&format!("Bearer {KEY}"))),
        "the key is sent"
    );
    let rerender = run(dir.path(), &["report", "out"], &[]);
    assert_ok(&rerender);
    let mut texts = vec![
        output.stdout.clone(),
        output.stderr.clone(),
        rerender.stdout,
        rerender.stderr,
    ];
    let mut stack = vec![dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                texts.push(std::fs::read(entry.path()).unwrap());
                files += 1;
            }
        }
    }
    assert!(files >= 5, "outputs were written");
    let needle = KEY.as_bytes();
    for text in &texts {
        assert!(
            !text.windows(needle.len()).any(|w| w == needle),
            "the API key leaked"
        );
    }
    let s = summary(&dir.path().join("out"));
    let faults: u64 = s["judges"][0]["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(faults > 0, "the echoing errors happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_error_stops_only_that_judge() {
    let server = FaultServer::start(|_| {
        Action::status(
            401,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#,
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 4);
    write_audit(
        dir.path(),
        &server.base_url(),
        "concurrency = 1",
        "judges = [\"sim-unbiased\"]",
    );
    let output = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--config",
            "audit.toml",
            "--out",
            "out",
            "--no-cache",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("judge `http-judge` stopped"), "{stderr}");
    assert_eq!(
        server.seen().len(),
        1,
        "nothing more is sent after a permanent error"
    );
    let s = summary(&dir.path().join("out"));
    let judges = s["judges"].as_array().unwrap();
    let http = judges.iter().find(|j| j["name"] == "http-judge").unwrap();
    assert!(http["stopped"].as_str().unwrap().contains("Auth"));
    assert_eq!(http["calls"]["completed"], 0);
    assert_eq!(http["faults"]["auth"], 1);
    // A stopped judge is not judged on an outage (issue 20 §3).
    assert_eq!(http["trust"]["verdict"], "COULD_NOT_AUDIT");
    let sim = judges.iter().find(|j| j["name"] == "sim-unbiased").unwrap();
    assert_eq!(sim["calls"]["completed"], sim["calls"]["planned"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_stops_new_calls_and_still_reports() {
    let server = FaultServer::start(|_| Action::ok(&chat_completion("Output (a)"))).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 4);
    // $10,000 per million tokens: 12 tokens cost $0.12 per call.
    write_audit(
        dir.path(),
        &server.base_url(),
        "concurrency = 1\n[judge.pricing]\ninput_per_mtok = 10000.0\noutput_per_mtok = 10000.0",
        "",
    );
    let plan = run(dir.path(), &["plan", "--config", "audit.toml"], &[]);
    assert_ok(&plan);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("estimated total: $"), "{plan_text}");
    let output = run_async(
        dir.path().to_path_buf(),
        args(&[
            "run",
            "--config",
            "audit.toml",
            "--out",
            "out",
            "--no-cache",
            "--max-cost",
            "8",
        ]),
        Vec::new(),
    )
    .await;
    assert_ok(&output);
    let sent = server.seen().len();
    assert!(
        sent > 0 && sent < 72,
        "some but not all calls were sent: {sent}"
    );
    let s = summary(&dir.path().join("out"));
    let judge = &s["judges"][0];
    assert_eq!(judge["calls"]["completed"], sent);
    // The calls the budget kept from being sent are pending, not failed (issue 20 §4): a
    // resume with a larger budget sends them.
    assert_eq!(judge["calls"]["failed"], 0);
    assert_eq!(judge["calls"]["pending"], 72 - sent);
    let cost = judge["calls"]["input_tokens"].as_f64().unwrap() * 0.01
        + judge["calls"]["output_tokens"].as_f64().unwrap() * 0.01;
    assert!(cost <= 8.0, "spent {cost}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not sent for the cost budget"));
}
