//! Anthropic Messages API backend.
//!
//! One `POST {base_url}/v1/messages` per judgment through one pooled `reqwest::Client` per judge,
//! with `x-api-key`, `anthropic-version: 2023-06-01` and a JSON body
//! `{model, max_tokens, temperature, system?, messages: [{role: "user", content}]}`. The
//! template's system message, when it has one, goes in the top-level `system` string (the
//! Messages API has no system role). The API takes no seed, so `seed` is not sent.
//!
//! The base URL is `base_url`, else the variable named by `base_url_env` (default
//! `ANTHROPIC_BASE_URL`), else `https://api.anthropic.com`. The key comes from the variable named
//! by `api_key_env` (default `ANTHROPIC_API_KEY`). A key is required unless the base URL's host is
//! a loopback address (`localhost`, `127.0.0.0/8`, `::1`): local gateways and test servers often
//! need none, while a missing key for a remote host can only end in 401s, so building the judge
//! fails at once instead. Without a key no `x-api-key` header is sent.
//!
//! Failures are classified from the status and the Anthropic error body
//! `{"type":"error","error":{"type","message"}}`: 429 and 529 (`overloaded_error`) are retryable
//! rate limits, 5xx retryable server errors, 401/403 permanent auth failures, other 4xx permanent
//! bad requests, and billing problems (`billing_error`, 402, "credit balance" messages) permanent
//! quota failures. The wait the server asks for comes from `Retry-After`, else from the
//! `anthropic-ratelimit-*-reset` RFC 3339 timestamps. The key is redacted from every message and
//! never printed by `Debug`.

use super::chat::{ChatCall, ChatMessage, Completion};
use super::config::Backend;
use super::http::{self, HttpBackend, HttpEndpoint, build_error, snippet, truncate};
use super::templated::{BuildTransport, Prepared, TemplatedJudge};
use super::{FaultKind, JudgeBuildError, JudgeConfig, JudgeError, TokenUsage};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

pub use super::http::Class;

#[cfg(test)]
use super::http::MAX_QUOTED;

/// The API version sent in `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The rate limits whose `anthropic-ratelimit-{limit}-remaining` / `-reset` headers are read.
const RATE_LIMITS: &[&str] = &["requests", "tokens", "input-tokens", "output-tokens"];

/// A judge behind the Anthropic Messages API.
pub type AnthropicJudge = TemplatedJudge<AnthropicTransport>;

/// The `/v1/messages` transport.
#[derive(Debug)]
pub struct AnthropicTransport {
    http: HttpEndpoint,
}

/// True when a base URL's host is `localhost` or a loopback IP address.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl BuildTransport for AnthropicTransport {
    const BACKEND: Backend = Backend::Anthropic;

    fn build(
        config: &JudgeConfig,
        _prepared: &Prepared,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // The judge file's headers come last (in HttpEndpoint) so they can override
        // anthropic-version or add anthropic-beta.
        let http = HttpEndpoint::new(
            config,
            env,
            "/v1/messages",
            headers,
            |key| {
                (
                    HeaderName::from_static("x-api-key"),
                    key.expose().to_string(),
                )
            },
            false,
        )?;
        if http.redactor().is_empty() && !is_loopback_url(http.base_url()) {
            return Err(build_error(
                &config.name,
                "api_key_env",
                format!(
                    "no API key: set the environment variable {} (a key is required \
                     unless the base URL is a loopback address; base URL: {})",
                    config.api_key_env_name().unwrap_or_default(),
                    http.base_url()
                ),
            ));
        }
        Ok(Self { http })
    }
}

impl HttpBackend for AnthropicTransport {
    const ID: &'static str = "anthropic";

    fn http(&self) -> &HttpEndpoint {
        &self.http
    }

