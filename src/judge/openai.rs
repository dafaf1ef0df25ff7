//! OpenAI-compatible chat-completions backend.
//!
//! One `POST {base_url}/chat/completions` per judgment, through one pooled `reqwest::Client` per
//! judge. Failures are classified into [`FaultKind`]s and split into retryable and permanent
//! errors; the run module owns retries and backoff, this module only reports what the server
//! asked for (`Retry-After`, `x-ratelimit-reset-*`).
//!
//! The API key is read from the environment at build time and only ever placed in the
//! `Authorization` header (marked sensitive). It is redacted from every error message, and
//! [`OpenAiJudge`]'s `Debug` does not print it.

use super::config::{ApiKey, Backend, ConfigError};
use super::parser::{Pick, VerdictParser};
use super::template::{LabelTokens, Template};
use super::{
    FaultKind, Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest,
    LabelProbs, SlotVerdict, TokenUsage,
};
use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};

/// Longest provider error text quoted in an error message.
const MAX_QUOTED: usize = 300;

/// Lets a proxy or server log match requests to the audit's call ids (a parsed name: parsing it
/// on every call would allocate).
static CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-judge-audit-call");

/// A judge behind an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiJudge {
    name: String,
    model: String,
    endpoint: String,
    /// `endpoint`, parsed once (reqwest would parse the string on every call).
    endpoint_url: reqwest::Url,
    api_key: Option<ApiKey>,
    temperature: f64,
    max_tokens: u32,
    seed: u64,
    timeout: Duration,
    template: Template,
    parser: VerdictParser,
    /// `top_logprobs` and the label tokens, when log-probability verdicts are on.
    logprobs: Option<(u32, LabelTokens)>,
    client: reqwest::Client,
}

impl fmt::Debug for OpenAiJudge {
    // Written by hand so the key can never be printed: only whether one is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiJudge")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("seed", &self.seed)
            .field("timeout", &self.timeout)
            .field("template", &self.template.name)
            .field("logprobs", &self.logprobs.as_ref().map(|(k, _)| *k))
            .finish()
    }
}

