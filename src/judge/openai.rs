//! OpenAI-compatible chat-completions transport.
//!
//! One `POST {base_url}/chat/completions` per judgment, through one pooled `reqwest::Client` per
//! judge ([`super::http::HttpEndpoint`]). Failures are classified into [`FaultKind`]s and split
//! into retryable and permanent errors; the run module owns retries and backoff, this module only
//! reports what the server asked for (`Retry-After`, `x-ratelimit-reset-*`).
//!
//! The API key is read from the environment at build time and only ever placed in the
//! `Authorization` header (marked sensitive). It is redacted from every body and error message,
//! and `Debug` does not print it.

use super::chat::{ChatBody, ChatCall, Completion, TokenLogprob};
use super::config::Backend;
use super::http::{self, Class, HttpBackend, HttpEndpoint, seconds, snippet, truncate};
use super::templated::{BuildTransport, Prepared, TemplatedJudge};
use super::{FaultKind, JudgeBuildError, JudgeConfig, JudgeError, TokenUsage};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;
use std::time::{Duration, SystemTime};

#[cfg(test)]
use super::http::MAX_QUOTED;

/// A judge behind an OpenAI-compatible `/chat/completions` endpoint.
pub type OpenAiJudge = TemplatedJudge<OpenAiTransport>;

/// The `/chat/completions` transport.
#[derive(Debug)]
pub struct OpenAiTransport {
    http: HttpEndpoint,
}

impl BuildTransport for OpenAiTransport {
    const BACKEND: Backend = Backend::Openai;

    fn build(
        config: &JudgeConfig,
        _prepared: &Prepared,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        let http = HttpEndpoint::new(
            config,
            env,
            "/chat/completions",
            HeaderMap::new(),
            |key| (AUTHORIZATION, format!("Bearer {}", key.expose())),
            true,
        )?;
        Ok(Self { http })
    }
}

impl HttpBackend for OpenAiTransport {
    const ID: &'static str = "openai";

    fn http(&self) -> &HttpEndpoint {
        &self.http
    }

    fn body(&self, call: &ChatCall<'_>) -> Vec<u8> {
        let body = ChatBody::new(call.messages, call.params);
        http::json_body(&body)
    }

    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> JudgeError {
        let detail = provider_message(body);
        let message = format!("HTTP {status}: {detail}");
        if is_insufficient_quota(body) {
            return self.http.fault(
                Class::stop(FaultKind::Quota),
                &format!("{message} (the account has no quota left)"),
                None,
            );
        }
        let class = http::classify_status(status.as_u16());
        let message = match class.kind {
            FaultKind::Auth => format!("{message}{}", http::AUTH_HINT),
            _ if status.is_redirection() => format!("{message}{}", http::redirect_hint(headers)),
            _ => message,
        };
        self.http
            .fault(class, &message, retry_after(headers, SystemTime::now()))
    }

    fn parse_success(&self, body: &[u8]) -> Result<Completion, JudgeError> {
        let malformed = |why: &str| self.http.malformed(why, body);
        let response: ChatResponse = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                if is_insufficient_quota(body) {
                    return Err(self.http.fault(
                        Class::stop(FaultKind::Quota),
                        &provider_message(body),
                        None,
                    ));
                }
                return Err(malformed(&format!(
                    "response is not chat-completion JSON ({e})"
                )));
            }
        };
        // Checked on the parsed body: re-parsing every reply as a generic JSON value would cost
        // dozens of allocations per call.
        if response.error.as_ref().is_some_and(is_quota_error) {
            return Err(self.http.fault(
                Class::stop(FaultKind::Quota),
                &provider_message(body),
                None,
            ));
        }
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(malformed("response has no choices"));
        };
        let usage = response.usage.map(|u| TokenUsage {
            input_tokens: u.prompt_tokens.unwrap_or(0),
            output_tokens: u.completion_tokens.unwrap_or(0),
        });
        let message = choice.message.unwrap_or_default();
        let (text, refused) = match (content_text(message.content), message.refusal) {
            // Blank text is a valid reply; the parser finds no label and says Invalid.
            (Some(text), _) => (text, false),
            // A refusal is an answer, not a transport fault: counted as an invalid verdict.
            (None, Some(refusal)) => (refusal, true),
            // Out of tokens before any content (e.g. spent on reasoning): the model answered
            // nothing; retrying would do the same.
            (None, None) if choice.finish_reason.as_deref() == Some("length") => {
                (String::new(), true)
            }
            (None, None) => return Err(malformed("choice has no message content")),
        };
        Ok(Completion {
            text,
            usage,
            logprobs: choice.logprobs.and_then(|lp| lp.content),
            refused,
            ..Completion::default()
        })
    }
}

/// The seed sent for one repeat: the configured seed plus the repeat index, so providers that
/// honour seeds (vLLM, llama.cpp) still show run-to-run variation across repeats at temperature
/// above 0. Kept within the non-negative signed 64-bit range that servers accept.
pub fn request_seed(seed: u64, repeat: u32) -> u64 {
    seed.wrapping_add(u64::from(repeat)) & (i64::MAX as u64)
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Some servers send an error object with a 200 status.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ResponseMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<ChoiceLogprobs>,
}

