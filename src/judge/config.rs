//! Judge configuration files (`judges/*.toml`).
//!
//! A judge file names a backend, a model, a prompt template and sampling settings. It never holds
//! a secret: `api_key_env` names the environment variable that holds the key. Files are parsed
//! strictly (unknown fields are errors) and validated; every error names the file, the line where
//! it can be found, and the field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::template::Template;

/// Which backend implements a judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Simulated reference judge with declared biases.
    Sim,
    /// OpenAI-compatible `/chat/completions` (OpenAI, vLLM, llama.cpp server, Ollama, LM Studio).
    Openai,
    /// Anthropic Messages API (`/v1/messages`).
    Anthropic,
    /// A user program run once per call (request JSON on stdin, verdict on stdout).
    Command,
    /// A GGUF chat model run in-process by llama.cpp (cargo feature `local`).
    Local,
    /// A judge implemented in Rust by a program embedding the crate and handed to
    /// [`crate::Audit::judge`]; a judge file cannot build one, so a stored run holding one is
    /// re-rendered (`report`) but not resumed.
    Custom,
}

impl Backend {
    /// The name used in judge files (`sim`, `openai`, ...). Derived from the serde name so new
    /// variants need no extra code here.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The name with its indefinite article (`an openai`, `a command`), for messages.
    pub fn with_article(self) -> String {
        let name = self.name();
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {name}")
    }
}

/// Parameters of a simulated judge. All effects are in Chen's T units (expected net preference in
/// [-1, 1]) so an audit can check it recovers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimParams {
    /// Probability of picking the gold answer on a pair with a gold label, absent other effects.
    #[serde(default = "default_accuracy")]
    pub accuracy: f64,
    /// Net preference for the first slot, in [-1, 1].
    #[serde(default)]
    pub position_bias: f64,
    /// Probability that a call re-draws its decision independently of its repeats (run-to-run noise).
    #[serde(default)]
    pub noise: f64,
    /// Probability of answering "tie" when nothing else decides.
    #[serde(default)]
    pub tie_rate: f64,
    /// Probability of an unparseable answer.
    #[serde(default)]
    pub invalid_rate: f64,
    /// Net preference for the artifact-carrying answer, per artifact id, in [-1, 1].
    #[serde(default)]
    pub artifact_preference: BTreeMap<String, f64>,
}

/// Planted template dependence of a simulated judge: when the prompt it is shown (system and
/// user message as rendered by its template) contains `phrase`, the judge reverses its verdict
/// (first ↔ second; a tie stays a tie) on a fixed `share` of the items, chosen by a hash of the
/// item's answers, the seed and the judge's name, the same in both orders and every repeat. The
/// planted flip rate between a template with the phrase and one without is therefore `share`
/// times the share of non-tie verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTemplateEffect {
    /// The text whose presence in the rendered prompt triggers the reversal.
    pub phrase: String,
    /// Share of items reversed, in [0, 1].
    pub share: f64,
}

/// Planted effects of a simulated pointwise judge (`[sim_grades]`, beside its `[sim]` table,
/// whose `accuracy`, `noise` and `invalid_rate` it also uses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimGrades {
    /// Score judges: the planted mean score shift per artifact id (scale units).
    #[serde(default)]
    pub score_shift: BTreeMap<String, f64>,
    /// Label judges: the planted probability, per artifact id, that a positive label (e.g.
    /// `unsafe`) flips to the first other label when the answer carries the artifact.
    #[serde(default)]
    pub label_flip: BTreeMap<String, f64>,
    /// Label judges: the share of answers labelled positive at baseline (default 0.5).
    #[serde(default)]
    pub positive_rate: Option<f64>,
}

impl Default for SimParams {
    /// The values a `[sim]` table with no keys deserializes to.
    fn default() -> Self {
        Self {
            accuracy: default_accuracy(),
            position_bias: 0.0,
            noise: 0.0,
            tie_rate: 0.0,
            invalid_rate: 0.0,
            artifact_preference: BTreeMap::new(),
        }
    }
}

fn default_accuracy() -> f64 {
    0.8
}

/// Verdict-parser overrides (regexes for the three labels and which match wins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    /// Regex that means "the first answer wins".
    pub first: Option<String>,
    /// Regex that means "the second answer wins".
    pub second: Option<String>,
    /// Regex that means "tie".
    pub tie: Option<String>,
    /// `first` (earliest match wins), `last` (latest match wins) or `unique` (exactly one label
    /// may match).
    pub pick: Option<String>,
}

/// Price per million tokens, for cost accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// USD per million input tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
}

/// What a judge answers with: a pairwise verdict (the default) or a pointwise grade of one
/// answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    /// A, B or tie between two answers.
    #[default]
    Pairwise,
    /// One number on `scale` per answer.
    Score,
    /// One of `labels` per answer, `positive` marking the label whose rate is audited.
    Label,
    /// Several named `[[criteria]]`, each a score or a label, read from a JSON reply.
    Rubric,
}

impl JudgeKind {
    /// True for the default kind (omitted when serializing, so pairwise configs are unchanged).
    pub fn is_pairwise(&self) -> bool {
        *self == JudgeKind::Pairwise
    }

    /// The name used in judge files.
    pub fn name(self) -> &'static str {
        match self {
            JudgeKind::Pairwise => "pairwise",
            JudgeKind::Score => "score",
            JudgeKind::Label => "label",
            JudgeKind::Rubric => "rubric",
        }
    }
}

/// A numeric scale `min..=max` (integers: rating tokens are integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Lowest score.
    pub min: i64,
    /// Highest score.
    pub max: i64,
}

/// One criterion of a rubric judge: a score scale, or labels with a positive one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionConfig {
    /// The key of the criterion in the judge's JSON reply.
    pub name: String,
    /// Score scale, for a scored criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleConfig>,
    /// Labels, for a labelled criterion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The positive label of a labelled criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
}

/// A judge as declared in a TOML file. Contains no secret: keys are read from the environment
/// variable named in `api_key_env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Unique judge name.
    pub name: String,
    /// Backend kind.
    pub backend: Backend,
    /// Model id sent to the provider (for `sim`, a label).
    #[serde(default)]
    pub model: String,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// Maximum tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling seed sent to providers that accept one; the sim judge's RNG seed.
    #[serde(default)]
    pub seed: u64,
    /// Prompt template: a built-in name (`chen-safety`, `mtbench-pairwise`) or a path to a
    /// template TOML file (relative paths resolve against the judge file's folder).
    #[serde(default = "default_template")]
    pub template: String,
    /// Template variants (built-in names or paths, like `template`): meaning-preserving
    /// paraphrases of the primary template, each audited as a derived judge named
    /// `<name>@<variant template name>` on identical inputs (audit.toml `[design] templates`).
    /// Pairwise judges only. Omitted when empty, so judge files without variants serialize as
    /// before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// Set by the audit on a derived template-variant judge: the judge it was derived from.
    /// Never written in a judge file (refused there). A simulated variant draws its random
    /// streams under this name, so it differs from its base judge only where the rendered
    /// prompt makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_of: Option<String>,
    /// Judge-layer mitigation: ask every comparison in both orders; a verdict counts only when
    /// both orders pick the same answer, otherwise it is a tie (two calls per verdict).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swap_and_confirm: bool,
    /// Judge-layer mitigation: strip the catalog's artifact phrases and collapse formatting in
    /// both answers before the judge sees them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub normalise: bool,
    /// Judge-layer mitigation: a sentence added to the system message of every request (e.g.
    /// [`super::mitigate::DEFAULT_BIAS_INSTRUCTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_instruction: Option<String>,
    /// Judge-layer mitigation: ask every request with the primary template and each of
    /// `templates`; the verdict is the strict majority of their valid verdicts, a tie without
    /// one, unparseable when none is valid (one call per template). Without `templates` it is
    /// the primary template's verdict (a majority of one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub majority_of_templates: bool,
    /// Judge-layer mitigation: show the judge each pair's reference answer (the dataset's
    /// `reference` field) with "A reference answer is given; judge each answer against it."
    /// The audit refuses a dataset in which a pair has none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reference_guided: bool,
    /// Set by the audit on a reference-guided judge: the dataset's reference answers by pair
    /// id. Never written in a judge file (refused there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub references: BTreeMap<String, String>,
    /// Planted template dependence of a simulated judge (`[sim_template]`, beside `[sim]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_template: Option<SimTemplateEffect>,
    /// Verdict parser overrides; the template's own labels are used otherwise.
    #[serde(default)]
    pub parser: ParserConfig,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Base URL of the API (overrides `base_url_env`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the base URL.
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Several endpoints serving one model (vLLM replicas): calls are spread across them, a
    /// failing one is taken out for `endpoint_cooldown_secs` and tried again after. The first
    /// is the judge's identity (cache key, batch endpoints). Replaces `base_url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_urls: Vec<String>,
    /// Most calls in flight at once per endpoint of `base_urls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_concurrency: Option<usize>,
    /// Seconds a failing endpoint of `base_urls` is left out (default 30, at most one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_cooldown_secs: Option<f64>,
    /// Maximum concurrent calls for this judge (the run's `--concurrency` applies otherwise).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Audit this judge on the first this many pairs only (for slow local judges).
    #[serde(default)]
    pub audit_max_pairs: Option<usize>,
    /// Audit this judge on these artifacts only (ids; all when absent).
    #[serde(default)]
    pub audit_artifacts: Option<Vec<String>>,
    /// `local` backend: the GGUF file (default: the SmolLM2 file `scripts/fetch-model.sh`
    /// installs under `$JUDGE_AUDIT_HOME/models`).
    #[serde(default)]
    pub model_path: Option<PathBuf>,
    /// Requests-per-minute budget (token bucket); none when absent.
    #[serde(default)]
    pub rpm: Option<f64>,
    /// Tokens-per-minute budget (input estimate + max_tokens per call); none when absent.
    #[serde(default)]
    pub tpm: Option<f64>,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Maximum retries of a retryable failure.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Longest server-requested wait (`Retry-After`, rate-limit reset headers) honoured, in
    /// seconds (default [`DEFAULT_MAX_RETRY_AFTER_SECS`]); a longer one is not slept: the call is a
    /// retryable fault retried after the usual backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_after_secs: Option<f64>,
    /// Largest response body (HTTP backends) or program output (`command`) read, in bytes
    /// (default [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger one is a malformed response, never read
    /// whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Token prices for cost accounting.
    #[serde(default)]
    pub pricing: Option<Pricing>,
    /// Token prices through the provider's batch API (default: half of `pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_pricing: Option<Pricing>,
    /// Most estimated tokens (input plus `max_tokens` per call) this judge may have in open
    /// provider batches at once: OpenAI's per-model enqueued-token limit. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_queue_tokens: Option<u64>,
    /// Parameters of a simulated judge (`backend = "sim"` only).
    #[serde(default)]
    pub sim: Option<SimParams>,
    /// `pairwise` (default), `score`, `label` or `rubric`. Omitted when pairwise, so pairwise
    /// judge configurations serialize exactly as before.
    #[serde(default, skip_serializing_if = "JudgeKind::is_pairwise")]
    pub kind: JudgeKind,
    /// The scale of a `score` judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleConfig>,
    /// The labels of a `label` judge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The positive label of a `label` judge (one of `labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// The criteria of a `rubric` judge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<CriterionConfig>,
    /// A pointwise judge's pairwise counterpart in the same audit, for the score–comparison
    /// consistency (TrustJudge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairwise_judge: Option<String>,
    /// Planted effects of a simulated pointwise judge (`backend = "sim"` with a pointwise kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_grades: Option<SimGrades>,
    /// Request log-probabilities and compute label probabilities from them (`openai` only; the
    /// template must declare `[labels.tokens]`).
    #[serde(default)]
    pub logprobs: bool,
    /// How many alternatives per generated token to request when `logprobs` is on (1..=20).
    #[serde(default = "default_top_logprobs")]
    pub top_logprobs: u32,
    /// Extra HTTP headers sent with every request (e.g. OpenRouter's `HTTP-Referer`). Never a
    /// credential: `Authorization` and API-key headers are rejected.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `command` backend: the program and its arguments, e.g. `["python3", "judge.py"]`
    /// (alternative to `program` + `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `command` backend: the program to run (with `args`; alternative to `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// `command` backend: arguments for `program`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `command` backend: extra environment variables for the program (never secrets: the
    /// program inherits the caller's environment, where keys belong).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The file this configuration was read from (not part of the file's content). Relative
    /// template paths resolve against its folder.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
}