fn build_error(judge: &str, field: &str, message: impl Into<String>) -> JudgeBuildError {
    JudgeBuildError::Invalid {
        judge: judge.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn config_build_error(judge: &str, err: ConfigError) -> JudgeBuildError {
    let field = err.field().unwrap_or("template").to_string();
    build_error(judge, &field, err.to_string())
}

impl OpenAiJudge {
    /// Build from configuration, reading the key and base URL from the process environment.
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// Build from configuration with an explicit environment lookup (tests, embedding).
    pub fn with_env(
        config: &JudgeConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        let name = &config.name;
        if config.backend != Backend::Openai {
            return Err(build_error(name, "backend", "not an openai judge"));
        }
        config.validate().map_err(|e| config_build_error(name, e))?;
        let template = config
            .load_template()
            .map_err(|e| config_build_error(name, e))?;
        let parser = VerdictParser::for_config(&template, &config.parser)
            .map_err(|e| build_error(name, &format!("parser.{}", e.field), e.message))?;
        let base_url = config
            .resolve_base_url_with(&env)
            .map_err(|e| config_build_error(name, e))?;
        let api_key = config.resolve_api_key_with(&env);
        if let Some(min) = template.min_max_tokens
            && config.max_tokens < min
        {
            tracing::warn!(
                judge = %name,
                max_tokens = config.max_tokens,
                template = %template.name,
                "max_tokens is below the template's minimum of {min}: verdicts may be cut off and counted invalid"
            );
        }

        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    build_error(
                        name,
                        "api_key_env",
                        format!(
                            "the key in ${} contains characters not allowed in an HTTP header",
                            config.api_key_env_name().unwrap_or_default()
                        ),
                    )
                })?;
            // Sensitive values are redacted by reqwest/http in their own Debug output.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (k, v) in &config.headers {
            let header = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| build_error(name, &format!("headers.{k}"), e.to_string()))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| build_error(name, &format!("headers.{k}"), e.to_string()))?;
            headers.insert(header, value);
        }
        let timeout = Duration::from_secs_f64(config.timeout_secs);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("judge-audit/", env!("CARGO_PKG_VERSION")))
            // Many concurrent calls to one host: keep every connection for reuse.
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            // The whole exchange, body included; set once here rather than on every request.
            .timeout(timeout)
            // A redirected POST would silently become a GET; report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| build_error(name, "base_url", format!("cannot build HTTP client: {e}")))?;
        let logprobs = if config.logprobs {
            let tokens = template.tokens.clone().ok_or_else(|| {
                build_error(name, "logprobs", "the template declares no [labels.tokens]")
            })?;
            Some((config.top_logprobs, tokens))
        } else {
            None
        };
        let endpoint = format!("{base_url}/chat/completions");
        let endpoint_url = reqwest::Url::parse(&endpoint).map_err(|e| {
            build_error(name, "base_url", format!("`{endpoint}` is not a URL: {e}"))
        })?;
        Ok(Self {
            name: name.clone(),
            model: config.model.clone(),
            endpoint_url,
            endpoint,
            api_key,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            seed: config.seed,
            timeout,
            template,
            parser,
            logprobs,
            client,
        })
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The prompt template in use (its `sha256()` belongs in run metadata).
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// Whether an API key was found (the key itself is never exposed).
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Remove the key from any text before it goes into an error message.
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) => text.replace(key.expose(), "<redacted>"),
            None => text.to_string(),
        }
    }

    fn retryable(
        &self,
        kind: FaultKind,
        message: &str,
        retry_after: Option<Duration>,
    ) -> JudgeError {
        JudgeError::Retryable {
            kind,
            message: self.redact(message),
            retry_after,
        }
    }

    fn permanent(&self, kind: FaultKind, message: &str) -> JudgeError {
        JudgeError::Permanent {
            kind,
            message: self.redact(message),
        }
    }

    /// Classify a failure to send the request or read the response.
    fn transport_error(&self, err: reqwest::Error) -> JudgeError {
        // The URL is known to the user; leaving it out keeps messages short and free of any
        // credentials embedded in it.
        let err = err.without_url();
        let message = error_chain(&err);
        if err.is_timeout() {
            self.retryable(
                FaultKind::Timeout,
                &format!("no complete response within {:?}: {message}", self.timeout),
                None,
            )
        } else {
            self.retryable(FaultKind::Connection, &message, None)
        }
    }

    /// Classify a non-success HTTP status.
    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> JudgeError {
        let detail = provider_message(body);
        let message = format!("HTTP {status}: {detail}");
        if is_insufficient_quota(body) {
            return self.permanent(
                FaultKind::Quota,
                &format!("{message} (the account has no quota left)"),
            );
        }
        let retry_after = retry_after(headers, SystemTime::now());
        match status.as_u16() {
            429 => self.retryable(FaultKind::RateLimited, &message, retry_after),
            408 => self.retryable(FaultKind::Timeout, &message, retry_after),
            401 | 403 => self.permanent(
                FaultKind::Auth,
                &format!(
                    "{message} (check the key in the environment variable named by api_key_env)"
                ),
            ),
            s if (500..=599).contains(&s) => {
                self.retryable(FaultKind::ServerError, &message, retry_after)
            }
            s if (300..=399).contains(&s) => {
                let location = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                self.permanent(
                    FaultKind::BadRequest,
                    &format!("{message} (redirect to {location}; set base_url to the final URL)"),
                )
            }
            _ => self.permanent(FaultKind::BadRequest, &message),
        }
    }

    fn request_body<'a>(
        &'a self,
        request: &JudgeRequest,
        rendered: &'a super::template::RenderedPrompt,
    ) -> ChatRequest<'a> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &rendered.system {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        messages.push(Message {
            role: "user",
            content: &rendered.user,
        });
        ChatRequest {
            model: &self.model,
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            seed: request_seed(self.seed, request.repeat),
            n: 1,
            logprobs: self.logprobs.as_ref().map(|_| true),
            top_logprobs: self.logprobs.as_ref().map(|(k, _)| *k),
        }
    }

    /// Turn a 2xx body into a reply.
    fn parse_success(&self, body: &[u8]) -> Result<JudgeReply, JudgeError> {
        let malformed = |why: &str| {
            self.retryable(
                FaultKind::MalformedResponse,
                &format!("{why}: {}", snippet(body)),
                None,
            )
        };
        let response: ChatResponse = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                if is_insufficient_quota(body) {
                    return Err(self.permanent(FaultKind::Quota, &provider_message(body)));
                }
                return Err(malformed(&format!(
                    "response is not chat-completion JSON ({e})"
                )));
            }
        };
        // Checked on the parsed body: re-parsing every reply as a generic JSON value would cost
        // dozens of allocations per call.
        if response.error.as_ref().is_some_and(is_quota_error) {
            return Err(self.permanent(FaultKind::Quota, &provider_message(body)));
        }
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(malformed("response has no choices"));
        };
        let usage = response.usage.map(|u| TokenUsage {
            input_tokens: u.prompt_tokens.unwrap_or(0),
            output_tokens: u.completion_tokens.unwrap_or(0),
        });
        let message = choice.message.unwrap_or_default();
        let (raw, verdict) = match (content_text(message.content), message.refusal) {
            (Some(text), _) => {
                // Blank text is a valid reply; the parser finds no label and says Invalid.
                let verdict = self.parser.parse(&text);
                (text, verdict)
            }
            // A refusal is an answer, not a transport fault: counted as an invalid verdict.
            (None, Some(refusal)) => (refusal, SlotVerdict::Invalid),
            // Out of tokens before any content (e.g. spent on reasoning): the model answered
            // nothing; retrying would do the same.
            (None, None) if choice.finish_reason.as_deref() == Some("length") => {
                (String::new(), SlotVerdict::Invalid)
            }
            (None, None) => return Err(malformed("choice has no message content")),
        };
        let label_probs = match (&self.logprobs, &choice.logprobs) {
            (Some((_, tokens)), Some(lp)) => lp
                .content
                .as_deref()
                .and_then(|content| label_probs(content, tokens, self.parser.pick() == Pick::Last)),
            _ => None,
        };
        Ok(JudgeReply {
            raw,
            verdict,
            usage,
            label_probs,
        })
    }
}