#[derive(Deserialize, Default)]
struct ResponseMessage {
    /// A string, or (some servers) an array of `{type: "text", text}` parts.
    #[serde(default)]
    content: Option<serde_json::Value>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

fn content_text(content: Option<serde_json::Value>) -> Option<String> {
    match content? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// Parse a Go-style duration as used in `x-ratelimit-reset-*` headers: `1s`, `6m0s`, `20ms`,
/// `1h2m3.5s`; a bare number is seconds.
pub fn parse_reset_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    seconds(total)
}

/// The wait a server asked for: `retry-after-ms`, else `Retry-After` (seconds or an HTTP-date,
/// relative to `now`), else the `x-ratelimit-reset-*` of the exhausted limit (both exhausted or
/// unknown: the longer).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    if let Some(wait) = http::retry_after_header(headers, now) {
        return Some(wait);
    }
    let requests = get("x-ratelimit-reset-requests").and_then(parse_reset_duration);
    let tokens = get("x-ratelimit-reset-tokens").and_then(parse_reset_duration);
    let exhausted = |name: &str| get(name).and_then(|v| v.parse::<f64>().ok()) == Some(0.0);
    match (
        exhausted("x-ratelimit-remaining-requests"),
        exhausted("x-ratelimit-remaining-tokens"),
    ) {
        (true, false) if requests.is_some() => requests,
        (false, true) if tokens.is_some() => tokens,
        _ => requests.max(tokens),
    }
}

/// True when an error body says the account has no quota (`insufficient_quota` as the error's
/// `code` or `type`).
fn is_insufficient_quota(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("error").map(is_quota_error))
        .unwrap_or(false)
}

/// True when a provider's `error` value says the account is out of quota.
fn is_quota_error(error: &serde_json::Value) -> bool {
    ["code", "type"]
        .iter()
        .any(|k| error.get(k).and_then(|v| v.as_str()) == Some("insufficient_quota"))
}

/// The provider's own error message if the body has one, else a snippet of the body.
fn provider_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            match error {
                serde_json::Value::String(s) => Some(s.clone()),
                _ => error
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string),
            }
        });
    match from_json {
        Some(m) => truncate(&m),
        None => snippet(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations() {
        let cases = [
            ("1s", 1.0),
            ("6m0s", 360.0),
            ("20ms", 0.02),
            ("1h2m3.5s", 3723.5),
            ("0.5s", 0.5),
            ("2", 2.0),
            ("1.25", 1.25),
            ("7m12s", 432.0),
            ("100us", 1e-4),
        ];
        for (text, secs) in cases {
            let got = parse_reset_duration(text).unwrap();
            assert!((got.as_secs_f64() - secs).abs() < 1e-9, "{text}: {got:?}");
        }
        for bad in ["", "s", "1x", "abc", "-1", "1s2"] {
            assert_eq!(parse_reset_duration(bad), None, "{bad:?}");
        }
    }

    use crate::judge::http::test_headers as headers;

    #[test]
    fn retry_after_sources_and_priority() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let secs = |h: &HeaderMap| retry_after(h, now).map(|d| d.as_secs_f64());
        assert_eq!(secs(&headers(&[("retry-after", "7")])), Some(7.0));
        // HTTP-date 90 s after `now`.
        assert_eq!(
            secs(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:29:30 GMT"
            )])),
            Some(90.0)
        );
        // A date in the past means "now".
        assert_eq!(
            secs(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:00:00 GMT"
            )])),
            Some(0.0)
        );
        assert_eq!(
            secs(&headers(&[("retry-after-ms", "250"), ("retry-after", "7")])),
            Some(0.25)
        );
        assert_eq!(
            secs(&headers(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ])),
            Some(360.0)
        );
        assert_eq!(
            secs(&headers(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-remaining-tokens", "15000"),
            ])),
            Some(1.0)
        );
        assert_eq!(
            secs(&headers(&[("x-ratelimit-reset-tokens", "20ms")])),
            Some(0.02)
        );
        assert_eq!(secs(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(secs(&HeaderMap::new()), None);
    }

    #[test]
    fn request_seed_varies_by_repeat_and_stays_in_range() {
        assert_eq!(request_seed(7, 0), 7);
        assert_eq!(request_seed(7, 3), 10);
        assert_eq!(request_seed(i64::MAX as u64, 1), 0);
    }

    #[test]
    fn provider_messages_are_truncated() {
        let long = format!("{{\"error\":{{\"message\":\"{}\"}}}}", "x".repeat(1000));
        let m = provider_message(long.as_bytes());
        assert_eq!(m.chars().count(), MAX_QUOTED + 1);
        assert_eq!(provider_message(b""), "(empty body)");
        assert_eq!(provider_message(b"{\"error\":\"boom\"}"), "boom");
    }
}
