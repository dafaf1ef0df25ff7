//! Judges: one trait, many backends (`openai`, `anthropic`, `command`, `sim`, and more),
//! configured by `judges/*.toml`. A judge is pairwise (a verdict between two answers) or
//! pointwise (`kind = "score" | "label" | "rubric"`: a grade of one answer, carried in
//! [`JudgeReply::grades`]; see [`grade`] and [`sim_pointwise`]).
//!
//! Backends see only the text they are asked to judge. They never know which artifact is in play.
//! The simulated judge too decides from the shown text alone ([`sim`]); [`SimContext`] carries
//! the design's ground truth for tests and analysis, and no judge reads it.

pub mod anthropic;
pub mod chat;
pub mod check;
pub mod command;
pub mod config;
pub mod grade;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod local_judge;
pub mod mitigate;
pub mod models;
pub mod openai;
pub mod parser;
pub mod sim;
pub mod sim_pointwise;
pub mod template;
pub mod templated;

/// The attribute [`Judge`] implementations need (the trait has async methods), re-exported so
/// an embedding crate implements it with the same version the crate was built with.
pub use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub use config::JudgeConfig;

/// A position in the judge prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Shown first ("Output (a)", "Assistant A").
    First,
    /// Shown second.
    Second,
}

/// What a judge answered, in terms of prompt positions. `Invalid` is an outcome of its own:
/// unparseable or refused answers are counted, never coerced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SlotVerdict {
    /// The first answer wins.
    First,
    /// The second answer wins.
    Second,
    /// The judge called a tie.
    Tie,
    /// The reply could not be parsed into a verdict.
    Invalid,
}

/// The design's ground truth about a call (which artifact, which slot, which answer is gold). Kept
/// with the request for tests and diagnostics; no judge, simulated or real, reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimContext {
    /// The artifact present in this call (`position` for identical-answer order tests).
    pub artifact: Option<String>,
    /// Slot holding the artifact-carrying answer (`None` for `position`).
    pub artifact_slot: Option<Slot>,
    /// Slot holding the gold-preferred answer (`None`: no gold, a tie, or the same answer twice).
    pub gold_slot: Option<Slot>,
    /// Both slots show the same underlying answer (tie-detection calls).
    pub same_answer: bool,
    /// Key of the substantive comparison: the same for every call that compares the same two
    /// underlying answers, in either order and whatever artifact is added. A simulated judge keys its
    /// substantive decision on it, so an artifact it ignores cannot flip its verdict.
    pub substance_key: String,
    /// Key of the artifact decision (pair, artifact, perturbed answer).
    pub artifact_key: String,
}

/// One judge call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// Stable call id from the plan.
    pub call_id: String,
    /// Id of the pair the call compares (empty outside a plan). Never shown to the judge; the
    /// judge layer uses it to find the pair's reference answer for reference-guided judging.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pair_id: String,
    /// The user prompt both answers respond to.
    pub prompt: String,
    /// The answer shown first.
    pub first: String,
    /// The answer shown second.
    pub second: String,
    /// Repeat index (0-based) for run-to-run noise measurement.
    pub repeat: u32,
    /// Ground truth for simulated judges only.
    pub sim: SimContext,
    /// Edits of the judge prompt made by a context-side artifact (empty for every other
    /// call). Part of what the judge is shown: the template renders them, so every backend
    /// sees them and they enter the cache key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<template::ContextEdit>,
}

/// Token counts reported by a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt (input) tokens.
    pub input_tokens: u64,
    /// Completion (output) tokens.
    pub output_tokens: u64,
}

/// Probabilities of the verdict labels, from log-probabilities where the backend returns them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelProbs {
    /// P(first answer wins).
    pub first: f64,
    /// P(second answer wins).
    pub second: f64,
    /// P(tie).
    pub tie: f64,
}

/// A judge's successful reply (successful transport; the verdict may still be `Invalid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReply {
    /// The raw text the judge produced.
    pub raw: String,
    /// The parsed verdict.
    pub verdict: SlotVerdict,
    /// Token usage when reported.
    pub usage: Option<TokenUsage>,
    /// Label probabilities when the backend provides log-probabilities.
    pub label_probs: Option<LabelProbs>,
    /// True when a configured secret (an API key reflected by the server) was found in what the
    /// backend returned and replaced by `<redacted>` before anything was stored or printed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    /// A pointwise judge's grades, one per criterion (`None` for pairwise verdicts, whose
    /// replies serialize as before). The pairwise `verdict` of a pointwise reply is `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grades: Option<Vec<grade::CriterionGrade>>,
}

/// Kinds of fault, counted per judge in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 429 or a provider "overloaded" answer.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// The request exceeded its timeout.
    Timeout,
    /// Connection refused, reset or closed early.
    Connection,
    /// The body was not the expected JSON, or had no choices.
    MalformedResponse,
    /// Authentication or permission failure (401/403).
    Auth,
    /// Bad request, unknown model or endpoint (400/404/422).
    BadRequest,
    /// The account has no quota left.
    Quota,
    /// A local program or model failed.
    Backend,
}

/// Why a judge call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// Worth retrying (rate limit, 5xx, timeout, connection, malformed body).
    #[error("{kind:?}: {message}")]
    Retryable {
        /// Fault classification.
        kind: FaultKind,
        /// Human-readable detail (never contains secrets).
        message: String,
        /// Server-requested wait (`Retry-After`, `x-ratelimit-reset-*`).
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (auth, bad request, no quota): the judge stops.
    #[error("{kind:?}: {message}")]
    Permanent {
        /// Fault classification.
        kind: FaultKind,
        /// Human-readable detail (never contains secrets).
        message: String,
    },
}

