//! The loopback Batch API of tests/provider_batch.rs and tests/sequential_batch.rs: the OpenAI
//! files + batches endpoints and Anthropic Message Batches (status progression, unordered output,
//! errored and expired lines, a validation failure, batches listed in pages, result files sent in
//! pieces), synchronous chat endpoints of both shapes, and the run helpers of those tests.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The fixed rule (as in tests/batch_file.rs): the byte sum of the user message picks the slot.
pub fn rule(user: &str) -> &'static str {
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

pub fn completion(body: &Value, rule: fn(&str) -> &'static str) -> Value {
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

pub fn message(body: &Value, rule: fn(&str) -> &'static str) -> Value {
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

pub fn message_batch_json(b: &Batch) -> Value {
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
pub fn advance_message_batch(inner: &mut Inner, index: usize) {
    let answer = inner.rule.unwrap_or(rule);
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
            json!({"type": "succeeded", "message": message(&line["params"], answer)})
        };
        lines.push(json!({"custom_id": custom, "result": result}).to_string());
    }
    lines.reverse();
    b.results = Some(lines.iter().map(|l| format!("{l}\n")).collect());
    b.status = "ended".into();
}

/// Where the server parks a request until the test has killed the client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Park {
    /// `POST /batches`, after the batch was created.
    Create,
    /// `GET /batches/{id}`.
    Retrieve,
    /// `GET /files/{id}/content`.
    Download,
}

#[derive(Default)]
pub struct Batch {
    pub id: String,
    pub metadata: Value,
    pub lines: Vec<Value>,
    pub polls: u32,
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    /// A Message Batch (Anthropic): its results once ended.
    pub results: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    pub files: HashMap<String, String>,
    pub batches: Vec<Batch>,
    /// Synchronous chat calls.
    pub chat: usize,
    pub uploads: usize,
    /// Output lines with an answer, per custom id.
    pub answered: HashMap<String, usize>,
    /// The n-th created batch (0-based) ends this way: `expired` (half its lines answered),
    /// `errored` (its first line gets a 500 in the error file) or `failed` (validation).
    pub endings: HashMap<usize, &'static str>,
    pub park: Option<Park>,
    /// The last credential header seen, echoed in a validation message (as a careless server
    /// might) to check that it is never stored.
    pub credential: String,
    /// Most batches open (not ended) when another was created.
    pub max_open_at_create: usize,
    /// Park at this endpoint once the n-th batch (0-based) is being created (`Create`) or
    /// exists (other endpoints): a kill in a later round.
    pub park_after: Option<(Park, usize)>,
    /// The answer rule (default [`rule`]).
    pub rule: Option<fn(&str) -> &'static str>,
}

pub struct Shared {
    pub inner: Mutex<Inner>,
    pub parked: Notify,
}

/// A results file sent in pieces of 97 bytes (chunked transfer, no length), as a large file
/// streams: lines straddle pieces.
pub fn reply_in_pieces(text: String) -> Response {
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

pub fn reply(value: Value) -> Response {
    (StatusCode::OK, value.to_string()).into_response()
}

pub fn batch_json(b: &Batch) -> Value {
    batch_json_echo(b, "")
}

pub fn batch_json_echo(b: &Batch, credential: &str) -> Value {
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
pub fn advance(inner: &mut Inner, index: usize) {
    let answer = inner.rule.unwrap_or(rule);
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
                    "response": {"status_code": 200, "request_id": "r", "body": completion(&line["body"], answer)},
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

pub fn multipart_file(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let start = text.find("filename=").expect("a file part");
    let content = &text[start..];
    let content = &content[content.find("\r\n\r\n").unwrap() + 4..];
    let end = content.rfind("\r\n--").unwrap();
    content[..end].to_string()
}

pub async fn handle(
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
        let park = inner.park.or_else(|| {
            inner.park_after.and_then(|(p, n)| {
                let created = inner.batches.len();
                let due = if p == Park::Create {
                    created == n
                } else {
                    created > n
                };
                due.then_some(p)
            })
        });
        match (method.as_str(), path.as_str()) {
            ("POST", "/v1/messages") => {
                inner.chat += 1;
                let body: Value = serde_json::from_slice(&body).unwrap();
                (reply(message(&body, inner.rule.unwrap_or(rule))), false)
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
                (reply(completion(&body, inner.rule.unwrap_or(rule))), false)
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

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub shared: Arc<Shared>,
}

impl Server {
    pub async fn start() -> Server {
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

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.shared.inner.lock().unwrap())
    }
}

pub const SECRET: &str = "sk-test-SECRET-never-stored-1234567890";

pub fn command(dir: &Path, base_url: &str, args: &[&str]) -> Command {
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

pub fn cli(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    command(dir, base_url, args).output().unwrap()
}

pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The first non-empty `faults` object in a summary.
pub fn find_faults(value: &mut Value) -> Option<&mut Value> {
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

pub fn no_secret_in(dir: &Path) {
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