fn default_max_tokens() -> u32 {
    16
}
fn default_template() -> String {
    "chen-safety".to_string()
}
/// Longest duration a judge file may set (`timeout_secs`, `max_retry_after_secs`): one day.
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// Smallest `rpm` / `tpm` budget: one unit a day (a smaller one would make the rate limiter wait
/// longer than any run lasts, or overflow its clock).
pub const MIN_RATE_PER_MINUTE: f64 = 1.0 / 1440.0;

/// Default longest server-requested wait honoured, in seconds (ten minutes: OpenAI's token
/// limits reset within minutes, a day-long `Retry-After` must not stall a run).
pub const DEFAULT_MAX_RETRY_AFTER_SECS: f64 = 600.0;

/// Default largest response body or program output read: 16 MiB (a verdict is a few bytes; a
/// long reasoning reply a few hundred KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// The checked durations and sizes of a validated judge configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per-request timeout.
    pub timeout: std::time::Duration,
    /// Longest server-requested wait honoured.
    pub max_retry_after: std::time::Duration,
    /// Largest response body read.
    pub max_response_bytes: u64,
}

fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> u32 {
    4
}
fn default_top_logprobs() -> u32 {
    10
}

/// Environment variable read for the base URL of an `openai` judge without `base_url_env`.
pub const DEFAULT_BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// Environment variable read for the key of an `openai` judge without `api_key_env`.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Base URL used when neither `base_url` nor the base-URL variable is set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Environment variable read for the base URL of an `anthropic` judge without `base_url_env`.
pub const ANTHROPIC_BASE_URL_ENV: &str = "ANTHROPIC_BASE_URL";
/// Environment variable read for the key of an `anthropic` judge without `api_key_env`.
pub const ANTHROPIC_API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// Base URL of an `anthropic` judge when neither `base_url` nor the variable is set (requests go
/// to `{base_url}/v1/messages`).
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// The preset judge files shipped in `judges/` (file name, content), embedded at build time.
pub const BUILTIN_JUDGE_FILES: &[(&str, &str)] = &[
    (
        "openai-gpt-4o-mini.toml",
        include_str!("../../judges/openai-gpt-4o-mini.toml"),
    ),
    (
        "openai-gpt-4.1-mini.toml",
        include_str!("../../judges/openai-gpt-4.1-mini.toml"),
    ),
    ("ollama.toml", include_str!("../../judges/ollama.toml")),
    ("vllm.toml", include_str!("../../judges/vllm.toml")),
    (
        "llamacpp-server.toml",
        include_str!("../../judges/llamacpp-server.toml"),
    ),
    (
        "openrouter.toml",
        include_str!("../../judges/openrouter.toml"),
    ),
    ("together.toml", include_str!("../../judges/together.toml")),
    ("groq.toml", include_str!("../../judges/groq.toml")),
    (
        "anthropic-claude-haiku.toml",
        include_str!("../../judges/anthropic-claude-haiku.toml"),
    ),
    (
        "anthropic-claude-sonnet.toml",
        include_str!("../../judges/anthropic-claude-sonnet.toml"),
    ),
    (
        "smollm2-local.toml",
        include_str!("../../judges/smollm2-local.toml"),
    ),
    (
        "qwen2.5-coder-1.5b-local.toml",
        include_str!("../../judges/qwen2.5-coder-1.5b-local.toml"),
    ),
    (
        "sim/sim-unbiased.toml",
        include_str!("../../judges/sim/sim-unbiased.toml"),
    ),
    (
        "sim/sim-apology-lover.toml",
        include_str!("../../judges/sim/sim-apology-lover.toml"),
    ),
    (
        "sim/sim-first-slot.toml",
        include_str!("../../judges/sim/sim-first-slot.toml"),
    ),
    (
        "sim/sim-authority-skeptic.toml",
        include_str!("../../judges/sim/sim-authority-skeptic.toml"),
    ),
    (
        "sim/sim-verbose-fan.toml",
        include_str!("../../judges/sim/sim-verbose-fan.toml"),
    ),
    (
        "sim/sim-mild-apology.toml",
        include_str!("../../judges/sim/sim-mild-apology.toml"),
    ),
    (
        "sim/sim-mild-apology-averse.toml",
        include_str!("../../judges/sim/sim-mild-apology-averse.toml"),
    ),
    (
        "sim-pointwise/sim-grader-unbiased.toml",
        include_str!("../../judges/sim-pointwise/sim-grader-unbiased.toml"),
    ),
    (
        "sim-pointwise/sim-grader-apology.toml",
        include_str!("../../judges/sim-pointwise/sim-grader-apology.toml"),
    ),
    (
        "sim-pointwise/sim-safety-apology.toml",
        include_str!("../../judges/sim-pointwise/sim-safety-apology.toml"),
    ),
    (
        "sim-pointwise/sim-rubric-apology.toml",
        include_str!("../../judges/sim-pointwise/sim-rubric-apology.toml"),
    ),
];

/// An API key read from the environment. It has no `Display`, and its `Debug` is redacted, so it
/// cannot leak into logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wrap a key (blank strings are no key: `None`).
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.is_empty() {
            None
        } else {
            Some(Self(trimmed.to_string()))
        }
    }

    /// The secret itself, for building the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a judge or template file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or folder could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The content is not valid TOML, has a wrong or unknown field, or fails validation.
    #[error("{}", format_invalid(origin, *line, *column, field.as_deref(), message))]
    Invalid {
        /// The file (or other origin) of the text.
        origin: String,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// 1-based column of the problem, when known.
        column: Option<usize>,
        /// Dotted field path (`sim.accuracy`), when the problem concerns one field.
        field: Option<String>,
        /// What is wrong and, where possible, how to fix it.
        message: String,
    },
    /// Two judge files in one folder declare the same name.
    #[error("duplicate judge name `{name}` in {} and {}", first.display(), second.display())]
    DuplicateName {
        /// The repeated name.
        name: String,
        /// The file that declared it first.
        first: PathBuf,
        /// The file that declared it again.
        second: PathBuf,
    },
    /// A built-in judge or template name that does not exist.
    #[error(
        "no built-in {what} named `{name}` (built-ins: {available}); or give a path to a .toml file"
    )]
    UnknownBuiltin {
        /// `judge` or `template`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// Comma-separated built-in names.
        available: String,
    },
}

