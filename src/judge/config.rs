//! Judge configuration files (`judges/*.toml`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which backend implements a judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Simulated reference judge with declared biases.
    Sim,
    /// OpenAI-compatible `/chat/completions` (OpenAI, vLLM, llama.cpp server, Ollama, LM Studio).
    Openai,
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
    /// Maximum concurrent calls for this judge (the run's `--concurrency` applies otherwise).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Maximum retries of a retryable failure.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Token prices for cost accounting.
    #[serde(default)]
    pub pricing: Option<Pricing>,
    /// Parameters of a simulated judge (`backend = "sim"` only).
    #[serde(default)]
    pub sim: Option<SimParams>,
}

fn default_max_tokens() -> u32 {
    16
}
fn default_template() -> String {
    "chen-safety".to_string()
}
fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> u32 {
    4
}
