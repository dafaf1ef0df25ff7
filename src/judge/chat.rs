//! The chat transport: the one thing a backend provides. Messages and generation parameters go
//! in; completion text, token usage and (where the backend has them) token log-probabilities come
//! out. Everything about judging (the template, the verdict parser, the cache key, the token
//! estimate, label probabilities) lives once in [`super::templated::TemplatedJudge`], so a new
//! backend is one transport file plus one registry entry in [`super::build`].

use super::http::Redactor;
use super::{JudgeError, JudgeRequest, LabelProbs, TokenUsage};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The user turn.
    User,
}

/// One chat message. Serializes as `{"role", "content"}`, the OpenAI wire shape, which the cache
/// key hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// The system message's text, if `messages` starts with one.
    pub fn system(messages: &[ChatMessage]) -> Option<&str> {
        messages
            .iter()
            .find(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
    }

    /// The user turn's text (the last user message; empty when there is none).
    pub fn user(messages: &[ChatMessage]) -> &str {
        messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str())
    }
}

/// Generation parameters of one call, as the judge file set them (the seed already varied by
/// repeat, see [`super::openai::request_seed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Model id (may be empty for `command` and `local`).
    pub model: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Sampling seed for this call.
    pub seed: u64,
    /// Alternatives per generated token to return, when label log-probabilities are on.
    pub top_logprobs: Option<u32>,
}

/// One call to a transport.
#[derive(Debug, Clone, Copy)]
pub struct ChatCall<'a> {
    /// The judge request being answered (its call id for logs; a `command` program also receives
    /// its fields).
    pub request: &'a JudgeRequest,
    /// The rendered messages.
    pub messages: &'a [ChatMessage],
    /// The generation parameters.
    pub params: &'a GenerationParams,
}

impl<'a> ChatCall<'a> {
    /// A call for `request` with its rendered messages and parameters.
    pub fn new(
        request: &'a JudgeRequest,
        messages: &'a [ChatMessage],
        params: &'a GenerationParams,
    ) -> Self {
        Self {
            request,
            messages,
            params,
        }
    }
}

/// Messages and generation parameters in the shape (and field order) of an OpenAI
/// chat-completions request. The `openai` transport sends it; the cache key hashes it for every
/// backend, so `openai` keys stored by earlier versions still hit.
#[derive(Debug, Serialize)]
pub struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f64,
    max_tokens: u32,
    seed: u64,
    n: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
}

impl<'a> ChatBody<'a> {
    /// The body for `messages` with `params` (one choice; log-probabilities when requested).
    pub fn new(messages: &'a [ChatMessage], params: &'a GenerationParams) -> Self {
        Self {
            model: &params.model,
            messages,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            seed: params.seed,
            n: 1,
            logprobs: params.top_logprobs.map(|_| true),
            top_logprobs: params.top_logprobs,
        }
    }
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

/// Where the verdict is read from when it is not the completion text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictSource {
    /// Parse this text instead of the completion text (e.g. a program's trimmed output).
    Text(String),
    /// A verdict the backend stated: a verdict keyword ([`super::templated::verdict_keyword`]), else parsed.
    Stated(String),
}

/// What a transport got back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    /// The completion text (for a refusal, the refusal text).
    pub text: String,
    /// Token usage when reported.
    pub usage: Option<TokenUsage>,
    /// Per-token log-probabilities of the completion, when requested and returned.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Label probabilities the backend computed itself (a local model's logits, a program's
    /// `probs`), used when there are no token log-probabilities.
    pub label_probs: Option<LabelProbs>,
    /// A verdict the backend stated apart from its text (a program's `verdict` field): parsed
    /// instead of `text`.
    pub stated_verdict: Option<VerdictSource>,
    /// The model declined to answer (or produced no text at all): an invalid verdict, never a
    /// parsed one.
    pub refused: bool,
    /// A secret was found and replaced in what the backend returned.
    pub redacted: bool,
}

/// A backend: sends rendered messages, returns a completion. Implementations classify their
/// failures into [`JudgeError`]s (retryable or permanent) with secrets already removed, and must
/// be safe to call concurrently.
#[async_trait]
pub trait ChatTransport: Send + Sync + std::fmt::Debug {
    /// The backend id in the cache key (`openai`, `anthropic`, `command`, `local`).
    fn backend(&self) -> &'static str;

    /// Where requests go (URL, command line, model file): part of the cache key.
    fn endpoint(&self) -> &str;

    /// The secrets to remove from every text this backend returns.
    fn redactor(&self) -> &Redactor;

    /// Send one call.
    async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, JudgeError>;
}