    fn body(&self, call: &ChatCall<'_>) -> Vec<u8> {
        let params = call.params;
        let body = MessagesRequest {
            model: &params.model,
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            system: ChatMessage::system(call.messages),
            messages: [Message {
                role: "user",
                content: ChatMessage::user(call.messages),
            }],
        };
        http::json_body(&body)
    }

    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> JudgeError {
        let error = ErrorBody::parse(body);
        let detail = error.describe(body);
        let class = classify(
            status.as_u16(),
            error.kind.as_deref(),
            error.message.as_deref().unwrap_or(""),
        );
        let mut message = format!("HTTP {status}: {detail}");
        match class.kind {
            FaultKind::Quota => message.push_str(" (billing: the account has no credit left)"),
            FaultKind::Auth => message.push_str(http::AUTH_HINT),
            FaultKind::BadRequest if status == StatusCode::NOT_FOUND => {
                message.push_str(&format!(
                    " (POST {}; check the model id, and that base_url is the API root, without /v1)",
                    self.http.endpoint()
                ));
            }
            FaultKind::BadRequest if status.is_redirection() => {
                message.push_str(&http::redirect_hint(headers));
            }
            _ => {}
        }
        self.http
            .fault(class, &message, retry_after(headers, SystemTime::now()))
    }

    fn parse_success(&self, body: &[u8]) -> Result<Completion, JudgeError> {
        let malformed = |why: &str| self.http.malformed(why, body);
        let response: MessagesResponse = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return Err(malformed(&format!("response is not Messages JSON ({e})"))),
        };
        // Some gateways answer 200 with an error object.
        if response.kind.as_deref() == Some("error") {
            let error = ErrorBody::parse(body);
            let class = classify_type(error.kind.as_deref(), error.message.as_deref());
            return Err(self.http.fault(
                class,
                &format!("HTTP 200: {}", error.describe(body)),
                None,
            ));
        }
        let Some(content) = response.content else {
            return Err(malformed("response has no content"));
        };
        let texts: Vec<&str> = content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect();
        let usage = response.usage.map(|u| TokenUsage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
        });
        let (text, refused) = if texts.is_empty() {
            match response.stop_reason.as_deref() {
                // A refusal, or tokens spent before any text (e.g. on thinking): the model
                // answered nothing, and retrying would do the same. Counted as invalid.
                Some("refusal") | Some("max_tokens") => (String::new(), true),
                _ => return Err(malformed("response has no text content block")),
            }
        } else {
            // Blank text is a valid reply; the parser finds no label and says Invalid.
            (texts.concat(), false)
        };
        Ok(Completion {
            text,
            usage,
            refused,
            ..Completion::default()
        })
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [Message<'a>; 1],
}

/// The parts of a Messages API response this backend reads.
#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Option<Vec<ContentBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// `error.type` and `error.message` of an Anthropic error body, when present.
#[derive(Debug, Default)]
struct ErrorBody {
    kind: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Self::default();
        };
        let Some(error) = value.get("error") else {
            return Self::default();
        };
        let text = |k: &str| error.get(k).and_then(|v| v.as_str()).map(str::to_string);
        match error {
            serde_json::Value::String(s) => Self {
                kind: None,
                message: Some(s.clone()),
            },
            _ => Self {
                kind: text("type"),
                message: text("message"),
            },
        }
    }

    /// `type: message` (truncated), or a snippet of the body when it is not an error object.
    fn describe(&self, body: &[u8]) -> String {
        match (&self.kind, &self.message) {
            (Some(k), Some(m)) => format!("{k}: {}", truncate(m)),
            (None, Some(m)) => truncate(m),
            (Some(k), None) => k.clone(),
            (None, None) => snippet(body),
        }
    }
}

/// True when an error says the account cannot pay (billing, credit balance, spend limit).
fn is_billing(error_type: Option<&str>, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    error_type == Some("billing_error")
        || m.contains("credit balance")
        || m.contains("billing")
        || m.contains("usage limits")
        || m.contains("spend limit")
}

