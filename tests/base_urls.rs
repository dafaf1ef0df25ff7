//! Issue 16: one judge served by several endpoints (`base_urls`, e.g. vLLM replicas). Calls
//! spread across them within `endpoint_concurrency` each; a failing endpoint is taken out for
//! `endpoint_cooldown_secs` and used again afterwards.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

#[derive(Default)]
struct Counters {
    requests: AtomicUsize,
    answered: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The first this many requests get a 500.
    fail_first: usize,
}

async fn handle(State(c): State<Arc<Counters>>, body: Bytes) -> axum::response::Response {
    let n = c.requests.fetch_add(1, Ordering::SeqCst);
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Held briefly so calls overlap (the bound, not the time, is asserted).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    c.in_flight.fetch_sub(1, Ordering::SeqCst);
    if n < c.fail_first {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    c.answered.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let text = if user.len() % 2 == 0 {
        "Output (a)"
    } else {
        "Output (b)"
    };
    json!({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    })
    .to_string()
    .into_response()
}

async fn server(fail_first: usize) -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters {
        fail_first,
        ..Counters::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(counters.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), counters)
}

fn write_inputs(dir: &Path, judge_extra: &str) {
    let mut pairs = String::new();
    for i in 0..6 {
        pairs.push_str(
            &json!({"id": format!("p{i}"), "prompt": format!("Question {i}?"),
                    "response_a": format!("A{i}."), "response_b": format!("B{i}, longer.")})
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            "seed = 3\n[dataset]\npath = \"pairs.jsonl\"\n[design]\nartifacts = [\"apology\"]\n\
             [run]\nconcurrency = 6\n[[judge]]\nname = \"replicas\"\nbackend = \"openai\"\n\
             model = \"m\"\nmax_retries = 5\n{judge_extra}\n"
        ),
    )
    .unwrap();
}

fn run(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .current_dir(dir)
        .args([
            "run",
            "--config",
            "audit.toml",
            "--out",
            "out",
            "--quiet",
            "--no-cache",
        ])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap()
}

fn committed(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("out/calls.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_across_endpoints_within_each_ones_limit() {
    let (a, ca) = server(0).await;
    let (b, cb) = server(0).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(
        &dir,
        &format!("base_urls = [\"{a}\", \"{b}\"]\nendpoint_concurrency = 1"),
    );
    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (na, nb) = (
        ca.answered.load(Ordering::SeqCst),
        cb.answered.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb, committed(&dir));
    assert!(na > 0 && nb > 0, "both endpoints used: {na} and {nb}");
    assert_eq!(ca.max_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(cb.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_taken_out_for_the_cooldown() {
    let (bad, cbad) = server(usize::MAX).await;
    let (good, cgood) = server(0).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(
        &dir,
        &format!("base_urls = [\"{bad}\", \"{good}\"]\nendpoint_cooldown_secs = 3600"),
    );
    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let calls = committed(&dir);
    assert!(calls > 10);
    assert_eq!(cgood.answered.load(Ordering::SeqCst), calls);
    // Out after its first failures: at most the calls already in flight to it (concurrency 6).
    let tried = cbad.requests.load(Ordering::SeqCst);
    assert!(
        (1..=6).contains(&tried),
        "the failing endpoint got {tried} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_endpoint_is_used_again_after_the_cooldown() {
    // Cooldown 0: taken out and immediately eligible again, so once it recovers it answers.
    let (flaky, cflaky) = server(2).await;
    let (good, cgood) = server(0).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(
        &dir,
        &format!("base_urls = [\"{flaky}\", \"{good}\"]\nendpoint_cooldown_secs = 0"),
    );
    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let calls = committed(&dir);
    let back = cflaky.answered.load(Ordering::SeqCst);
    assert!(back > 0, "the recovered endpoint answered again");
    assert_eq!(back + cgood.answered.load(Ordering::SeqCst), calls);
}
