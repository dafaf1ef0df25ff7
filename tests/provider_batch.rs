//! Issue 16, provider batches: `run --batch` against a loopback server implementing the OpenAI
//! files + batches endpoints and Anthropic Message Batches (status progression, unordered
//! output, errored and expired lines, a validation failure, batches listed in pages, result
//! files sent in pieces) gives the summary of a synchronous run of the same plan on the same
//! fixed-rule judge; `kill -9` during submit, poll and collect, then `run --resume`, re-sends
//! nothing accepted and loses nothing (server-side counts).
//!
//! The kills land deterministically: the server parks the chosen endpoint (after doing its
//! work, for the create call) and tells the test, which then kills the client.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The fixed rule (as in tests/batch_file.rs): the byte sum of the user message picks the slot.
fn rule(user: &str) -> &'static str {
    if user.contains("GARBLE") {
        return "I would rather not say.";
    }
    let sum: u64 = user.bytes().map(u64::from).sum();
    if sum % 3 == 0 {
        "Output (b)"
    } else {
        "Output (a)"
    }
}

fn completion(body: &Value) -> Value {
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": rule(user)},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    })
}

fn message(body: &Value) -> Value {
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": rule(user)}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 2}
    })
}

fn message_batch_json(b: &Batch) -> Value {
    let ended = b.status == "ended";
    let count = |kind: &str| {
        b.results.as_deref().map_or(0, |r| {
            r.lines()
                .filter(|l| l.contains(&format!(r#""type":"{kind}""#)))
                .count()
        })
    };
    json!({
        "id": b.id, "type": "message_batch", "processing_status": b.status,
        "request_counts": {
            "processing": if ended { 0 } else { b.lines.len() },
            "succeeded": count("succeeded"), "errored": count("errored"),
            "canceled": 0, "expired": count("expired"),
        },
        "created_at": "2026-01-01T00:00:00Z",
        "results_url": if ended {
            // A hostile server naming another host: the client must not follow it.
            json!(format!("http://198.51.100.1/results/{}", b.id))
        } else { Value::Null },
    })
}

/// Advance a Message Batch: in_progress for two polls, then ended with its results.
fn advance_message_batch(inner: &mut Inner, index: usize) {
    let ending = inner.endings.get(&index).copied();
    let b = &mut inner.batches[index];
    b.polls += 1;
    if b.status != "in_progress" || b.polls < 2 {
        return;
    }
    let keep = if ending == Some("expired") {
        b.lines.len() / 2
    } else {
        b.lines.len()
    };
    let mut lines = Vec::new();
    for (n, line) in b.lines.iter().enumerate() {
        let custom = line["custom_id"].as_str().unwrap().to_string();
        let result = if n >= keep {
            json!({"type": "expired"})
        } else if ending == Some("errored") && n == 0 {
            json!({"type": "errored", "error": {"type": "error",
                   "error": {"type": "overloaded_error", "message": "Overloaded"}}})
        } else {
            *inner.answered.entry(custom.clone()).or_insert(0) += 1;
            json!({"type": "succeeded", "message": message(&line["params"])})
        };
        lines.push(json!({"custom_id": custom, "result": result}).to_string());
    }
    lines.reverse();
    b.results = Some(lines.iter().map(|l| format!("{l}\n")).collect());
    b.status = "ended".into();
}

/// Where the server parks a request until the test has killed the client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Park {
    /// `POST /batches`, after the batch was created.
    Create,
    /// `GET /batches/{id}`.
    Retrieve,
    /// `GET /files/{id}/content`.
    Download,
}

#[derive(Default)]
struct Batch {
    id: String,
    metadata: Value,
    lines: Vec<Value>,
    polls: u32,
    status: String,
    output: Option<String>,
    error: Option<String>,
    /// A Message Batch (Anthropic): its results once ended.
    results: Option<String>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, String>,
    batches: Vec<Batch>,
    /// Synchronous chat calls.
    chat: usize,
    uploads: usize,
    /// Output lines with an answer, per custom id.
    answered: HashMap<String, usize>,
    /// The n-th created batch (0-based) ends this way: `expired` (half its lines answered),
    /// `errored` (its first line gets a 500 in the error file) or `failed` (validation).
    endings: HashMap<usize, &'static str>,
    park: Option<Park>,
    /// The last credential header seen, echoed in a validation message (as a careless server
    /// might) to check that it is never stored.
    credential: String,
    /// Most batches open (not ended) when another was created.
    max_open_at_create: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    parked: Notify,
}

/// A results file sent in pieces of 97 bytes (chunked transfer, no length), as a large file
/// streams: lines straddle pieces.
fn reply_in_pieces(text: String) -> Response {
    struct Pieces(std::collections::VecDeque<Bytes>);
    impl futures_core::Stream for Pieces {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.pop_front().map(Ok))
        }
    }
    let pieces = text
        .as_bytes()
        .chunks(97)
        .map(Bytes::copy_from_slice)
        .collect();
    Response::new(axum::body::Body::from_stream(Pieces(pieces)))
}