/// Classify an error by HTTP status, Anthropic `error.type` and message.
pub fn classify(status: u16, error_type: Option<&str>, message: &str) -> Class {
    // Billing problems arrive as 400 invalid_request_error ("credit balance is too low"), 402 or
    // billing_error: retrying cannot help.
    if status == 402 || (status != 429 && status < 500 && is_billing(error_type, message)) {
        return Class::stop(FaultKind::Quota);
    }
    match status {
        429 | 529 => Class::retry(FaultKind::RateLimited),
        408 => Class::retry(FaultKind::Timeout),
        401 | 403 => Class::stop(FaultKind::Auth),
        // A gateway may put Anthropic's overload answer behind another 5xx.
        500..=599 if error_type == Some("overloaded_error") => Class::retry(FaultKind::RateLimited),
        500..=599 => Class::retry(FaultKind::ServerError),
        _ => Class::stop(FaultKind::BadRequest),
    }
}

/// Classify an error object by its `type` alone (an error body sent with a 2xx status).
pub fn classify_type(error_type: Option<&str>, message: Option<&str>) -> Class {
    if is_billing(error_type, message.unwrap_or("")) {
        return Class::stop(FaultKind::Quota);
    }
    match error_type {
        Some("rate_limit_error") | Some("overloaded_error") => Class::retry(FaultKind::RateLimited),
        Some("api_error") => Class::retry(FaultKind::ServerError),
        Some("timeout_error") => Class::retry(FaultKind::Timeout),
        Some("authentication_error") | Some("permission_error") => Class::stop(FaultKind::Auth),
        Some("invalid_request_error") | Some("not_found_error") | Some("request_too_large") => {
            Class::stop(FaultKind::BadRequest)
        }
        _ => Class::retry(FaultKind::MalformedResponse),
    }
}

/// Parse an RFC 3339 timestamp (`2024-06-06T18:22:30Z`, `...30.25+02:00`) as used in
/// `anthropic-ratelimit-*-reset`. `None` for anything else or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(range)?;
        if s.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(s).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, d) in frac[..digits.min(9)].iter().enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |i: usize| i64::from(digits[i] - b'0');
            let minutes = (v(0) * 10 + v(1)) * 60 + v(2) * 10 + v(3);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The wait the server asked for: `Retry-After` (seconds or an HTTP-date), else the