impl ConfigError {
    /// The offending field (dotted path), when the error concerns one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

fn format_invalid(
    origin: &str,
    line: Option<usize>,
    column: Option<usize>,
    field: Option<&str>,
    message: &str,
) -> String {
    let mut out = origin.to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    if let Some(field) = field {
        out.push_str(&format!(": field `{field}`"));
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

/// Build an `Invalid` error for `field` (dotted path), locating the field's line in `text`.
pub(crate) fn invalid_field(
    origin: &str,
    text: &str,
    field: &str,
    message: impl Into<String>,
) -> ConfigError {
    let (line, column) = match locate_field(text, field) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    ConfigError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// Convert a `toml` deserialization error into an `Invalid` error with line, column and field.
pub(crate) fn from_toml_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_string();
    let (line, column, field_at_span) = match err.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            (Some(line), Some(column), field_at(text, span.start))
        }
        None => (None, None, None),
    };
    // serde names the field in "missing field `x`" / "unknown field `x`"; the span then points at
    // the enclosing table (missing) or the key itself (unknown).
    let named = backticked_after(&message, "missing field ")
        .or_else(|| backticked_after(&message, "unknown field "));
    let field = match named {
        Some(name) => {
            let table = err
                .span()
                .map(|s| table_at(text, s.start))
                .unwrap_or_default();
            Some(if table.is_empty() {
                name
            } else {
                format!("{table}.{name}")
            })
        }
        None => field_at_span,
    };
    let mut message = message;
    if field
        .as_deref()
        .is_some_and(|f| f.rsplit('.').next() == Some("api_key"))
    {
        message.push_str(
            "; judge files never hold a key: set `api_key_env` to the name of an environment \
             variable that holds it",
        );
    }
    ConfigError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        field,
        message,
    }
}

fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// 1-based (line, column) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted table path in force at byte `offset` (from the last `[table]` header above it).
fn table_at(text: &str, offset: usize) -> String {
    let mut table = String::new();
    let mut pos = 0;
    for raw in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        if let Some(name) = table_header(raw) {
            table = name;
        }
        pos += raw.len();
    }
    table
}

fn table_header(line: &str) -> Option<String> {
    let t = line.trim();
    if t.starts_with("[[") {
        return None;
    }
    let inner = t.strip_prefix('[')?;
    let end = inner.find(']')?;
    Some(
        inner[..end]
            .split('.')
            .map(|k| k.trim().trim_matches('"').trim_matches('\''))
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn key_of(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let eq = t.find('=')?;
    let key = t[..eq].trim().trim_matches('"').trim_matches('\'');
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(key.to_string())
}

/// The dotted field whose `key = value` line contains byte `offset`.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    if let Some(header) = table_header(line) {
        return Some(header);
    }
    let key = key_of(line)?;
    let table = table_at(text, line_start);
    Some(if table.is_empty() {
        key
    } else {
        format!("{table}.{key}")
    })
}

/// 1-based (line, column) of the `key = ...` line (or `[table]` header) for a dotted field.
pub(crate) fn locate_field(text: &str, field: &str) -> Option<(usize, usize)> {
    let (table, key) = match field.rsplit_once('.') {
        Some((t, k)) => (t.to_string(), k),
        None => (String::new(), field),
    };
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(header) = table_header(line) {
            if header == field {
                return Some((i + 1, line.len() - line.trim_start().len() + 1));
            }
            current = header;
            continue;
        }
        if current == table && key_of(line).as_deref() == Some(key) {
            return Some((i + 1, line.len() - line.trim_start().len() + 1));
        }
    }
    None
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse and check an http(s) base URL.
pub(crate) fn parse_base_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "scheme `{}` is not supported (use http or https)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the base URL must not have a query or fragment".to_string());
    }
    Ok(url)
}

/// Headers that carry credentials; a judge file must not set them (keys come from the environment).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "cookie",
];

impl JudgeConfig {
    /// A configuration with every optional field at its default (as if the file held only
    /// `name` and `backend`).
    pub fn new(name: impl Into<String>, backend: Backend) -> Self {
        Self {
            name: name.into(),
            backend,
            model: String::new(),
            temperature: 0.0,
            max_tokens: default_max_tokens(),
            seed: 0,
            template: default_template(),
            templates: Vec::new(),
            variant_of: None,
            sim_template: None,
            swap_and_confirm: false,
            normalise: false,
            bias_instruction: None,
            majority_of_templates: false,
            reference_guided: false,
            references: BTreeMap::new(),
            parser: ParserConfig::default(),
            api_key_env: None,
            base_url: None,
            base_url_env: None,
            base_urls: Vec::new(),
            endpoint_concurrency: None,
            endpoint_cooldown_secs: None,
            concurrency: None,
            model_path: None,
            audit_max_pairs: None,
            audit_artifacts: None,
            rpm: None,
            tpm: None,
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_retry_after_secs: None,
            max_response_bytes: None,
            pricing: None,
            batch_pricing: None,
            batch_queue_tokens: None,
            sim: None,
            kind: JudgeKind::Pairwise,
            scale: None,
            labels: Vec::new(),
            positive: None,
            criteria: Vec::new(),
            pairwise_judge: None,
            sim_grades: None,
            logprobs: false,
            top_logprobs: default_top_logprobs(),
            headers: BTreeMap::new(),
            command: None,
            program: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            source_path: None,
        }
    }