fn reply(value: Value) -> Response {
    (StatusCode::OK, value.to_string()).into_response()
}

fn batch_json(b: &Batch) -> Value {
    batch_json_echo(b, "")
}

fn batch_json_echo(b: &Batch, credential: &str) -> Value {
    let completed = if b.status == "completed" || b.status == "expired" {
        b.lines.len()
    } else {
        0
    };
    json!({
        "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
        "status": b.status, "output_file_id": b.output, "error_file_id": b.error,
        "metadata": b.metadata,
        "request_counts": {"total": b.lines.len(), "completed": completed, "failed": 0},
        "errors": if b.status == "failed" {
            json!({"data": [{"code": "invalid_request", "line": 1,
                             "message": format!("model `test-model` is not available for batch (request authorized by {credential})")}]})
        } else { Value::Null },
    })
}

/// Advance a batch one step per poll: validating → in_progress → finalizing → its ending.
fn advance(inner: &mut Inner, index: usize) {
    let ending = inner.endings.get(&index).copied();
    let next_file = inner.files.len();
    let b = &mut inner.batches[index];
    b.polls += 1;
    match (b.status.as_str(), ending) {
        ("validating", Some("failed")) => b.status = "failed".into(),
        ("validating", _) => b.status = "in_progress".into(),
        ("in_progress", _) => b.status = "finalizing".into(),
        ("finalizing", _) => {
            let mut output = Vec::new();
            let mut errors = Vec::new();
            let keep = if ending == Some("expired") {
                b.lines.len() / 2
            } else {
                b.lines.len()
            };
            for (n, line) in b.lines.iter().enumerate().take(keep) {
                let custom = line["custom_id"].as_str().unwrap().to_string();
                if ending == Some("errored") && n == 0 {
                    errors.push(json!({"id": format!("batch_req_{n}"), "custom_id": custom,
                        "response": {"status_code": 500, "body": {"error": {"message": "overloaded"}}},
                        "error": null}));
                    continue;
                }
                *inner.answered.entry(custom.clone()).or_insert(0) += 1;
                output.push(json!({"id": format!("batch_req_{n}"), "custom_id": custom,
                    "response": {"status_code": 200, "request_id": "r", "body": completion(&line["body"])},
                    "error": null}));
            }
            // Unordered, as the provider says: reversed.
            output.reverse();
            let text =
                |lines: Vec<Value>| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let out_id = format!("file-out-{next_file}");
            inner.files.insert(out_id.clone(), text(output));
            b.output = Some(out_id);
            if !errors.is_empty() {
                let err_id = format!("file-err-{next_file}");
                inner.files.insert(err_id.clone(), text(errors));
                b.error = Some(err_id);
            }
            b.status = if ending == Some("expired") {
                "expired"
            } else {
                "completed"
            }
            .into();
        }
        _ => {}
    }
}