/// `anthropic-ratelimit-*-reset` time of the exhausted limits (remaining 0; none known to be
/// exhausted: all limits), the latest of them, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = http::retry_after_header(headers, now) {
        return Some(wait);
    }
    let resets: Vec<(bool, SystemTime)> = RATE_LIMITS
        .iter()
        .filter_map(|limit| {
            let reset =
                get(&format!("anthropic-ratelimit-{limit}-reset")).and_then(parse_rfc3339)?;
            let exhausted = get(&format!("anthropic-ratelimit-{limit}-remaining"))
                .and_then(|v| v.parse::<f64>().ok())
                == Some(0.0);
            Some((exhausted, reset))
        })
        .collect();
    let any_exhausted = resets.iter().any(|(e, _)| *e);
    resets
        .iter()
        .filter(|(e, _)| *e || !any_exhausted)
        .map(|(_, t)| t.duration_since(now).unwrap_or(Duration::ZERO))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_timestamps() {
        // Reference values from Python: datetime(...,tzinfo=...).timestamp().
        assert_eq!(
            parse_rfc3339("2024-06-06T18:22:30Z"),
            Some(epoch(1_717_698_150))
        );
        assert_eq!(
            parse_rfc3339("2025-01-31T23:59:59.5+02:30"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_738_358_999.5))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29t00:00:00z"),
            Some(epoch(951_782_400))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(epoch(0)));
        for bad in [
            "",
            "2024-06-06",
            "2024-06-06T18:22:30",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-06-06T24:00:00Z",
            "2024-06-06T18:22:30.Z",
            "2024-06-06T18:22:30+0200",
            "1969-12-31T23:59:59Z",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    use crate::judge::http::test_headers as headers;

    #[test]
    fn retry_after_sources_and_priority() {
        let now = epoch(1_717_698_150); // 2024-06-06T18:22:30Z
        let secs = |pairs: &[(&'static str, &str)]| {
            retry_after(&headers(pairs), now).map(|d| d.as_secs_f64())
        };
        assert_eq!(secs(&[("retry-after", "12")]), Some(12.0));
        // Retry-After wins over the reset headers.
        assert_eq!(
            secs(&[
                ("retry-after", "2"),
                ("anthropic-ratelimit-requests-reset", "2024-06-06T18:23:30Z")
            ]),
            Some(2.0)
        );
        // Only the exhausted limit's reset counts.
        assert_eq!(
            secs(&[
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2024-06-06T18:22:45Z"),
                ("anthropic-ratelimit-tokens-remaining", "5000"),
                ("anthropic-ratelimit-tokens-reset", "2024-06-06T18:23:30Z"),
            ]),
            Some(15.0)
        );
        // None known to be exhausted: the latest reset.
        assert_eq!(
            secs(&[
                (
                    "anthropic-ratelimit-input-tokens-reset",
                    "2024-06-06T18:22:40Z"
                ),
                (
                    "anthropic-ratelimit-output-tokens-reset",
                    "2024-06-06T18:23:00.5Z"
                ),
            ]),
            Some(30.5)
        );
        // A reset in the past means "now"; garbage means nothing.
        assert_eq!(
            secs(&[("anthropic-ratelimit-requests-reset", "2024-06-06T18:00:00Z")]),
            Some(0.0)
        );
        assert_eq!(
            secs(&[("anthropic-ratelimit-requests-reset", "soon")]),
            None
        );
        assert_eq!(secs(&[]), None);
    }

    #[test]
    fn classification_table() {
        let c = |status, t: Option<&str>, m: &str| {
            let c = classify(status, t, m);
            (c.kind, c.retryable)
        };
        use FaultKind::*;
        assert_eq!(
            c(429, Some("rate_limit_error"), "slow"),
            (RateLimited, true)
        );
        assert_eq!(
            c(529, Some("overloaded_error"), "Overloaded"),
            (RateLimited, true)
        );
        assert_eq!(
            c(503, Some("overloaded_error"), "Overloaded"),
            (RateLimited, true)
        );
        assert_eq!(c(500, Some("api_error"), "boom"), (ServerError, true));
        assert_eq!(c(502, None, ""), (ServerError, true));
        assert_eq!(
            c(400, Some("invalid_request_error"), "bad"),
            (BadRequest, false)
        );
        assert_eq!(
            c(413, Some("request_too_large"), "big"),
            (BadRequest, false)
        );
        assert_eq!(
            c(404, Some("not_found_error"), "model"),
            (BadRequest, false)
        );
        assert_eq!(c(401, Some("authentication_error"), "key"), (Auth, false));
        assert_eq!(c(403, Some("permission_error"), "no"), (Auth, false));
        assert_eq!(
            c(
                400,
                Some("invalid_request_error"),
                "Your credit balance is too low to access the Anthropic API."
            ),
            (Quota, false)
        );
        assert_eq!(c(402, Some("billing_error"), "pay"), (Quota, false));
        assert_eq!(c(408, None, ""), (Timeout, true));
        let t = |t: &str| {
            let c = classify_type(Some(t), None);
            (c.kind, c.retryable)
        };
        assert_eq!(t("overloaded_error"), (RateLimited, true));
        assert_eq!(t("api_error"), (ServerError, true));
        assert_eq!(t("authentication_error"), (Auth, false));
        assert_eq!(t("billing_error"), (Quota, false));
        assert_eq!(t("request_too_large"), (BadRequest, false));
        assert_eq!(t("something_new"), (MalformedResponse, true));
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://LOCALHOST:1/x",
            "http://[::1]:9000",
            "http://127.8.9.10",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://api.anthropic.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "not a url",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn error_bodies_are_described_and_truncated() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let e = ErrorBody::parse(body);
        assert_eq!(e.describe(body), "rate_limit_error: slow down");
        assert_eq!(ErrorBody::parse(b"<html>").describe(b"<html>"), "<html>");
        assert_eq!(ErrorBody::parse(b"").describe(b""), "(empty body)");
        let long = format!(
            "{{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"{}\"}}}}",
            "x".repeat(1000)
        );
        let d = ErrorBody::parse(long.as_bytes()).describe(long.as_bytes());
        assert_eq!(d.chars().count(), "api_error: ".len() + MAX_QUOTED + 1);
    }
}
