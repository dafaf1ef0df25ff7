//! Loopback test servers shared by integration tests: a mock HTTP server whose behaviour is a
//! closure (with OpenAI- and Anthropic-shaped body helpers), plus raw TCP servers that misbehave
//! at the transport level.
//!
//! Everything binds to `127.0.0.1:0` (an ephemeral port), so tests can run in parallel.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod batch_api;
pub mod faults;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the mock server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 0-based arrival order.
    pub index: usize,
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
    /// The body as text.
    pub raw_body: String,
}

impl Recorded {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code (any u16 the `http` crate accepts, e.g. 529).
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(value: Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string(),
            delay: None,
        }
    }

    /// Any status with a raw body.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
        }
    }

    /// An OpenAI-style error body (`{"error": {"message", "type", "code"}}`) with a status.
    pub fn error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Self {
        let body =
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        Self::status(status, body.to_string()).with_header("content-type", "application/json")
    }

    /// An Anthropic-style error body (`{"type":"error","error":{"type","message"}}`) with a
    /// status.
    pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Self {
        let body = json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_test"
        });
        Self::status(status, body.to_string()).with_header("content-type", "application/json")
    }

    /// Add a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answer only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A chat-completions body with one choice and the given usage.
pub fn chat_completion_with_usage(
    content: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })
}

/// A chat-completions body with one choice (usage 10 prompt + 2 completion tokens).
pub fn chat_completion(content: &str) -> Value {
    chat_completion_with_usage(content, 10, 2)
}

/// An Anthropic Messages response with the given content blocks, stop reason and usage.
pub fn anthropic_message_blocks(
    content: Value,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Value {
    json!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    })
}

/// An Anthropic Messages response with one text block (usage 10 input + 2 output tokens).
pub fn anthropic_message(text: &str) -> Value {
    anthropic_message_blocks(json!([{"type": "text", "text": text}]), "end_turn", 10, 2)
}

type Behaviour = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Shared {
    behaviour: Box<Behaviour>,
    requests: Mutex<Vec<Recorded>>,
    count: AtomicUsize,
}

/// A mock HTTP server on a loopback port (OpenAI- or Anthropic-shaped, as its behaviour
/// answers). Dropping it stops it.
pub struct MockServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = shared.count.fetch_add(1, Ordering::SeqCst);
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let recorded = Recorded {
        index,
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body,
    };
    let reply = (shared.behaviour)(&recorded);
    shared.requests.lock().unwrap().push(recorded);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).expect("valid status"),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            axum::http::HeaderValue::from_str(&v).expect("header value"),
        );
    }
    response
}

impl MockServer {
    /// Start a server whose every answer comes from `behaviour`.
    pub async fn start(behaviour: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            behaviour: Box::new(behaviour),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("mock server");
        });
        Self { addr, shared, task }
    }

    /// Start a server that always gives the same reply.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL a judge config points at.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the base URL an Anthropic judge points at (it appends
    /// `/v1/messages`).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        let mut all = self.shared.requests.lock().unwrap().clone();
        all.sort_by_key(|r| r.index);
        all
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw TCP server that misbehaves; dropping it stops it.
pub struct RawServer {
    addr: std::net::SocketAddr,
    task: JoinHandle<()>,
}

impl RawServer {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one HTTP request head (up to the blank line) so the client has finished writing.
async fn read_head(stream: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Accepts connections and closes them at once without answering (a reset / early close).
pub async fn dropping_server() -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Linger 0 turns the close into a TCP reset.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    RawServer { addr, task }
}

/// Answers 200 with `Content-Length: 1000` but sends only a few bytes, then closes.
pub async fn truncating_server() -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"choices\":[",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    RawServer { addr, task }
}

/// A loopback base URL with nothing listening (connection refused).
pub async fn refused_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}