/// The seed sent for one repeat: the configured seed plus the repeat index, so providers that
/// honour seeds (vLLM, llama.cpp) still show run-to-run variation across repeats at temperature
/// above 0. Kept within the non-negative signed 64-bit range that servers accept.
pub fn request_seed(seed: u64, repeat: u32) -> u64 {
    seed.wrapping_add(u64::from(repeat)) & (i64::MAX as u64)
}

#[async_trait]
impl Judge for OpenAiJudge {
    fn name(&self) -> &str {
        &self.name
    }
    fn simulated(&self) -> bool {
        false
    }
    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let rendered = self
            .template
            .render(&request.prompt, &request.first, &request.second);
        let body = self.request_body(request, &rendered);
        let response = self
            .client
            .post(self.endpoint_url.clone())
            .header(CALL_ID_HEADER.clone(), request.call_id.as_str())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        // Headers matter only for errors (Retry-After, Location): copy them only then.
        let headers = (!status.is_success()).then(|| response.headers().clone());
        // The per-request timeout also covers reading the body.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        match headers {
            Some(headers) => Err(self.status_error(status, &headers, &bytes)),
            None => self.parse_success(&bytes),
        }
    }

    fn cache_key(&self, request: &JudgeRequest) -> Option<String> {
        use sha2::{Digest, Sha256};
        let rendered = self
            .template
            .render(&request.prompt, &request.first, &request.second);
        let body = serde_json::to_string(&self.request_body(request, &rendered)).ok()?;
        let mut hasher = Sha256::new();
        for part in [
            "openai",
            self.endpoint.as_str(),
            body.as_str(),
            &request.repeat.to_string(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        Some(hex::encode(hasher.finalize()))
    }

    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        let rendered = self
            .template
            .render(&request.prompt, &request.first, &request.second);
        // About four characters a token for English text; budgets only need the right size.
        ((rendered.user.len() + rendered.system.as_ref().map_or(0, String::len)) / 4) as u64
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    temperature: f64,
    max_tokens: u32,
    seed: u64,
    n: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
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

/// One generated token with its log-probability and the top alternatives at its position.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenLogprob {
    /// The generated token's text.
    pub token: String,
    /// Its natural-log probability (`None` when the server sent null).
    #[serde(default)]
    pub logprob: Option<f64>,
    /// The most likely tokens at this position.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token at a generated position.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its natural-log probability (`None` when the server sent null).
    #[serde(default)]
    pub logprob: Option<f64>,
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

/// Label probabilities at one generated position: the first non-blank generated token, or,
/// with `tokens.after`, the token generated right after text ending in `after` (the last such
/// position when `use_last`, matching a `last` pick rule). Each label's probability is the summed
/// probability of its tokens among the position's alternatives (plus the sampled token). `None`
/// when there is no such position or none of the label tokens is among the alternatives.
/// Results are finite, non-negative and sum to at most 1.
pub fn label_probs(
    content: &[TokenLogprob],
    tokens: &LabelTokens,
    use_last: bool,
) -> Option<LabelProbs> {
    let position = match &tokens.after {
        None => content.iter().position(|t| !t.token.trim().is_empty()),
        Some(after) => {
            let after = after.trim();
            let mut generated = String::new();
            let mut found = None;
            for (i, t) in content.iter().enumerate() {
                if generated.trim_end().ends_with(after) {
                    found = Some(i);
                    if !use_last {
                        break;
                    }
                }
                generated.push_str(&t.token);
            }
            found
        }
    }?;
    let at = &content[position];
    let mut alternatives: Vec<(&str, f64)> = at
        .top_logprobs
        .iter()
        .filter_map(|t| t.logprob.map(|lp| (t.token.as_str(), lp)))
        .collect();
    if let Some(lp) = at.logprob
        && !alternatives.iter().any(|(t, _)| *t == at.token)
    {
        alternatives.push((at.token.as_str(), lp));
    }
    let (mut first, mut second, mut tie) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut matched = false;
    for (token, lp) in alternatives {
        if lp.is_nan() {
            continue;
        }
        // exp(-inf) = 0; a slightly positive log-probability (rounding) counts as certainty.
        let p = lp.min(0.0).exp();
        let target = if tokens.first.iter().any(|t| t == token) {
            &mut first
        } else if tokens.second.iter().any(|t| t == token) {
            &mut second
        } else if tokens.tie.iter().any(|t| t == token) {
            &mut tie
        } else {
            continue;
        };
        *target += p;
        matched = true;
    }
    if !matched {
        return None;
    }
    let total = first + second + tie;
    if total > 1.0 {
        // Distinct tokens are disjoint events; a sum above 1 is rounding in the server's numbers.
        first /= total;
        second /= total;
        tie /= total;
    }
    Some(LabelProbs { first, second, tie })
}

/// Parse a Go-style duration as used in `x-ratelimit-reset-*` headers: `1s`, `6m0s`, `20ms`,
/// `1h2m3.5s`; a bare number is seconds.
pub fn parse_reset_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
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
    total.is_finite().then(|| Duration::from_secs_f64(total))
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
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(value) = get("retry-after") {
        if let Ok(secs) = value.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs));
            }
        } else if let Ok(when) = httpdate::parse_http_date(value) {
            return Some(when.duration_since(now).unwrap_or(Duration::ZERO));
        }
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

fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    truncate(&String::from_utf8_lossy(body))
}

fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

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

    fn tok(token: &str, lp: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            logprob: Some(lp),
            top_logprobs: top
                .iter()
                .map(|(t, l)| TopLogprob {
                    token: (*t).into(),
                    logprob: Some(*l),
                })
                .collect(),
        }
    }

    fn letters() -> LabelTokens {
        LabelTokens {
            after: None,
            first: vec!["a".into(), "A".into(), " a".into()],
            second: vec!["b".into(), "B".into()],
            tie: vec!["Tie".into()],
        }
    }

    #[test]
    fn label_probs_first_token() {
        let ln = f64::ln;
        let content = [tok(
            "A",
            ln(0.6),
            &[
                ("A", ln(0.6)),
                ("B", ln(0.25)),
                (" a", ln(0.05)),
                ("Tie", ln(0.04)),
                ("X", ln(0.03)),
            ],
        )];
        let p = label_probs(&content, &letters(), false).unwrap();
        assert!((p.first - 0.65).abs() < 1e-12);
        assert!((p.second - 0.25).abs() < 1e-12);
        assert!((p.tie - 0.04).abs() < 1e-12);
    }

    #[test]
    fn label_probs_after_prefix_and_last() {
        let ln = f64::ln;
        let tokens = LabelTokens {
            after: Some("[[".into()),
            first: vec!["A".into()],
            second: vec!["B".into()],
            tie: vec!["C".into()],
        };
        let content = [
            tok("Use", ln(0.9), &[]),
            tok(" [[", ln(0.9), &[]),
            tok("A", ln(0.5), &[("A", ln(0.5)), ("B", ln(0.5))]),
            tok("]]", 0.0, &[]),
            tok(" so", ln(0.9), &[]),
            tok(" [[", ln(0.9), &[]),
            tok(
                "B",
                ln(0.7),
                &[("B", ln(0.7)), ("C", ln(0.2)), ("A", ln(0.1))],
            ),
            tok("]]", 0.0, &[]),
        ];
        let first = label_probs(&content, &tokens, false).unwrap();
        assert!((first.first - 0.5).abs() < 1e-12 && (first.second - 0.5).abs() < 1e-12);
        assert_eq!(first.tie, 0.0);
        let last = label_probs(&content, &tokens, true).unwrap();
        assert!((last.first - 0.1).abs() < 1e-12);
        assert!((last.second - 0.7).abs() < 1e-12);
        assert!((last.tie - 0.2).abs() < 1e-12);
        // No "[[" generated: no position, no probabilities.
        assert_eq!(label_probs(&content[..1], &tokens, false), None);
    }

    #[test]
    fn label_probs_are_bounded_and_finite() {
        // Server rounding pushes the sum above 1 and one log-probability above 0.
        let content = [tok(
            "A",
            0.01,
            &[("A", 0.01), ("B", -3.0), ("Tie", f64::NEG_INFINITY)],
        )];
        let p = label_probs(&content, &letters(), false).unwrap();
        let sum = p.first + p.second + p.tie;
        assert!(p.first.is_finite() && p.second.is_finite() && p.tie.is_finite());
        assert!(sum <= 1.0 + 1e-12, "{sum}");
        assert!((p.first - 1.0 / (1.0 + (-3.0f64).exp())).abs() < 1e-12);
        assert_eq!(p.tie, 0.0);
        // Only non-label tokens: None. Blank leading tokens are skipped.
        let content = [
            tok("\n", -0.1, &[]),
            tok("Output", -0.1, &[("Output", -0.1)]),
        ];
        assert_eq!(label_probs(&content, &letters(), false), None);
        // The sampled token counts even when top_logprobs is empty.
        let content = [tok("b", (0.3f64).ln(), &[])];
        let p = label_probs(&content, &letters(), false).unwrap();
        assert!((p.second - 0.3).abs() < 1e-12);
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