    /// Read, parse and validate a judge file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), Some(path))
    }

    /// Parse and validate judge TOML text; `origin` names it in errors. Relative template paths
    /// resolve against the current directory.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse(text, origin, None)
    }

    fn parse(text: &str, origin: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config: JudgeConfig =
            toml::from_str(text).map_err(|e| from_toml_error(origin, text, &e))?;
        config.source_path = path.map(Path::to_path_buf);
        if config.backend == Backend::Custom {
            return Err(invalid_field(
                origin,
                text,
                "backend",
                "`custom` is the backend of a judge implemented in Rust and handed to judge_audit::Audit::judge; a judge file cannot build one (use sim, openai, anthropic, command or local)",
            ));
        }
        if config.variant_of.is_some() {
            return Err(invalid_field(
                origin,
                text,
                "variant_of",
                "is set by the audit on derived template-variant judges; list variants in \
                 `templates = [...]` instead",
            ));
        }
        if !config.references.is_empty() {
            return Err(invalid_field(
                origin,
                text,
                "references",
                "is set by the audit from the dataset's `reference` field; set \
                 `reference_guided = true` instead",
            ));
        }
        config.validate_text(text, origin)?;
        Ok(config)
    }

    /// Load every `*.toml` judge file directly in `dir` (not recursive), sorted by file name.
    /// Names must be unique.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Self>, ConfigError> {
        let dir = dir.as_ref();
        let io = |source| ConfigError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            // The model registry lives beside the judge files but is not one.
            let registry = path
                .file_name()
                .is_some_and(|f| f == super::models::REGISTRY_FILE);
            if path.is_file() && path.extension().is_some_and(|e| e == "toml") && !registry {
                paths.push(path);
            }
        }
        paths.sort();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let config = Self::from_file(&path)?;
            if let Some(first) = seen.get(&config.name) {
                return Err(ConfigError::DuplicateName {
                    name: config.name,
                    first: first.clone(),
                    second: path,
                });
            }
            seen.insert(config.name.clone(), path);
            out.push(config);
        }
        Ok(out)
    }

    /// A judge given either as a path to a `.toml` file or as the name of a built-in preset.
    pub fn resolve(spec: &str) -> Result<Self, ConfigError> {
        let path = Path::new(spec);
        if spec.ends_with(".toml") || path.is_file() {
            Self::from_file(path)
        } else {
            builtin_judge(spec)
        }
    }

    /// The durations and sizes as checked values. Saturates instead of panicking on values
    /// [`validate`](Self::validate) would refuse, so it is safe on any configuration.
    pub fn limits(&self) -> Limits {
        let secs = |v: f64| {
            std::time::Duration::try_from_secs_f64(v.clamp(0.0, MAX_DURATION_SECS))
                .unwrap_or(std::time::Duration::ZERO)
        };
        Limits {
            timeout: secs(self.timeout_secs),
            max_retry_after: secs(
                self.max_retry_after_secs
                    .unwrap_or(DEFAULT_MAX_RETRY_AFTER_SECS),
            ),
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        }
    }

    /// Check the configuration's values (no file text: errors carry no line numbers).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_text("", &format!("judge `{}`", self.name))
    }

    fn validate_text(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| Err(invalid_field(origin, text, field, message));
        if self.name.trim().is_empty() {
            return bad("name", "must not be empty".into());
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return bad(
                "temperature",
                format!("{} is outside 0..=2", self.temperature),
            );
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be greater than 0".into());
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return bad(
                "timeout_secs",
                format!("{} must be a positive number of seconds", self.timeout_secs),
            );
        }
        if self.timeout_secs > MAX_DURATION_SECS {
            return bad(
                "timeout_secs",
                format!(
                    "{} is more than {MAX_DURATION_SECS} seconds (one day)",
                    self.timeout_secs
                ),
            );
        }
        if let Some(v) = self.max_retry_after_secs
            && !(v.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&v))
        {
            return bad(
                "max_retry_after_secs",
                format!("{v} must be a number of seconds in 0..={MAX_DURATION_SECS}"),
            );
        }
        if self.max_response_bytes == Some(0) {
            return bad("max_response_bytes", "must be at least 1".into());
        }
        for (field, value) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if value.is_some_and(|v| !v.is_finite() || v <= 0.0) {
                return bad(field, "must be a positive number per minute".into());
            }
            // The limiter waits up to 60 / rate minutes' worth of seconds for one unit; below
            // this floor that wait stops being a meaningful (or representable) duration.
            if let Some(v) = value
                && v < MIN_RATE_PER_MINUTE
            {
                return bad(
                    field,
                    format!("{v} is below the smallest budget of {MIN_RATE_PER_MINUTE} per minute"),
                );
            }
        }
        if self.concurrency == Some(0) {
            return bad("concurrency", "must be at least 1".into());
        }
        if self.batch_queue_tokens == Some(0) {
            return bad("batch_queue_tokens", "must be at least 1".into());
        }
        for (name, p) in [
            ("pricing", &self.pricing),
            ("batch_pricing", &self.batch_pricing),
        ] {
            let Some(p) = p else { continue };
            for (field, v) in [
                (format!("{name}.input_per_mtok"), p.input_per_mtok),
                (format!("{name}.output_per_mtok"), p.output_per_mtok),
            ] {
                let field = field.as_str();
                if !(v.is_finite() && v >= 0.0) {
                    return bad(field, format!("{v} must be a non-negative price"));
                }
            }
        }
        for (field, value) in [
            ("api_key_env", &self.api_key_env),
            ("base_url_env", &self.base_url_env),
        ] {
            // Never echo the value: a user may have pasted the key itself here.
            if let Some(v) = value
                && !is_env_var_name(v)
            {
                return bad(
                    field,
                    "must be the NAME of an environment variable (letters, digits, `_`), not a \
                     key or URL; judge files never hold a key"
                        .into(),
                );
            }
        }
        if let Some(url) = &self.base_url
            && let Err(e) = parse_base_url(url)
        {
            return bad("base_url", e);
        }
        for (n, url) in self.base_urls.iter().enumerate() {
            if let Err(e) = parse_base_url(url) {
                return bad(&format!("base_urls[{n}]"), e);
            }
        }
        if !self.base_urls.is_empty() && self.base_url.is_some() {
            return bad(
                "base_urls",
                "set either base_url or base_urls, not both".into(),
            );
        }
        if self.endpoint_concurrency == Some(0) {
            return bad("endpoint_concurrency", "must be at least 1".into());
        }
        if let Some(secs) = self.endpoint_cooldown_secs
            && !(secs.is_finite() && (0.0..=86_400.0).contains(&secs))
        {
            return bad(
                "endpoint_cooldown_secs",
                format!("{secs} must be 0..=86400 seconds"),
            );
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad(&field, "is not a valid HTTP header name".into());
            }
            if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return bad(
                    &field,
                    "credential headers are not allowed in judge files; put the key in an \
                     environment variable named by `api_key_env`"
                        .into(),
                );
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return bad(&field, "is not a valid HTTP header value".into());
            }
        }
        if self.backend != Backend::Command {
            for (field, set) in [
                ("command", self.command.is_some()),
                ("program", self.program.is_some()),
                ("args", !self.args.is_empty()),
                ("env", !self.env.is_empty()),
            ] {
                if set {
                    return bad(field, "is only allowed with backend = \"command\"".into());
                }
            }
        }
        match self.backend {
            Backend::Sim => {
                if self.logprobs {
                    return bad("logprobs", "is only supported by the openai backend".into());
                }
                if let Some(sim) = &self.sim {
                    validate_sim(sim, text, origin)?;
                }
            }
            Backend::Anthropic => {
                if self.sim.is_some() {
                    return bad(
                        "sim",
                        "the [sim] table is only allowed with backend = \"sim\"".into(),
                    );
                }
                if self.model.trim().is_empty() {
                    return bad("model", "must name the model to call".into());
                }
                // The Messages API rejects temperatures above 1.
                if self.temperature > 1.0 {
                    return bad(
                        "temperature",
                        format!(
                            "{} is outside 0..=1 (the Anthropic API's range)",
                            self.temperature
                        ),
                    );
                }
                if self.logprobs {
                    return bad(
                        "logprobs",
                        "the Anthropic API returns no log-probabilities".into(),
                    );
                }
            }
            Backend::Command => validate_command(self, text, origin)?,
            Backend::Local | Backend::Custom => {
                if self.sim.is_some() {
                    return bad(
                        "sim",
                        "the [sim] table is only allowed with backend = \"sim\"".into(),
                    );
                }
            }
            Backend::Openai => {
                if self.sim.is_some() {
                    return bad(
                        "sim",
                        "the [sim] table is only allowed with backend = \"sim\"".into(),
                    );
                }
                if self.model.trim().is_empty() {
                    return bad("model", "must name the model to call".into());
                }
                if self.seed > i64::MAX as u64 {
                    return bad("seed", "must fit in a signed 64-bit integer".into());
                }
                if self.logprobs && !(1..=20).contains(&self.top_logprobs) {
                    return bad(
                        "top_logprobs",
                        format!("{} is outside 1..=20", self.top_logprobs),
                    );
                }
            }
        }
        if !self.kind.is_pairwise() {
            for (field, set) in [
                ("templates", !self.templates.is_empty()),
                ("sim_template", self.sim_template.is_some()),
                ("swap_and_confirm", self.swap_and_confirm),
                ("normalise", self.normalise),
                ("bias_instruction", self.bias_instruction.is_some()),
                ("majority_of_templates", self.majority_of_templates),
                ("reference_guided", self.reference_guided),
            ] {
                if set {
                    return bad(field, "is only allowed for a pairwise judge".into());
                }
            }
            return validate_pointwise(self, text, origin);
        }
        if self
            .bias_instruction
            .as_ref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return bad("bias_instruction", "must not be empty".into());
        }
        if let Some(effect) = &self.sim_template {
            if self.backend != Backend::Sim {
                return bad(
                    "sim_template",
                    "is only allowed for a simulated judge (backend = \"sim\")".into(),
                );
            }
            if effect.phrase.is_empty() {
                return bad("sim_template.phrase", "must not be empty".into());
            }
            if !(effect.share.is_finite() && (0.0..=1.0).contains(&effect.share)) {
                return bad(
                    "sim_template.share",
                    format!("{} is outside [0, 1]", effect.share),
                );
            }
        }
        for (field, set) in [
            ("scale", self.scale.is_some()),
            ("labels", !self.labels.is_empty()),
            ("positive", self.positive.is_some()),
            ("criteria", !self.criteria.is_empty()),
            ("pairwise_judge", self.pairwise_judge.is_some()),
        ] {
            if set {
                return bad(
                    field,
                    "is only allowed with kind = \"score\", \"label\" or \"rubric\"".into(),
                );
            }
        }
        if self.sim_grades.is_some() {
            return bad(
                "sim_grades",
                "is only allowed for a simulated score or label judge".into(),
            );
        }
        let primary = self.check_pairwise_template(&self.template, "template", text, origin)?;
        let mut names = vec![primary.name.clone()];
        for spec in &self.templates {
            let variant = self.check_pairwise_template(spec, "templates", text, origin)?;
            if names.contains(&variant.name) {
                return bad(
                    "templates",
                    format!(
                        "template `{}` is listed twice (or is the primary template): each \
                         variant must have its own template name",
                        variant.name
                    ),
                );
            }
            names.push(variant.name);
        }
        Ok(())
    }

    /// The judge-layer mitigations this file declares.
    pub fn mitigations(&self) -> super::mitigate::Mitigations {
        super::mitigate::Mitigations {
            swap_and_confirm: self.swap_and_confirm,
            normalise: self.normalise,
            bias_instruction: self.bias_instruction.clone(),
            majority_of_templates: self.majority_of_templates && !self.templates.is_empty(),
            reference_guided: self.reference_guided,
            references: if self.reference_guided {
                self.references.clone()
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Resolve `spec` (named in `field`) and check a pairwise judge can use it with this file's
    /// parser and logprobs settings.
    fn check_pairwise_template(
        &self,
        spec: &str,
        field: &str,
        text: &str,
        origin: &str,
    ) -> Result<Template, ConfigError> {
        let bad = |message: String| Err(invalid_field(origin, text, field, message));
        let template = Template::resolve(spec, self.base_dir().as_deref())
            .map_err(|e| invalid_field(origin, text, field, e.to_string()))?;
        if template.pointwise {
            return bad(format!(
                "template `{}` grades one answer; a pairwise judge needs a pairwise template \
                 (or set kind = \"score\", \"label\" or \"rubric\")",
                template.name
            ));
        }
        super::parser::VerdictParser::for_config(&template, &self.parser)
            .map_err(|e| invalid_field(origin, text, &format!("parser.{}", e.field), e.message))?;
        if self.logprobs && template.tokens.is_none() {
            let field = if field == "template" {
                "logprobs"
            } else {
                field
            };
            return Err(invalid_field(
                origin,
                text,
                field,
                format!(
                    "template `{}` declares no [labels.tokens], so label probabilities cannot be \
                     computed; use a template that does (e.g. mtbench-pairwise) or turn logprobs off",
                    template.name
                ),
            ));
        }
        Ok(template)
    }

    /// The derived judges of this judge's template variants, in `templates` order: the same
    /// configuration with `template` set to the variant, `templates` emptied, `variant_of` set
    /// to this judge and the name `<name>@<variant template name>`. Empty without variants.
    ///
    /// A variant's `max_tokens` is the larger of the judge's and the variant template's
    /// `min_max_tokens`: a variant that asks for reasoning before its verdict
    /// (`mtbench-pairwise-cot`: 1024) would otherwise be cut off at a label-only judge's 16
    /// tokens, and every verdict counted invalid because of the limit, not the wording.
    pub fn template_variants(&self) -> Result<Vec<JudgeConfig>, ConfigError> {
        let origin = format!("judge `{}`", self.name);
        self.templates
            .iter()
            .map(|spec| {
                let t = self.check_pairwise_template(spec, "templates", "", &origin)?;
                let mut derived = self.clone();
                derived.max_tokens = derived.max_tokens.max(t.min_max_tokens.unwrap_or(0));
                // A variant is one template: the majority belongs to the judge that has them all.
                derived.majority_of_templates = false;
                derived.name = format!("{}@{}", self.name, t.name);
                derived.template = spec.clone();
                derived.templates = Vec::new();
                derived.variant_of = Some(self.name.clone());
                Ok(derived)
            })
            .collect()
    }

    /// The folder relative template paths resolve against.
    pub fn base_dir(&self) -> Option<PathBuf> {
        self.source_path
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
    }

    /// Load this judge's prompt template.
    pub fn load_template(&self) -> Result<Template, ConfigError> {
        Template::resolve(self.template_spec(), self.base_dir().as_deref())
    }

    /// The template this judge renders: `template`, except that a pointwise judge left at the
    /// pairwise default gets its kind's built-in (`mtbench-single`, `safety-classifier`,
    /// `json-rubric`). The default cannot be told from `template = "chen-safety"` written out;
    /// either way a pointwise judge could not use that pairwise template.
    pub fn template_spec(&self) -> &str {
        let default = self.template == default_template();
        match self.kind {
            JudgeKind::Score if default => "mtbench-single",
            JudgeKind::Label if default => "safety-classifier",
            JudgeKind::Rubric if default => "json-rubric",
            _ => &self.template,
        }
    }

    /// True for `score`, `label` and `rubric` judges.
    pub fn is_pointwise(&self) -> bool {
        !self.kind.is_pairwise()
    }

    /// The environment variable consulted for the key (`api_key_env`, or `OPENAI_API_KEY` for
    /// the openai backend, `ANTHROPIC_API_KEY` for anthropic).
    pub fn api_key_env_name(&self) -> Option<&str> {
        match (&self.api_key_env, self.backend) {
            (Some(name), _) => Some(name),
            (None, Backend::Openai) => Some(DEFAULT_API_KEY_ENV),
            (None, Backend::Anthropic) => Some(ANTHROPIC_API_KEY_ENV),
            (None, _) => None,
        }
    }

    /// The environment variable consulted for the base URL.
    pub fn base_url_env_name(&self) -> Option<&str> {
        match (&self.base_url_env, self.backend) {
            (Some(name), _) => Some(name),
            (None, Backend::Openai) => Some(DEFAULT_BASE_URL_ENV),
            (None, Backend::Anthropic) => Some(ANTHROPIC_BASE_URL_ENV),
            (None, _) => None,
        }
    }

    /// The base URL used when neither `base_url` nor the base-URL variable is set.
    pub fn default_base_url(&self) -> &'static str {
        match self.backend {
            Backend::Anthropic => ANTHROPIC_BASE_URL,
            _ => DEFAULT_BASE_URL,
        }
    }

    /// The base URL from the process environment: explicit `base_url` > the variable named by
    /// `base_url_env` (default `OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL` for anthropic) > the
    /// backend's default (`https://api.openai.com/v1`, `https://api.anthropic.com`). No trailing `/`.
    pub fn resolve_base_url(&self) -> Result<String, ConfigError> {
        self.resolve_base_url_with(|k| std::env::var(k).ok())
    }

    /// [`resolve_base_url`](Self::resolve_base_url) with an explicit environment lookup.
    pub fn resolve_base_url_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let origin = || match &self.source_path {
            Some(p) => p.display().to_string(),
            None => format!("judge `{}`", self.name),
        };
        let (text, field) = if let Some(url) = &self.base_url {
            (url.clone(), "base_url".to_string())
        } else if let Some(url) = self.base_urls.first() {
            (url.clone(), "base_urls[0]".to_string())
        } else if let Some((var, url)) = self
            .base_url_env_name()
            .and_then(|var| env(var).map(|v| (var, v)))
            .filter(|(_, v)| !v.trim().is_empty())
        {
            (url, format!("base_url_env (environment variable {var})"))
        } else {
            (self.default_base_url().to_string(), "base_url".to_string())
        };
        parse_base_url(&text).map_err(|message| ConfigError::Invalid {
            origin: origin(),
            line: None,
            column: None,
            field: Some(field),
            message,
        })?;
        Ok(text.trim().trim_end_matches('/').to_string())
    }

    /// The API key from the process environment (`None`: no variable, or blank; fine for local
    /// servers).
    pub fn resolve_api_key(&self) -> Option<ApiKey> {
        self.resolve_api_key_with(|k| std::env::var(k).ok())
    }

    /// [`resolve_api_key`](Self::resolve_api_key) with an explicit environment lookup.
    pub fn resolve_api_key_with(&self, env: impl Fn(&str) -> Option<String>) -> Option<ApiKey> {
        self.api_key_env_name().and_then(env).and_then(ApiKey::new)
    }
}

