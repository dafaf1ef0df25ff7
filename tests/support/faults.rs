//! A raw HTTP/1.1 server on loopback whose every answer, including transport-level faults
//! (connection resets, truncated bodies), is decided by a closure. One request per connection
//! (`Connection: close`), which is all the fault tests need.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status, extra headers and body, after `delay`.
    Respond {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
        /// Wait before answering.
        delay: Duration,
    },
    /// Close the connection without answering.
    Reset,
}

impl Action {
    /// A 200 with a JSON body.
    pub fn ok(body: &Value) -> Action {
        Action::Respond {
            status: 200,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// A response with a status and body.
    pub fn status(status: u16, body: &str) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// One request as seen by the server.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Lower-cased header names and values.
    pub headers: BTreeMap<String, String>,
    /// The JSON body.
    pub body: Value,
}

impl Seen {
    /// The audit's call id header.
    pub fn call_id(&self) -> String {
        self.headers
            .get("x-judge-audit-call")
            .cloned()
            .unwrap_or_default()
    }
}

type Behaviour = dyn Fn(&Seen) -> Action + Send + Sync;

/// The server; dropping it stops accepting.
pub struct FaultServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Start on an ephemeral loopback port.
    pub async fn start(behaviour: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (behaviour, log) = (behaviour.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, behaviour, log).await;
                });
            }
        });
        FaultServer { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Arc<Behaviour>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buffer[header_end..]).unwrap_or(Value::Null);
    let seen = Seen { headers, body };
    log.lock().unwrap().push(seen.clone());
    match behaviour(&seen) {
        Action::Reset => {
            // Dropping with unread data pending makes the kernel send RST on Linux; a plain close
            // after reading everything is an early EOF, which clients see the same way.
            drop(stream);
        }
        Action::Respond {
            status,
            headers,
            body,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let mut response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            response.push_str(&body);
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
        }
    }
    Ok(())
}