impl JudgeError {
    /// The fault classification.
    pub fn kind(&self) -> FaultKind {
        match self {
            JudgeError::Retryable { kind, .. } | JudgeError::Permanent { kind, .. } => *kind,
        }
    }
}

/// A judge backend. Implementations must be safe to call concurrently.
#[async_trait]
pub trait Judge: Send + Sync {
    /// The judge's configured name.
    fn name(&self) -> &str;
    /// True for simulated judges; every output labels them as simulated.
    fn simulated(&self) -> bool;
    /// Judge one pair.
    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError>;

    /// Called once with the audit's dataset before any call. Simulated judges learn which answer
    /// of each pair is the better one (their competence, recognised later from the answer's
    /// text alone); every other backend ignores it.
    fn learn(&self, pairs: &[crate::dataset::Pair]) {
        let _ = pairs;
    }

    /// A key identifying the reply to `request` in the shared response cache: a hash of
    /// everything that determines it (backend, endpoint, model, full request body, generation
    /// parameters, repeat index). `None` (the default) means "do not cache", right for judges
    /// that are free and deterministic, such as simulated ones.
    fn cache_key(&self, request: &JudgeRequest) -> Option<String> {
        let _ = request;
        None
    }

    /// A rough count of the input tokens `request` will use, for budgets and cost estimates.
    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        ((request.prompt.len() + request.first.len() + request.second.len()) / 4) as u64
    }

    /// Requests one [`Judge::judge`] sends to the model (2 for swap-and-confirm): the runner
    /// reserves that many replies' worth of `max_tokens` against the cost budget and takes that
    /// many requests from the `rpm` budget, so a judge that asks twice cannot overspend.
    fn requests_per_call(&self) -> u32 {
        1
    }
}

/// Why a judge could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum JudgeBuildError {
    /// The configuration is invalid.
    #[error("judge `{judge}`: field `{field}`: {message}")]
    Invalid {
        /// Judge name.
        judge: String,
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Build a judge backend from its configuration: the registry. Every real backend is a
/// [`templated::TemplatedJudge`] over its transport, so it renders, parses and caches the same
/// way; a new backend is its transport file plus one line here.
pub fn build(config: &JudgeConfig) -> Result<Arc<dyn Judge>, JudgeBuildError> {
    if config.mitigations().majority_of_templates {
        // One judge per template (each with the other mitigations), answering by majority.
        let mut primary = config.clone();
        primary.templates = Vec::new();
        primary.majority_of_templates = false;
        let variants = config
            .template_variants()
            .map_err(|e| templated::config_build_error(&config.name, e))?;
        let members = std::iter::once(primary)
            .chain(variants)
            .map(|c| build(&c))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Arc::new(mitigate::TemplateMajorityJudge::new(
            config.name.clone(),
            members,
        )));
    }
    let judge = build_backend(config)?;
    let mut mitigations = config.mitigations();
    // Only a judge with templates takes a majority; one template's judge has nothing to add.
    mitigations.majority_of_templates = false;
    Ok(if mitigations.is_empty() {
        judge
    } else {
        Arc::new(mitigate::MitigatedJudge::new(judge, mitigations))
    })
}

/// The backend of `config`, without judge-layer mitigations.
fn build_backend(config: &JudgeConfig) -> Result<Arc<dyn Judge>, JudgeBuildError> {
    match config.backend {
        config::Backend::Sim if config.is_pointwise() => {
            Ok(Arc::new(sim_pointwise::SimGrader::new(config)?))
        }
        config::Backend::Sim => Ok(Arc::new(sim::SimJudge::new(config)?)),
        config::Backend::Openai => Ok(Arc::new(openai::OpenAiJudge::new(config)?)),
        config::Backend::Anthropic => Ok(Arc::new(anthropic::AnthropicJudge::new(config)?)),
        config::Backend::Command => Ok(Arc::new(command::CommandJudge::new(config)?)),
        config::Backend::Custom => Ok(Arc::new(Unavailable {
            name: config.name.clone(),
        })),
        #[cfg(feature = "local")]
        config::Backend::Local => Ok(Arc::new(local_judge::LocalJudge::new(config)?)),
        #[cfg(not(feature = "local"))]
        config::Backend::Local => Err(JudgeBuildError::Invalid {
            judge: config.name.clone(),
            field: "backend".into(),
            message: "this binary was built without the `local` feature (cargo build --release --features local; needs cmake and libclang-dev)".into(),
        }),
    }
}

/// Stands in for a `backend = "custom"` judge when its run is prepared from configuration
/// alone (`report`, `run --resume` of a stored run): the Rust value that judged is not in the
/// file, so the stored calls are analysed as usual and a call still pending fails with a
/// permanent error saying why, instead of the whole run refusing to load.
struct Unavailable {
    name: String,
}

#[async_trait]
impl Judge for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, _request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        Err(JudgeError::Permanent {
            kind: FaultKind::Backend,
            message: format!(
                "judge `{}` is a custom judge (implemented in Rust and given to judge_audit::Audit::judge); a judge file cannot build it, so its pending calls can only be sent by the program that audited it",
                self.name
            ),
        })
    }
}
