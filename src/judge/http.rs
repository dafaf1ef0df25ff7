//! What every HTTP transport (`openai`, `anthropic`) needs, written once: the pooled client and
//! its headers, key redaction, `Retry-After` parsing and the cap on server-requested waits, the
//! cap on response bodies, error-body snippets and the status → [`FaultKind`] table.
//!
//! Order matters for secrets: a body is redacted as soon as it is read, before any message,
//! snippet or reply text is cut from it, so truncation can never leave part of a key behind.

use super::chat::{ChatCall, ChatTransport, Completion};
use super::config::{ApiKey, JudgeConfig};
use super::{FaultKind, JudgeBuildError, JudgeError};
use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Longest provider or program text quoted in an error message.
pub const MAX_QUOTED: usize = 300;

/// What replaces a secret in any stored or printed text.
pub const REDACTED: &str = "<redacted>";

/// Lets a proxy or server log match requests to the audit's call ids (a parsed name: parsing it
/// on every call would allocate).
static CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-judge-audit-call");

/// The secret values of one judge (its API key), removed from every text before it is stored,
/// cached or printed. `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secret(s))", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for the given key (none: a redactor that changes nothing).
    pub fn for_key(key: Option<&ApiKey>) -> Self {
        Self {
            secrets: key
                .map(|k| k.expose().to_string())
                .filter(|k| !k.is_empty())
                .into_iter()
                .collect(),
        }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`], and whether anything was replaced.
    pub fn redact(&self, text: &str) -> (String, bool) {
        let mut out = text.to_string();
        let changed = self.redact_in_place(&mut out);
        (out, changed)
    }

    /// Replace every secret in `text`; true when one was found.
    pub fn redact_in_place(&self, text: &mut String) -> bool {
        let mut changed = false;
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), REDACTED);
                changed = true;
            }
        }
        changed
    }

    /// Replace every secret in raw bytes (a response body, a program's output); true when one
    /// was found. Works on bytes so a body that is not UTF-8 is still cleaned.
    pub fn redact_bytes(&self, bytes: &mut Vec<u8>) -> bool {
        let mut changed = false;
        for secret in &self.secrets {
            let needle = secret.as_bytes();
            if needle.is_empty() || bytes.len() < needle.len() {
                continue;
            }
            if !bytes.windows(needle.len()).any(|w| w == needle) {
                continue;
            }
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(needle) {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i += needle.len();
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            *bytes = out;
            changed = true;
        }
        changed
    }
}

/// A build error naming the judge and the field.
pub fn build_error(judge: &str, field: &str, message: impl Into<String>) -> JudgeBuildError {
    JudgeBuildError::Invalid {
        judge: judge.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// A header value holding a secret: marked sensitive so reqwest/http never print it.
pub fn secret_header(config: &JudgeConfig, value: &str) -> Result<HeaderValue, JudgeBuildError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        build_error(
            &config.name,
            "api_key_env",
            format!(
                "the key in ${} contains characters not allowed in an HTTP header",
                config.api_key_env_name().unwrap_or_default()
            ),
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// `text` trimmed and cut to [`MAX_QUOTED`] characters (with `…` when cut). Callers pass
/// redacted text only.
pub fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The last [`MAX_QUOTED`] characters of `text` (with a leading `…` when cut).
pub fn truncate_tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_QUOTED {
        return text.to_string();
    }
    let skip = count - MAX_QUOTED;
    let start = text.char_indices().nth(skip).map_or(0, |(i, _)| i);
    format!("…{}", &text[start..])
}

/// A body quoted in an error message: `(empty body)` or its truncated text.
pub fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    truncate(&String::from_utf8_lossy(body))
}

/// An error and its sources, each once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A non-negative number of seconds as a `Duration`, saturating at `Duration::MAX` for values too
/// large to represent (a server may send `Retry-After: 1e20`); `None` for negative or non-finite
/// values. Never panics, unlike `Duration::from_secs_f64`.
pub fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// A header's value as trimmed text.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The wait in a `Retry-After` header: seconds (fractions allowed) or an HTTP-date relative to
/// `now` (a past date means now). `None` when absent or unreadable.
pub fn retry_after_header(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        seconds(secs)
    } else if let Ok(when) = httpdate::parse_http_date(value) {
        Some(when.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        None
    }
}

/// How a failure is counted: its kind and whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Fault classification.
    pub kind: FaultKind,
    /// Whether a retry may succeed.
    pub retryable: bool,
}

impl Class {
    /// A retryable fault.
    pub fn retry(kind: FaultKind) -> Self {
        Self {
            kind,
            retryable: true,
        }
    }
    /// A fault that stops the judge.
    pub fn stop(kind: FaultKind) -> Self {
        Self {
            kind,
            retryable: false,
        }
    }
}

/// The classification every HTTP backend shares: 429 rate limited, 408 timeout, 401/403 auth,
/// 5xx server error (all retryable but auth); anything else (4xx, 3xx) a permanent bad request.
/// Backends check their own provider-specific cases (quota, overload) first.
pub fn classify_status(status: u16) -> Class {
    match status {
        429 => Class::retry(FaultKind::RateLimited),
        408 => Class::retry(FaultKind::Timeout),
        401 | 403 => Class::stop(FaultKind::Auth),
        500..=599 => Class::retry(FaultKind::ServerError),
        _ => Class::stop(FaultKind::BadRequest),
    }
}

/// The hint appended to an auth failure.
pub const AUTH_HINT: &str = " (check the key in the environment variable named by api_key_env)";

/// The hint appended to a redirect (a redirected POST would silently become a GET, so redirects
/// are not followed).
pub fn redirect_hint(headers: &HeaderMap) -> String {
    let location = header(headers, reqwest::header::LOCATION.as_str()).unwrap_or("?");
    format!(" (redirect to {location}; set base_url to the final URL)")
}

/// A 2xx or error response, read within the body cap and already redacted.
#[derive(Debug)]
pub struct HttpReply {
    /// The status.
    pub status: StatusCode,
    /// The headers, kept for non-success statuses only (`Retry-After`, `Location`).
    pub headers: Option<HeaderMap>,
    /// The body, with every secret replaced.
    pub body: Vec<u8>,
    /// True when a secret was found in the body and replaced.
    pub redacted: bool,
}

/// One endpoint of a judge with several (`base_urls`): its URL, its own concurrency bound and
/// when it may be used again after failing.
struct Replica {
    url: reqwest::Url,
    slots: Option<tokio::sync::Semaphore>,
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Replica {
    fn down_until(&self) -> Option<std::time::Instant> {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_down_until(&self, until: Option<std::time::Instant>) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// One HTTP endpoint of a judge: the pooled client, the URL, the secrets to redact and the
/// limits (timeout, longest server-requested wait honoured, largest body read).
pub struct HttpEndpoint {
    base_url: String,
    endpoint: String,
    /// `endpoint`, parsed once (reqwest would parse the string on every call).
    url: reqwest::Url,
    client: reqwest::Client,
    /// The endpoints of `base_urls`, when the judge has several (empty: only `url`).
    replicas: Vec<Replica>,
    /// Round-robin start of the next call over `replicas`.
    next: std::sync::atomic::AtomicUsize,
    cooldown: Duration,
    redactor: Redactor,
    timeout: Duration,
    max_retry_after: Duration,
    max_body_bytes: u64,
    send_call_id: bool,
}

impl fmt::Debug for HttpEndpoint {
    // Written by hand: the client's default headers hold the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("endpoint", &self.endpoint)
            .field("api_key", &(!self.redactor.is_empty()).then_some(REDACTED))
            .field("timeout", &self.timeout)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl HttpEndpoint {
    /// Build the client for `{base_url}{path}`, the base URL and key resolved through `env`, with
    /// `headers` (the backend's own), the key in the header `key_header` makes of it (marked
    /// sensitive), then the judge file's `headers` (which may override the backend's).
    /// `send_call_id` adds the `x-judge-audit-call` header to every request. The configuration
    /// must be validated.
    pub fn new(
        config: &JudgeConfig,
        env: &dyn Fn(&str) -> Option<String>,
        path: &str,
        mut headers: HeaderMap,
        key_header: fn(&ApiKey) -> (HeaderName, String),
        send_call_id: bool,
    ) -> Result<Self, JudgeBuildError> {
        let name = &config.name;
        let base_url = config
            .resolve_base_url_with(env)
            .map_err(|e| super::templated::config_build_error(name, e))?;
        let api_key = config.resolve_api_key_with(env);
        if let Some(key) = &api_key {
            let (header, value) = key_header(key);
            headers.insert(header, secret_header(config, &value)?);
        }
        let redactor = Redactor::for_key(api_key.as_ref());
        let endpoint = format!("{base_url}{path}");
        for (k, v) in &config.headers {
            let header = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| build_error(name, &format!("headers.{k}"), e.to_string()))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| build_error(name, &format!("headers.{k}"), e.to_string()))?;
            headers.insert(header, value);
        }
        let limits = config.limits();
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("judge-audit/", env!("CARGO_PKG_VERSION")))
            // Many concurrent calls to one host: keep every connection for reuse.
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .connect_timeout(limits.timeout.min(Duration::from_secs(15)))
            // The whole exchange, body included; set once here rather than on every request.
            .timeout(limits.timeout)
            // A redirected POST would silently become a GET; report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| build_error(name, "base_url", format!("cannot build HTTP client: {e}")))?;
        let url = reqwest::Url::parse(&endpoint).map_err(|e| {
            build_error(name, "base_url", format!("`{endpoint}` is not a URL: {e}"))
        })?;
        let mut replicas = Vec::new();
        if config.base_urls.len() > 1 || config.endpoint_concurrency.is_some() {
            for (n, base) in config.base_urls.iter().enumerate() {
                let full = format!("{}{path}", base.trim().trim_end_matches('/'));
                let url = reqwest::Url::parse(&full).map_err(|e| {
                    build_error(name, &format!("base_urls[{n}]"), format!("`{full}`: {e}"))
                })?;
                replicas.push(Replica {
                    url,
                    slots: config.endpoint_concurrency.map(|n| {
                        tokio::sync::Semaphore::new(n.min(tokio::sync::Semaphore::MAX_PERMITS))
                    }),
                    down_until: std::sync::Mutex::new(None),
                });
            }
        }
        Ok(Self {
            base_url,
            endpoint,
            url,
            client,
            replicas,
            next: std::sync::atomic::AtomicUsize::new(0),
            cooldown: config
                .endpoint_cooldown_secs
                .and_then(seconds)
                .unwrap_or(Duration::from_secs(30)),
            redactor,
            timeout: limits.timeout,
            max_retry_after: limits.max_retry_after,
            max_body_bytes: limits.max_response_bytes,
            send_call_id,
        })
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The base URL the endpoint was built from.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The pooled client, its default headers holding the key: provider batch endpoints
    /// (`src/batch/provider.rs`) are called through it so the key stays in one sensitive header.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The secrets removed from every text.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// POST `body` (JSON text) and read the answer within the body cap. Transport failures and
    /// an oversize body come back as faults; any status comes back as a reply for the backend to
    /// classify.
    pub async fn post(&self, call_id: &str, body: Vec<u8>) -> Result<HttpReply, JudgeError> {
        if self.replicas.is_empty() {
            return self.post_to(&self.url, call_id, body).await;
        }
        let replica = self.pick();
        let _slot = match &replica.slots {
            Some(slots) => Some(slots.acquire().await.expect("never closed")),
            None => None,
        };
        let reply = self.post_to(&replica.url, call_id, body).await;
        // A transport failure or a server error takes the endpoint out for the cooldown; the
        // runner's retry goes to another one. Any other answer shows it is up.
        let failed = match &reply {
            Err(JudgeError::Retryable { kind, .. }) => matches!(
                kind,
                FaultKind::Connection | FaultKind::Timeout | FaultKind::ServerError
            ),
            Ok(reply) => reply.status.is_server_error(),
            Err(_) => false,
        };
        replica.set_down_until(failed.then(|| std::time::Instant::now() + self.cooldown));
        reply
    }

    /// The next endpoint in round-robin order that is not cooling down; when all are, the one
    /// that comes back first (tried again rather than failing the call outright).
    fn pick(&self) -> &Replica {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let now = std::time::Instant::now();
        let order = (0..n).map(|i| &self.replicas[(start + i) % n]);
        order
            .clone()
            .find(|r| r.down_until().is_none_or(|t| t <= now))
            .or_else(|| order.min_by_key(|r| r.down_until()))
            .expect("at least one endpoint")
    }

    async fn post_to(
        &self,
        url: &reqwest::Url,
        call_id: &str,
        body: Vec<u8>,
    ) -> Result<HttpReply, JudgeError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if self.send_call_id {
            request = request.header(CALL_ID_HEADER.clone(), call_id);
        }
        let mut response = request.send().await.map_err(|e| self.transport_fault(e))?;
        let status = response.status();
        // Headers matter only for errors (Retry-After, Location): copy them only then.
        let headers = (!status.is_success()).then(|| response.headers().clone());
        if let Some(declared) = response.content_length()
            && declared > self.max_body_bytes
        {
            return Err(self.oversize(status, Some(declared)));
        }
        // Read chunk by chunk so an oversize body is refused without being held whole; the
        // per-request timeout also covers reading the body.
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_fault(e))?
        {
            if (bytes.len() + chunk.len()) as u64 > self.max_body_bytes {
                return Err(self.oversize(status, None));
            }
            bytes.extend_from_slice(&chunk);
        }
        let redacted = self.redactor.redact_bytes(&mut bytes);
        Ok(HttpReply {
            status,
            headers,
            body: bytes,
            redacted,
        })
    }

    fn oversize(&self, status: StatusCode, declared: Option<u64>) -> JudgeError {
        let size = match declared {
            Some(n) => format!("{n} bytes"),
            None => "a body".to_string(),
        };
        JudgeError::Retryable {
            kind: FaultKind::MalformedResponse,
            message: format!(
                "HTTP {status}: {size} over the cap of {} bytes (max_response_bytes), not read",
                self.max_body_bytes
            ),
            retry_after: None,
        }
    }

    /// A fault with `message` redacted (then cut to the quoted length by the caller's own
    /// snippets) and the server-requested wait checked against the cap: a wait beyond
    /// `max_retry_after_secs` is not honoured, the call is a retryable fault that says so.
    pub fn fault(&self, class: Class, message: &str, retry_after: Option<Duration>) -> JudgeError {
        let (mut message, _) = self.redactor.redact(message);
        if !class.retryable {
            return JudgeError::Permanent {
                kind: class.kind,
                message,
            };
        }
        let retry_after = match retry_after {
            Some(wait) if wait > self.max_retry_after => {
                message.push_str(&format!(
                    " (the server asked to wait {}, more than max_retry_after_secs = {}; \
                     retried after the usual backoff instead)",
                    describe_wait(wait),
                    self.max_retry_after.as_secs_f64()
                ));
                None
            }
            other => other,
        };
        JudgeError::Retryable {
            kind: class.kind,
            message,
            retry_after,
        }
    }

    /// A retryable malformed-response fault quoting the (redacted) body.
    pub fn malformed(&self, why: &str, body: &[u8]) -> JudgeError {
        self.fault(
            Class::retry(FaultKind::MalformedResponse),
            &format!("{why}: {}", snippet(body)),
            None,
        )
    }

    /// Classify a failure to send the request or read the response.
    pub fn transport_fault(&self, err: reqwest::Error) -> JudgeError {
        // The URL is known to the user; leaving it out keeps messages short and free of any
        // credentials embedded in it.
        let err = err.without_url();
        let message = error_chain(&err);
        if err.is_timeout() {
            self.fault(
                Class::retry(FaultKind::Timeout),
                &format!("no complete response within {:?}: {message}", self.timeout),
                None,
            )
        } else {
            self.fault(Class::retry(FaultKind::Connection), &message, None)
        }
    }
}

/// What an HTTP backend adds to [`HttpEndpoint`]: its request body and how it reads its answers.
/// Every `HttpBackend` is a [`ChatTransport`] through one implementation, so sending, redaction and
/// the split between success and status errors are written once.
pub trait HttpBackend: Send + Sync + fmt::Debug {
    /// The backend id in the cache key.
    const ID: &'static str;

    /// The endpoint the backend sends to.
    fn http(&self) -> &HttpEndpoint;

    /// The JSON request body of one call.
    fn body(&self, call: &ChatCall<'_>) -> Vec<u8>;

    /// Classify a non-success status (the body already redacted).
    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> JudgeError;

    /// Read a 2xx body (already redacted) into a completion.
    fn parse_success(&self, body: &[u8]) -> Result<Completion, JudgeError>;
}

/// JSON text of a request body (plain strings and numbers: serializing cannot fail).
pub fn json_body(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("request bodies serialize")
}

#[async_trait]
impl<B: HttpBackend> ChatTransport for B {
    fn backend(&self) -> &'static str {
        B::ID
    }

    fn endpoint(&self) -> &str {
        self.http().endpoint()
    }

    fn redactor(&self) -> &Redactor {
        self.http().redactor()
    }

    async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, JudgeError> {
        let reply = self
            .http()
            .post(&call.request.call_id, self.body(call))
            .await?;
        match &reply.headers {
            Some(headers) => Err(self.status_error(reply.status, headers, &reply.body)),
            None => self.parse_success(&reply.body).map(|mut c| {
                c.redacted = reply.redacted;
                c
            }),
        }
    }
}

/// A header map from name/value pairs (the backends' unit tests).
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn describe_wait(wait: Duration) -> String {
    if wait == Duration::MAX {
        "longer than any clock can count".to_string()
    } else {
        format!("{} s", wait.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_in_text_and_bytes() {
        let key = ApiKey::new("sk-secret-123").unwrap();
        let r = Redactor::for_key(Some(&key));
        assert_eq!(
            r.redact("a sk-secret-123 b sk-secret-123"),
            ("a <redacted> b <redacted>".to_string(), true)
        );
        assert_eq!(r.redact("clean"), ("clean".to_string(), false));
        let mut bytes = b"\xff sk-secret-123\xfe".to_vec();
        assert!(r.redact_bytes(&mut bytes));
        assert_eq!(bytes, b"\xff <redacted>\xfe".to_vec());
        let mut clean = b"sk-secret-12".to_vec();
        assert!(!r.redact_bytes(&mut clean));
        assert!(!Redactor::for_key(None).redact("sk-secret-123").1);
    }

    #[test]
    fn seconds_never_panic() {
        assert_eq!(seconds(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(1e20), Some(Duration::MAX));
        assert_eq!(seconds(f64::MAX), Some(Duration::MAX));
        assert_eq!(seconds(-1.0), None);
        assert_eq!(seconds(f64::NAN), None);
        assert_eq!(seconds(f64::INFINITY), None);
    }

    #[test]
    fn tails_and_heads_are_cut() {
        let long = "y".repeat(1000);
        assert_eq!(truncate(&long).chars().count(), MAX_QUOTED + 1);
        assert!(truncate_tail(&long).starts_with('…'));
        assert_eq!(truncate_tail("short"), "short");
        assert_eq!(snippet(b""), "(empty body)");
    }
}