fn multipart_file(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let start = text.find("filename=").expect("a file part");
    let content = &text[start..];
    let content = &content[content.find("\r\n\r\n").unwrap() + 4..];
    let end = content.rfind("\r\n--").unwrap();
    content[..end].to_string()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (response, park) = {
        let mut inner = shared.inner.lock().unwrap();
        if let Some(v) = headers
            .get("authorization")
            .or_else(|| headers.get("x-api-key"))
        {
            inner.credential = v.to_str().unwrap_or_default().to_string();
        }
        let credential = inner.credential.clone();
        let park = inner.park;
        match (method.as_str(), path.as_str()) {
            ("POST", "/v1/messages") => {
                inner.chat += 1;
                let body: Value = serde_json::from_slice(&body).unwrap();
                (reply(message(&body)), false)
            }
            ("POST", "/v1/messages/batches") => {
                let request: Value = serde_json::from_slice(&body).unwrap();
                let batch = Batch {
                    id: format!("msgbatch_{}", inner.batches.len()),
                    lines: request["requests"].as_array().unwrap().clone(),
                    status: "in_progress".into(),
                    ..Batch::default()
                };
                let json = message_batch_json(&batch);
                inner.batches.push(batch);
                (reply(json), park == Some(Park::Create))
            }
            ("GET", "/v1/messages/batches") => {
                // Newest first, one per page.
                let query = uri.query().unwrap_or_default();
                let after = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("after_id="))
                    .map(str::to_string);
                let newest: Vec<&Batch> = inner.batches.iter().rev().collect();
                let start = after
                    .and_then(|a| newest.iter().position(|b| b.id == a))
                    .map_or(0, |p| p + 1);
                let page: Vec<Value> = newest
                    .iter()
                    .skip(start)
                    .take(1)
                    .map(|b| message_batch_json(b))
                    .collect();
                let has_more = start + 1 < newest.len();
                let last = page.last().map(|b| b["id"].clone());
                (
                    reply(json!({"data": page, "has_more": has_more, "last_id": last})),
                    false,
                )
            }
            ("GET", p) if p.starts_with("/v1/messages/batches/") && p.ends_with("/results") => {
                if park == Some(Park::Download) {
                    (StatusCode::OK.into_response(), true)
                } else {
                    let id = p
                        .trim_start_matches("/v1/messages/batches/")
                        .trim_end_matches("/results");
                    let b = inner.batches.iter().find(|b| b.id == id).unwrap();
                    (reply_in_pieces(b.results.clone().unwrap()), false)
                }
            }
            ("GET", p) if p.starts_with("/v1/messages/batches/") => {
                if park == Some(Park::Retrieve) {
                    (StatusCode::OK.into_response(), true)
                } else {
                    let id = p.trim_start_matches("/v1/messages/batches/");
                    let index = inner.batches.iter().position(|b| b.id == id).unwrap();
                    advance_message_batch(&mut inner, index);
                    (reply(message_batch_json(&inner.batches[index])), false)
                }
            }
            ("POST", "/v1/chat/completions") => {
                inner.chat += 1;
                let body: Value = serde_json::from_slice(&body).unwrap();
                (reply(completion(&body)), false)
            }
            ("POST", "/v1/files") => {
                inner.uploads += 1;
                let id = format!("file-in-{}", inner.files.len());
                inner.files.insert(id.clone(), multipart_file(&body));
                (
                    reply(json!({"id": id, "object": "file", "purpose": "batch"})),
                    false,
                )
            }
            ("POST", "/v1/batches") => {
                let request: Value = serde_json::from_slice(&body).unwrap();
                let input = inner.files[request["input_file_id"].as_str().unwrap()].clone();
                let lines = input
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                let open = inner
                    .batches
                    .iter()
                    .filter(|b| !matches!(b.status.as_str(), "completed" | "expired" | "failed"))
                    .count();
                inner.max_open_at_create = inner.max_open_at_create.max(open);
                let batch = Batch {
                    id: format!("batch_{}", inner.batches.len()),
                    metadata: request["metadata"].clone(),
                    lines,
                    status: "validating".into(),
                    ..Batch::default()
                };
                let json = batch_json(&batch);
                inner.batches.push(batch);
                (reply(json), park == Some(Park::Create))
            }
            ("GET", "/v1/batches") => {
                // One batch per page, so finding an uncommitted batch reads several pages.
                let query = uri.query().unwrap_or_default();
                let after = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("after="))
                    .map(str::to_string);
                let start = after
                    .and_then(|a| inner.batches.iter().position(|b| b.id == a))
                    .map_or(0, |p| p + 1);
                let page: Vec<Value> = inner
                    .batches
                    .iter()
                    .skip(start)
                    .take(1)
                    .map(batch_json)
                    .collect();
                let has_more = start + 1 < inner.batches.len();
                let last = page.last().map(|b| b["id"].clone());
                (
                    reply(json!({"object": "list", "data": page, "has_more": has_more,
                              "last_id": last})),
                    false,
                )
            }
            ("GET", p) if p.starts_with("/v1/batches/") => {
                if park == Some(Park::Retrieve) {
                    (StatusCode::OK.into_response(), true)
                } else {
                    let id = p.trim_start_matches("/v1/batches/");
                    let index = inner.batches.iter().position(|b| b.id == id).unwrap();
                    advance(&mut inner, index);
                    (
                        reply(batch_json_echo(&inner.batches[index], &credential)),
                        false,
                    )
                }
            }
            ("GET", p) if p.starts_with("/v1/files/") && p.ends_with("/content") => {
                if park == Some(Park::Download) {
                    (StatusCode::OK.into_response(), true)
                } else {
                    let id = p
                        .trim_start_matches("/v1/files/")
                        .trim_end_matches("/content");
                    (reply_in_pieces(inner.files[id].clone()), false)
                }
            }
            _ => (StatusCode::NOT_FOUND.into_response(), false),
        }
    };
    if park {
        shared.parked.notify_one();
        // Never answered: the client is killed while it waits.
        std::future::pending::<()>().await;
    }
    response
}

struct Server {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    async fn start() -> Server {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            parked: Notify::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, shared }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.shared.inner.lock().unwrap())
    }
}

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

const SECRET: &str = "sk-test-SECRET-never-stored-1234567890";

fn command(dir: &Path, base_url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    command
        .current_dir(dir)
        .args(args)
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", SECRET)
        .env("ANTHROPIC_BASE_URL", base_url.trim_end_matches("/v1"))
        .env("ANTHROPIC_API_KEY", SECRET)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"));
    command
}

fn cli(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    command(dir, base_url, args).output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

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

/// The first non-empty `faults` object in a summary.
fn find_faults(value: &mut Value) -> Option<&mut Value> {
    match value {
        Value::Object(map) => {
            if map
                .get("faults")
                .is_some_and(|f| f.as_object().is_some_and(|o| !o.is_empty()))
            {
                return map.get_mut("faults");
            }
            map.values_mut().find_map(find_faults)
        }
        Value::Array(items) => items.iter_mut().find_map(find_faults),
        _ => None,
    }
}

fn no_secret_in(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            no_secret_in(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET),
                "{} holds the API key",
                path.display()
            );
        }
    }
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