/// Substrings of environment-variable names that suggest a secret (checked case-insensitively).
const SECRET_NAME_PARTS: &[&str] = &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

fn validate_command(c: &JudgeConfig, text: &str, origin: &str) -> Result<(), ConfigError> {
    let bad = |field: &str, message: String| Err(invalid_field(origin, text, field, message));
    if c.sim.is_some() {
        return bad(
            "sim",
            "the [sim] table is only allowed with backend = \"sim\"".into(),
        );
    }
    if c.logprobs {
        return bad(
            "logprobs",
            "is not supported by the command backend (return \"probs\" from the program)".into(),
        );
    }
    // HTTP settings mean nothing to a local program; reject them rather than ignore them.
    for (field, set) in [
        ("base_url", c.base_url.is_some()),
        ("base_url_env", c.base_url_env.is_some()),
        ("headers", !c.headers.is_empty()),
    ] {
        if set {
            return bad(field, "is not used by the command backend".into());
        }
    }
    match (&c.command, &c.program) {
        (Some(_), Some(_)) => {
            return bad(
                "program",
                "give either `command = [...]` or `program` (+ `args`), not both".into(),
            );
        }
        (Some(cmd), None) => {
            if cmd.first().is_none_or(|p| p.trim().is_empty()) {
                return bad(
                    "command",
                    "must start with the program to run, e.g. [\"python3\", \"judge.py\"]".into(),
                );
            }
            if !c.args.is_empty() {
                return bad(
                    "args",
                    "goes with `program`; put the arguments in `command` instead".into(),
                );
            }
        }
        (None, Some(program)) => {
            if program.trim().is_empty() {
                return bad("program", "must not be empty".into());
            }
        }
        (None, None) => {
            return bad(
                "command",
                "a command judge needs `command = [\"program\", \"arg\", ...]` or `program`".into(),
            );
        }
    }
    for name in c.env.keys() {
        let field = format!("env.{name}");
        if !is_env_var_name(name) {
            return bad(&field, "is not a valid environment variable name".into());
        }
        let upper = name.to_ascii_uppercase();
        // The value is never echoed: it may be the secret itself.
        if SECRET_NAME_PARTS.iter().any(|p| upper.contains(p)) {
            return bad(
                &field,
                "looks like a secret; judge files never hold secrets: export it in the \
                 environment instead (the program inherits it)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Check a scale: integers with `min < max`.
fn check_scale(scale: &ScaleConfig) -> Result<(), String> {
    if scale.min >= scale.max {
        return Err(format!(
            "min ({}) must be below max ({})",
            scale.min, scale.max
        ));
    }
    Ok(())
}

/// Check labels and their positive one (at least two, distinct, the positive among them).
fn check_labels(labels: &[String], positive: Option<&str>) -> Result<(), (&'static str, String)> {
    let Some(positive) = positive else {
        return Err((
            "positive",
            "a labelled grade needs `positive`, the label whose rate is audited (e.g. \"unsafe\")"
                .into(),
        ));
    };
    super::grade::LabelParser::new(labels, positive)
        .map(|_| ())
        .map_err(|e| {
            let field = if e.contains("positive") {
                "positive"
            } else {
                "labels"
            };
            (field, e)
        })
}

/// The checks of a `score`, `label` or `rubric` judge: its scale, labels or criteria, its
/// template (a pointwise one) and the options that only pairwise judges have.
fn validate_pointwise(config: &JudgeConfig, text: &str, origin: &str) -> Result<(), ConfigError> {
    let bad = |field: &str, message: String| Err(invalid_field(origin, text, field, message));
    let kind = config.kind.name();
    if config.parser != ParserConfig::default() {
        return bad(
            "parser",
            format!("a {kind} judge reads grades, not pairwise labels: remove [parser]"),
        );
    }
    let only = |field: &str, set: bool, kinds: &str| -> Result<(), ConfigError> {
        if set {
            Err(invalid_field(
                origin,
                text,
                field,
                format!("is not used by a {kind} judge (only by {kinds})"),
            ))
        } else {
            Ok(())
        }
    };
    match config.kind {
        JudgeKind::Pairwise => unreachable!("pairwise judges are validated by the caller"),
        JudgeKind::Score => {
            only("labels", !config.labels.is_empty(), "label judges")?;
            only("positive", config.positive.is_some(), "label judges")?;
            only("criteria", !config.criteria.is_empty(), "rubric judges")?;
            let Some(scale) = &config.scale else {
                return bad(
                    "scale",
                    "a score judge needs `scale = { min = 1, max = 10 }`".into(),
                );
            };
            if let Err(e) = check_scale(scale) {
                return bad("scale", e);
            }
        }
        JudgeKind::Label => {
            only("scale", config.scale.is_some(), "score judges")?;
            only("criteria", !config.criteria.is_empty(), "rubric judges")?;
            if config.labels.is_empty() {
                return bad(
                    "labels",
                    "a label judge needs `labels = [...]` (e.g. [\"safe\", \"unsafe\"])".into(),
                );
            }
            if let Err((field, e)) = check_labels(&config.labels, config.positive.as_deref()) {
                return bad(field, e);
            }
        }
        JudgeKind::Rubric => {
            only("scale", config.scale.is_some(), "score judges")?;
            only("labels", !config.labels.is_empty(), "label judges")?;
            only("positive", config.positive.is_some(), "label judges")?;
            if config.criteria.is_empty() {
                return bad(
                    "criteria",
                    "a rubric judge needs at least one [[criteria]] table".into(),
                );
            }
            let mut seen = Vec::new();
            for (i, c) in config.criteria.iter().enumerate() {
                let field = |f: &str| format!("criteria[{i}].{f}");
                if c.name.trim().is_empty() {
                    return bad(&field("name"), "must not be empty".into());
                }
                if seen.contains(&c.name) {
                    return bad(
                        &field("name"),
                        format!("criterion `{}` is declared twice", c.name),
                    );
                }
                seen.push(c.name.clone());
                match (&c.scale, c.labels.is_empty()) {
                    (Some(scale), true) => {
                        if c.positive.is_some() {
                            return bad(
                                &field("positive"),
                                "a scored criterion has no positive label".into(),
                            );
                        }
                        if let Err(e) = check_scale(scale) {
                            return bad(&field("scale"), e);
                        }
                    }
                    (None, false) => {
                        if let Err((f, e)) = check_labels(&c.labels, c.positive.as_deref()) {
                            return bad(&field(f), e);
                        }
                    }
                    (Some(_), false) => {
                        return bad(
                            &field("scale"),
                            format!(
                                "criterion `{}` has both a scale and labels; give one",
                                c.name
                            ),
                        );
                    }
                    (None, true) => {
                        return bad(
                            &field("scale"),
                            format!(
                                "criterion `{}` needs a `scale = {{ min, max }}` or `labels` with `positive`",
                                c.name
                            ),
                        );
                    }
                }
            }
            if config.logprobs {
                return bad(
                    "logprobs",
                    "log-probabilities are read for score and label judges, not for rubrics".into(),
                );
            }
        }
    }
    if let Some(sim) = &config.sim {
        if !sim.artifact_preference.is_empty() {
            return bad(
                "sim.artifact_preference",
                "is a pairwise effect; a pointwise sim judge plants `score_shift` or `label_flip`"
                    .into(),
            );
        }
    }
    if config.sim_grades.is_some() && config.backend != Backend::Sim {
        return bad(
            "sim_grades",
            "is only allowed with backend = \"sim\"".into(),
        );
    }
    if let Some(sim) = &config.sim_grades {
        only(
            "sim_grades.label_flip",
            config.kind == JudgeKind::Score && !sim.label_flip.is_empty(),
            "label and rubric judges",
        )?;
        only(
            "sim_grades.positive_rate",
            config.kind == JudgeKind::Score && sim.positive_rate.is_some(),
            "label and rubric judges",
        )?;
        only(
            "sim_grades.score_shift",
            config.kind == JudgeKind::Label && !sim.score_shift.is_empty(),
            "score and rubric judges",
        )?;
        for (artifact, v) in &sim.score_shift {
            if !v.is_finite() {
                return bad(
                    &format!("sim_grades.score_shift.{artifact}"),
                    format!("{v} is not finite"),
                );
            }
        }
        for (artifact, v) in &sim.label_flip {
            if !(v.is_finite() && (0.0..=1.0).contains(v)) {
                return bad(
                    &format!("sim_grades.label_flip.{artifact}"),
                    format!("{v} is outside [0, 1]"),
                );
            }
        }
        if let Some(v) = sim.positive_rate
            && !(v.is_finite() && (0.0..=1.0).contains(&v))
        {
            return bad("sim_grades.positive_rate", format!("{v} is outside [0, 1]"));
        }
    }
    let template = Template::resolve(config.template_spec(), config.base_dir().as_deref())
        .map_err(|e| invalid_field(origin, text, "template", e.to_string()))?;
    if !template.pointwise {
        return bad(
            "template",
            format!(
                "template `{}` compares two answers; a {kind} judge needs a template that grades \
                 one answer (built-in: {})",
                template.name,
                Template::builtin_pointwise_names().join(", ")
            ),
        );
    }
    Ok(())
}

fn validate_sim(sim: &SimParams, text: &str, origin: &str) -> Result<(), ConfigError> {
    let bad = |field: &str, message: String| Err(invalid_field(origin, text, field, message));
    for (field, v) in [
        ("sim.accuracy", sim.accuracy),
        ("sim.noise", sim.noise),
        ("sim.tie_rate", sim.tie_rate),
        ("sim.invalid_rate", sim.invalid_rate),
    ] {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return bad(field, format!("{v} is outside [0, 1]"));
        }
    }
    if sim.tie_rate + sim.invalid_rate > 1.0 {
        return bad(
            "sim.invalid_rate",
            "tie_rate + invalid_rate must not exceed 1".into(),
        );
    }
    if !(sim.position_bias.is_finite() && (-1.0..=1.0).contains(&sim.position_bias)) {
        return bad(
            "sim.position_bias",
            format!("{} is outside [-1, 1]", sim.position_bias),
        );
    }
    for (artifact, v) in &sim.artifact_preference {
        let field = format!("sim.artifact_preference.{artifact}");
        if artifact.trim().is_empty() {
            return bad(&field, "artifact id must not be empty".into());
        }
        if !(v.is_finite() && (-1.0..=1.0).contains(v)) {
            return bad(&field, format!("{v} is outside [-1, 1]"));
        }
    }
    Ok(())
}

/// Every built-in preset judge (`judges/*.toml`, `judges/sim/*.toml` and
/// `judges/sim-pointwise/*.toml`), parsed.
pub fn builtin_judges() -> Vec<JudgeConfig> {
    static BUILTINS: std::sync::OnceLock<Vec<JudgeConfig>> = std::sync::OnceLock::new();
    BUILTINS
        .get_or_init(|| {
            BUILTIN_JUDGE_FILES
                .iter()
                .map(|(file, text)| {
                    JudgeConfig::from_toml_str(text, &format!("<built-in judges/{file}>"))
                        .unwrap_or_else(|e| panic!("built-in judge file is invalid: {e}"))
                })
                .collect()
        })
        .clone()
}

/// The built-in preset judge called `name`.
pub fn builtin_judge(name: &str) -> Result<JudgeConfig, ConfigError> {
    let all = builtin_judges();
    let available = all
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| ConfigError::UnknownBuiltin {
            what: "judge",
            name: name.to_string(),
            available,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(text: &str) -> Result<JudgeConfig, ConfigError> {
        JudgeConfig::from_toml_str(text, "j.toml")
    }

    const OPENAI: &str = "name = \"j\"\nbackend = \"openai\"\nmodel = \"m\"\n";
    const SIM: &str = "name = \"s\"\nbackend = \"sim\"\n";

    #[track_caller]
    fn expect_err(text: &str, field: &str, line: Option<usize>) -> ConfigError {
        let err = parse(text).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert_eq!(err.line(), line, "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("j.toml"), "{msg}");
        assert!(msg.contains(&format!("field `{field}`")), "{msg}");
        err
    }

    #[test]
    fn every_shipped_preset_parses_and_is_embedded() {
        let all = builtin_judges();
        assert_eq!(all.len(), BUILTIN_JUDGE_FILES.len());
        let mut names: Vec<_> = all.iter().map(|c| c.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "built-in names must be unique");
        // Every file on disk is embedded (nobody adds a preset and forgets include_str!).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("judges");
        let mut on_disk = Vec::new();
        for sub in ["", "sim", "sim-pointwise"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap() {
                let p = e.unwrap().path();
                let f = p.file_name().unwrap().to_string_lossy().into_owned();
                if p.extension().is_some_and(|x| x == "toml")
                    && f != crate::judge::models::REGISTRY_FILE
                {
                    on_disk.push(if sub.is_empty() {
                        f
                    } else {
                        format!("{sub}/{f}")
                    });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<_> = BUILTIN_JUDGE_FILES
            .iter()
            .map(|(f, _)| f.to_string())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        // The same files load from disk with identical content.
        let from_dir = JudgeConfig::load_dir(&root).unwrap();
        assert_eq!(from_dir.len(), 12);
        let sims = JudgeConfig::load_dir(root.join("sim")).unwrap();
        assert_eq!(sims.len(), 7);
        assert!(
            sims.iter()
                .all(|c| c.backend == Backend::Sim && c.sim.is_some())
        );
        let pointwise = JudgeConfig::load_dir(root.join("sim-pointwise")).unwrap();
        assert_eq!(pointwise.len(), 4);
        assert!(
            pointwise
                .iter()
                .all(|c| c.is_pointwise() && c.sim.is_some())
        );
        for c in from_dir.iter().chain(&sims).chain(&pointwise) {
            let builtin = builtin_judge(&c.name).unwrap();
            assert_eq!(
                JudgeConfig {
                    source_path: None,
                    ..c.clone()
                },
                builtin
            );
        }
        // Sorted by file name.
        let files: Vec<_> = from_dir
            .iter()
            .map(|c| c.source_path.clone().unwrap())
            .collect();
        let mut sorted = files.clone();
        sorted.sort();
        assert_eq!(files, sorted);
    }

    #[test]
    fn preset_details() {
        let get = |n: &str| builtin_judge(n).unwrap();
        let env = |_: &str| None;
        assert_eq!(
            get("ollama-llama3.2").resolve_base_url_with(env).unwrap(),
            "http://localhost:11434/v1"
        );
        assert_eq!(get("ollama-llama3.2").model, "llama3.2");
        for name in ["anthropic-claude-haiku", "anthropic-claude-sonnet"] {
            let c = get(name);
            assert_eq!(c.backend, Backend::Anthropic);
            assert_eq!(
                c.resolve_base_url_with(env).unwrap(),
                "https://api.anthropic.com"
            );
            assert_eq!(c.base_url_env_name(), Some("ANTHROPIC_BASE_URL"));
            assert!(c.pricing.is_some_and(|p| p.input_per_mtok > 0.0), "{name}");
        }
        assert_eq!(
            get("llamacpp-server").resolve_base_url_with(env).unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        for (name, key_env) in [
            ("openrouter-gpt-4o-mini", "OPENROUTER_API_KEY"),
            ("together-llama-3.3-70b", "TOGETHER_API_KEY"),
            ("groq-llama-3.1-8b", "GROQ_API_KEY"),
            ("openai-gpt-4o-mini", "OPENAI_API_KEY"),
            ("openai-gpt-4.1-mini", "OPENAI_API_KEY"),
            ("anthropic-claude-haiku", "ANTHROPIC_API_KEY"),
            ("anthropic-claude-sonnet", "ANTHROPIC_API_KEY"),
        ] {
            assert_eq!(get(name).api_key_env_name(), Some(key_env), "{name}");
            // The header comment names the variable the judge needs.
            let (_, text) = BUILTIN_JUDGE_FILES
                .iter()
                .find(|(_, t)| t.contains(&format!("name = \"{name}\"")))
                .unwrap();
            assert!(text.starts_with('#') && text.contains(key_env), "{name}");
        }
        let unbiased = get("sim-unbiased").sim.unwrap();
        assert_eq!(
            (unbiased.accuracy, unbiased.noise, unbiased.tie_rate),
            (0.85, 0.04, 0.1)
        );
        assert!(unbiased.artifact_preference.is_empty());
        let skeptic = get("sim-authority-skeptic").sim.unwrap();
        assert_eq!(skeptic.artifact_preference["authority"], -0.45);
        assert_eq!(skeptic.artifact_preference["halo"], -0.2);
        assert_eq!(
            get("sim-apology-lover").sim.unwrap().artifact_preference["apology"],
            0.6
        );
        assert_eq!(get("sim-first-slot").sim.unwrap().position_bias, 0.5);
        let fan = get("sim-verbose-fan").sim.unwrap();
        assert_eq!(fan.artifact_preference["verbosity"], 0.4);
        assert_eq!(fan.artifact_preference["repetition"], 0.3);
        assert!(matches!(
            builtin_judge("nope"),
            Err(ConfigError::UnknownBuiltin { what: "judge", .. })
        ));
    }

    #[test]
    fn toml_errors_name_file_line_and_field() {
        let err = expect_err(
            &format!("{OPENAI}temperature = \"hot\"\n"),
            "temperature",
            Some(4),
        );
        assert!(
            err.to_string()
                .starts_with("j.toml:4:15: field `temperature`"),
            "{err}"
        );
        expect_err(&format!("{OPENAI}modle = \"x\"\n"), "modle", Some(4));
        expect_err(
            &format!("{SIM}[sim]\naccuracy = 0.9\nnoize = 0.1\n"),
            "sim.noize",
            Some(5),
        );
        expect_err(
            &format!("{SIM}[sim]\naccuracy = \"high\"\n"),
            "sim.accuracy",
            Some(4),
        );
        let err = parse("backend = \"openai\"\nmodel = \"m\"\n").unwrap_err();
        assert_eq!(err.field(), Some("name"), "{err}");
        let err = parse("name = \"x\"\nbackend = \"claude\"\n").unwrap_err();
        assert_eq!(err.field(), Some("backend"), "{err}");
        assert_eq!(err.line(), Some(2));
        let err = parse("name = \"x\nbackend").unwrap_err();
        assert_eq!(err.line(), Some(1), "{err}");
    }

    #[test]
    fn a_key_in_the_file_is_rejected_without_echoing_it() {
        let secret = "sk-proj-THISISASECRETVALUE1234567890";
        let err = expect_err(
            &format!("{OPENAI}api_key = \"{secret}\"\n"),
            "api_key",
            Some(4),
        );
        let msg = err.to_string();
        assert!(msg.contains("api_key_env"), "{msg}");
        assert!(!msg.contains(secret), "{msg}");
        let err = expect_err(
            &format!("{OPENAI}api_key_env = \"{secret}\"\n"),
            "api_key_env",
            Some(4),
        );
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret));
        expect_err(
            &format!("{OPENAI}[headers]\nAuthorization = \"Bearer x\"\n"),
            "headers.Authorization",
            Some(5),
        );
        expect_err(
            &format!("{OPENAI}[headers]\nx-api-key = \"x\"\n"),
            "headers.x-api-key",
            Some(5),
        );
    }

    #[test]
    fn value_validation() {
        expect_err("name = \"  \"\nbackend = \"sim\"\n", "name", Some(1));
        expect_err(
            &format!("{OPENAI}temperature = 2.5\n"),
            "temperature",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}temperature = -0.1\n"),
            "temperature",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}temperature = nan\n"),
            "temperature",
            Some(4),
        );
        expect_err(&format!("{OPENAI}max_tokens = 0\n"), "max_tokens", Some(4));
        expect_err(
            &format!("{OPENAI}timeout_secs = 0\n"),
            "timeout_secs",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}concurrency = 0\n"),
            "concurrency",
            Some(4),
        );
        expect_err("name = \"j\"\nbackend = \"openai\"\n", "model", None);
        expect_err(
            &format!("{OPENAI}base_url = \"ftp://example.com\"\n"),
            "base_url",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}base_url = \"not a url\"\n"),
            "base_url",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}[pricing]\ninput_per_mtok = -1\n"),
            "pricing.input_per_mtok",
            Some(5),
        );
        expect_err(&format!("{OPENAI}[sim]\naccuracy = 0.9\n"), "sim", Some(4));
        expect_err(&format!("{SIM}logprobs = true\n"), "logprobs", Some(3));
        expect_err(
            &format!("{SIM}[sim]\naccuracy = 1.5\n"),
            "sim.accuracy",
            Some(4),
        );
        expect_err(&format!("{SIM}[sim]\nnoise = -0.1\n"), "sim.noise", Some(4));
        expect_err(
            &format!("{SIM}[sim]\ntie_rate = 0.7\ninvalid_rate = 0.6\n"),
            "sim.invalid_rate",
            Some(5),
        );
        expect_err(
            &format!("{SIM}[sim]\nposition_bias = -1.2\n"),
            "sim.position_bias",
            Some(4),
        );
        expect_err(
            &format!(
                "{SIM}[sim]\naccuracy = 0.8\n[sim.artifact_preference]\napology = 0.5\nauthority = 1.5\n"
            ),
            "sim.artifact_preference.authority",
            Some(7),
        );
        expect_err(
            &format!("{OPENAI}template = \"no-such\"\n"),
            "template",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}[parser]\ntie = \"(\"\n"),
            "parser.tie",
            Some(5),
        );
        expect_err(
            &format!("{OPENAI}[parser]\npick = \"any\"\n"),
            "parser.pick",
            Some(5),
        );
        // Chen's template has no label tokens; MT-Bench's does.
        expect_err(&format!("{OPENAI}logprobs = true\n"), "logprobs", Some(4));
        expect_err(
            &format!(
                "{OPENAI}template = \"mtbench-pairwise\"\nlogprobs = true\ntop_logprobs = 21\n"
            ),
            "top_logprobs",
            Some(6),
        );
        let ok = parse(&format!("{OPENAI}template = \"mtbench-pairwise\"\nlogprobs = true\ntop_logprobs = 5\nmax_tokens = 600\n")).unwrap();
        assert!(ok.logprobs);
        // Boundaries are inclusive.
        parse(&format!("{OPENAI}temperature = 2.0\n")).unwrap();
        parse(&format!(
            "{SIM}[sim]\nposition_bias = -1.0\naccuracy = 1.0\n"
        ))
        .unwrap();
        // A sim judge without [sim] gets the defaults.
        assert_eq!(parse(SIM).unwrap().sim, None);
    }

    #[test]
    fn files_dirs_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = JudgeConfig::from_file(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, format!("{OPENAI}max_tokens = 0\n")).unwrap();
        let err = JudgeConfig::from_file(&bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:4:1: field `max_tokens`", bad.display())),
            "{err}"
        );
        std::fs::remove_file(&bad).unwrap();
        // A template path relative to the judge file's folder.
        std::fs::create_dir(dir.path().join("t")).unwrap();
        std::fs::write(
            dir.path().join("t/mine.toml"),
            "user = \"{{prompt}}|{{first}}|{{second}}\"\n[labels]\nfirst = '1'\nsecond = '2'\ntie = '0'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            format!("{OPENAI}template = \"t/mine.toml\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "name = \"k\"\nbackend = \"sim\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not toml").unwrap();
        let all = JudgeConfig::load_dir(dir.path()).unwrap();
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["k", "j"]
        );
        assert_eq!(all[1].load_template().unwrap().name, "mine");
        std::fs::write(
            dir.path().join("c.toml"),
            "name = \"k\"\nbackend = \"sim\"\n",
        )
        .unwrap();
        let err = JudgeConfig::load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, ConfigError::DuplicateName { ref name, .. } if name == "k"),
            "{err}"
        );
        // resolve(): a path or a built-in name.
        assert_eq!(
            JudgeConfig::resolve(dir.path().join("a.toml").to_str().unwrap())
                .unwrap()
                .name,
            "k"
        );
        assert_eq!(
            JudgeConfig::resolve("sim-unbiased").unwrap().name,
            "sim-unbiased"
        );
    }

    #[test]
    fn base_url_and_key_resolution() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("OPENAI_BASE_URL", "http://proxy.local:9000/v1/"),
            ("OPENAI_API_KEY", "sk-default"),
            ("MY_URL", "https://my.example/api"),
            ("MY_KEY", "  sk-mine \n"),
            ("BLANK", "   "),
        ]);
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let none = |_: &str| None;
        let mut c = parse(OPENAI).unwrap();
        assert_eq!(c.resolve_base_url_with(none).unwrap(), DEFAULT_BASE_URL);
        assert_eq!(
            c.resolve_base_url_with(env).unwrap(),
            "http://proxy.local:9000/v1"
        );
        assert_eq!(c.resolve_api_key_with(env).unwrap().expose(), "sk-default");
        assert!(c.resolve_api_key_with(none).is_none());
        c.base_url_env = Some("MY_URL".into());
        c.api_key_env = Some("MY_KEY".into());
        assert_eq!(
            c.resolve_base_url_with(env).unwrap(),
            "https://my.example/api"
        );
        assert_eq!(c.resolve_api_key_with(env).unwrap().expose(), "sk-mine");
        c.base_url = Some("http://127.0.0.1:8080/v1".into());
        assert_eq!(
            c.resolve_base_url_with(env).unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        c.base_url = None;
        c.base_url_env = Some("BLANK".into());
        c.api_key_env = Some("BLANK".into());
        assert_eq!(c.resolve_base_url_with(env).unwrap(), DEFAULT_BASE_URL);
        assert!(c.resolve_api_key_with(env).is_none());
        let bad_env = |_: &str| Some("nonsense".to_string());
        c.base_url_env = Some("X".into());
        let err = c.resolve_base_url_with(bad_env).unwrap_err();
        assert!(err.to_string().contains("environment variable X"), "{err}");
        // Sim judges read no environment.
        let s = parse(SIM).unwrap();
        assert!(s.resolve_api_key_with(env).is_none());
        // Keys never print.
        let key = ApiKey::new("sk-very-secret").unwrap();
        assert!(!format!("{key:?}").contains("sk-very-secret"));
        assert!(ApiKey::new(" ").is_none());
    }

    #[test]
    fn new_matches_a_minimal_file() {
        let from_file = parse("name = \"x\"\nbackend = \"sim\"\n").unwrap();
        assert_eq!(JudgeConfig::new("x", Backend::Sim), from_file);
        let mut c = JudgeConfig::new("y", Backend::Openai);
        assert_eq!(c.validate().unwrap_err().field(), Some("model"));
        c.model = "m".into();
        c.validate().unwrap();
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(
            locate_field("a = 1\n[sim]\n  b = 2\n", "sim.b"),
            Some((3, 3))
        );
        assert_eq!(locate_field("a = 1\n[sim]\nb = 2\n", "b"), None);
        assert_eq!(locate_field("a = 1\n[sim]\nb = 2\n", "sim"), Some((2, 1)));
    }

    #[test]
    fn pointwise_kinds_validate_once_naming_file_and_field() {
        let parse = |body: &str| {
            JudgeConfig::from_toml_str(
                &format!("name = \"j\"\nbackend = \"openai\"\nmodel = \"m\"\n{body}"),
                "j.toml",
            )
        };
        let err = |body: &str| parse(body).unwrap_err().to_string();
        // A label judge without positive, or with one that is not a label.
        let e = err("kind = \"label\"\nlabels = [\"safe\", \"unsafe\"]");
        assert!(e.starts_with("j.toml") && e.contains("`positive`"), "{e}");
        let e = err("kind = \"label\"\nlabels = [\"safe\", \"unsafe\"]\npositive = \"bad\"");
        assert!(
            e.starts_with("j.toml:6:") && e.contains("field `positive`"),
            "{e}"
        );
        // A score judge needs a non-empty scale.
        assert!(err("kind = \"score\"").contains("field `scale`"));
        let e = err("kind = \"score\"\nscale = { min = 5, max = 5 }");
        assert!(
            e.contains("field `scale`") && e.contains("below max"),
            "{e}"
        );
        // Fields of another kind are refused.
        assert!(
            err("kind = \"score\"\nscale = { min = 1, max = 5 }\nlabels = [\"a\", \"b\"]")
                .contains("field `labels`")
        );
        assert!(err("scale = { min = 1, max = 5 }").contains("field `scale`"));
        assert!(err("pairwise_judge = \"x\"").contains("field `pairwise_judge`"));
        // A pointwise judge needs a pointwise template, and a pairwise one a pairwise template.
        let e =
            err("kind = \"score\"\nscale = { min = 1, max = 10 }\ntemplate = \"mtbench-pairwise\"");
        assert!(
            e.contains("field `template`") && e.contains("mtbench-single"),
            "{e}"
        );
        assert!(err("template = \"mtbench-single\"").contains("grades one answer"));
        // Rubric criteria: a scale or labels with positive, names unique.
        assert!(err("kind = \"rubric\"").contains("field `criteria`"));
        let e = err("kind = \"rubric\"\n[[criteria]]\nname = \"c\"");
        assert!(e.contains("criteria[0].scale"), "{e}");
        let e = err("kind = \"rubric\"\n[[criteria]]\nname = \"c\"\nlabels = [\"y\", \"n\"]");
        assert!(e.contains("criteria[0].positive"), "{e}");
        let e = err(
            "kind = \"rubric\"\n[[criteria]]\nname = \"c\"\nscale = { min = 1, max = 3 }\n[[criteria]]\nname = \"c\"\nscale = { min = 1, max = 3 }",
        );
        assert!(e.contains("criteria[1].name") && e.contains("twice"), "{e}");
        assert!(
            err("kind = \"score\"\nscale = { min = 1, max = 10 }\n[parser]\npick = \"last\"")
                .contains("field `parser`")
        );
        // Planted pointwise effects belong to sim judges.
        assert!(err("kind = \"score\"\nscale = { min = 1, max = 10 }\n[sim_grades]\nscore_shift = { apology = 1.0 }").contains("sim_grades"));
        // Valid kinds, with the kind's default template when none is named.
        let score = parse("kind = \"score\"\nscale = { min = 1, max = 10 }").unwrap();
        assert_eq!(score.template_spec(), "mtbench-single");
        let label =
            parse("kind = \"label\"\nlabels = [\"Safe\", \"unsafe\"]\npositive = \"UNSAFE\"")
                .unwrap();
        assert_eq!(label.template_spec(), "safety-classifier");
        // A pairwise config serializes without any of the new keys.
        let pairwise = parse("").unwrap();
        let json = serde_json::to_value(&pairwise).unwrap();
        for key in [
            "kind",
            "scale",
            "labels",
            "positive",
            "criteria",
            "pairwise_judge",
            "sim_grades",
        ] {
            assert!(json.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn template_variants_derive_judges_with_distinct_cache_keys() {
        let text = format!(
            "{OPENAI}base_url = \"http://127.0.0.1:9\"\ntemplates = [\"chen-safety-paraphrase\", \"chen-safety-system\", \"chen-safety-brackets\"]\n"
        );
        let config = parse(&text).unwrap();
        let variants = config.template_variants().unwrap();
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "j@chen-safety-paraphrase",
                "j@chen-safety-system",
                "j@chen-safety-brackets"
            ]
        );
        assert!(variants.iter().all(|v| v.variant_of.as_deref() == Some("j")
            && v.templates.is_empty()
            && v.model == "m"));
        // The cache key hashes the rendered messages: no two templates share a reply.
        let request = crate::judge::JudgeRequest {
            pair_id: String::new(),
            call_id: "c".into(),
            prompt: "P".into(),
            first: "A1".into(),
            second: "B1".into(),
            repeat: 0,
            sim: Default::default(),
            context: Vec::new(),
        };
        let mut keys: Vec<String> = std::iter::once(&config)
            .chain(&variants)
            .map(|c| crate::judge::build(c).unwrap().cache_key(&request).unwrap())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 4);
        // A variant that reasons before its verdict gets room for it: 1024 tokens for the CoT
        // variant, the judge's own 16 for a label-only paraphrase.
        let config =
            parse(&format!("{OPENAI}max_tokens = 16\ntemplates = [\"mtbench-pairwise-cot\", \"chen-safety-paraphrase\"]\n")).unwrap();
        let tokens: Vec<u32> = config
            .template_variants()
            .unwrap()
            .iter()
            .map(|v| v.max_tokens)
            .collect();
        assert_eq!(tokens, [1024, 16]);
        // A variant listed twice, or equal to the primary, is refused with its field and line.
        let e = expect_err(
            &format!("{OPENAI}templates = [\"chen-safety\"]\n"),
            "templates",
            Some(4),
        );
        assert!(e.to_string().contains("listed twice"), "{e}");
        expect_err(
            &format!("{OPENAI}templates = [\"mtbench-single\"]\n"),
            "templates",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}variant_of = \"x\"\n"),
            "variant_of",
            Some(4),
        );
        expect_err(
            &format!("{OPENAI}[sim_template]\nphrase = \"x\"\nshare = 0.5\n"),
            "sim_template",
            Some(4),
        );
        expect_err(
            &format!("{SIM}[sim]\n[sim_template]\nphrase = \"x\"\nshare = 1.5\n"),
            "sim_template.share",
            Some(6),
        );
    }
}
