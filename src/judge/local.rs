//! A real local LLM judge: a GGUF model run in-process by llama.cpp (crate `llama-cpp-2`), with no
//! API key and no network.
//!
//! The judge applies the GGUF's own chat template, runs one forward pass and reads the next-token
//! logits of the configured label tokens (`Logits` mode), or greedily generates a short answer
//! (`Generate` mode) whose text the caller parses. Label probabilities are a softmax over the
//! *full* vocabulary restricted to the label tokens, so they sum to at most 1: the remainder is
//! the mass the model put on anything that is not a label.
//!
//! Threading: a `LlamaContext` borrows its model and is neither `Send` nor `Sync`, so it cannot
//! sit behind a `Mutex` that `spawn_blocking` tasks share. Each [`LocalModel`] therefore owns one
//! dedicated worker thread that creates the context once and serves requests one at a time
//! (clearing the KV cache between them). Callers never block the async runtime: they send a job
//! and await a oneshot reply. Calls are serialised, and deterministic (greedy / logits only).

use crate::judge::{FaultKind, JudgeError, JudgeReply, LabelProbs, SlotVerdict, TokenUsage};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// How the local judge produces its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalMode {
    /// One forward pass; the verdict is the most probable label token (no sampling at all).
    #[default]
    Logits,
    /// Greedy generation of up to `max_tokens` tokens; `raw` is the generated text.
    Generate,
}

/// The label strings of the three verdicts. Each string is tokenized and its *first* token is
/// the one whose probability is read, so `"A"` and `" A"` (a different BPE token) can both count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelTokens {
    /// Labels meaning "the first answer wins".
    pub first: Vec<String>,
    /// Labels meaning "the second answer wins".
    pub second: Vec<String>,
    /// Labels meaning "tie".
    pub tie: Vec<String>,
}

impl Default for LabelTokens {
    /// `A`/`B`/`C` with and without a leading space, plus `Tie`: the labels of an
    /// "answer with A, B or C" judge prompt.
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        Self {
            first: v(&["A", " A"]),
            second: v(&["B", " B"]),
            tie: v(&["C", " C", "Tie"]),
        }
    }
}

fn default_n_ctx() -> u32 {
    2048
}

fn default_max_tokens() -> u32 {
    16
}

fn default_prefix_reuse() -> bool {
    true
}

fn default_eval_chunk() -> u32 {
    DEFAULT_EVAL_CHUNK
}

/// Tokens per prompt-evaluation step. llama.cpp's CPU kernels give slightly different numbers
/// for the same token when it is evaluated in a batch of another size (up to 0.28 nats on a
/// label's log-probability, measured on SmolLM2), so every prompt is evaluated in steps of this
/// many tokens from position 0, with or without prefix reuse: that is what makes a reused
/// prefix's KV state, and so every verdict, bit-identical to a fresh evaluation. 64-token steps
/// were measured as fast as one whole-prompt step on a 2-core CPU (BENCHMARKS.md); a call gives
/// up at most 63 reusable tokens.
pub const DEFAULT_EVAL_CHUNK: u32 = 64;

/// Settings of a local GGUF judge (what a `local` backend in a judge file configures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// Path to the `.gguf` file.
    pub model_path: PathBuf,
    /// Context size in tokens (prompt plus generated tokens must fit).
    #[serde(default = "default_n_ctx")]
    pub n_ctx: u32,
    /// Compute threads; 0 means all available cores.
    #[serde(default)]
    pub n_threads: u32,
    /// Logits-only verdict or short greedy generation.
    #[serde(default)]
    pub mode: LocalMode,
    /// Maximum generated tokens in `Generate` mode.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Verdict label strings.
    #[serde(default)]
    pub labels: LabelTokens,
    /// Keep the KV state of the previous prompt and evaluate only what a new prompt does not
    /// share with it (rounded down to whole evaluation steps). Every call of a judge shares its
    /// template's preamble, and the calls of one pair share the pair's prompt too.
    #[serde(default = "default_prefix_reuse")]
    pub prefix_reuse: bool,
    /// Tokens per prompt-evaluation step ([`DEFAULT_EVAL_CHUNK`]); the same with and without
    /// prefix reuse, so both give identical verdicts.
    #[serde(default = "default_eval_chunk")]
    pub eval_chunk: u32,
}

impl LocalSettings {
    /// Defaults for a model file: 2048-token context, all cores, logits mode, default labels.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_ctx: default_n_ctx(),
            n_threads: 0,
            mode: LocalMode::Logits,
            max_tokens: default_max_tokens(),
            labels: LabelTokens::default(),
            prefix_reuse: default_prefix_reuse(),
            eval_chunk: default_eval_chunk(),
        }
    }

    /// Check the settings that do not need the model.
    pub fn validate(&self) -> Result<(), LocalError> {
        let bad = |field: &str, message: &str| {
            Err(LocalError::Settings {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.n_ctx < 16 {
            return bad("n_ctx", "must be at least 16");
        }
        if self.mode == LocalMode::Generate && self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1 in generate mode");
        }
        if self.max_tokens >= self.n_ctx {
            return bad("max_tokens", "must be smaller than n_ctx");
        }
        if self.eval_chunk == 0 || self.eval_chunk > self.n_ctx {
            return bad("eval_chunk", "must be between 1 and n_ctx");
        }
        for (field, labels) in [
            ("labels.first", &self.labels.first),
            ("labels.second", &self.labels.second),
            ("labels.tie", &self.labels.tie),
        ] {
            if labels.is_empty() {
                return bad(field, "needs at least one label string");
            }
            if labels.iter().any(|l| l.is_empty()) {
                return bad(field, "label strings must not be empty");
            }
        }
        Ok(())
    }
}

/// Why the local judge failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalError {
    /// A setting is invalid.
    #[error("local judge setting `{field}`: {message}")]
    Settings {
        /// The offending field of [`LocalSettings`].
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The model file does not exist.
    #[error("local model file not found: {path} (run scripts/fetch-model.sh)")]
    ModelNotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// llama.cpp could not be initialised, or could not load the model or create a context.
    #[error("local model {path}: {message}")]
    Load {
        /// The model path.
        path: PathBuf,
        /// llama.cpp's error.
        message: String,
    },
    /// A label string cannot be used (no token, or its token is claimed by two verdicts).
    #[error("local judge label `{label}` in `{field}`: {message}")]
    Label {
        /// `labels.first`, `labels.second` or `labels.tie`.
        field: String,
        /// The label string.
        label: String,
        /// What is wrong.
        message: String,
    },
    /// The chat template could not be applied.
    #[error("chat template: {0}")]
    Template(String),
    /// The prompt does not fit the context.
    #[error(
        "prompt has {tokens} tokens, but n_ctx is {n_ctx} (with {reserve} reserved for output)"
    )]
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Context size.
        n_ctx: u32,
        /// Tokens reserved for generation.
        reserve: u32,
    },
    /// The forward pass failed.
    #[error("llama.cpp decode: {0}")]
    Decode(String),
    /// The worker thread is gone (it panicked or the model is being dropped).
    #[error("local model worker stopped: {0}")]
    Worker(String),
}

impl From<LocalError> for JudgeError {
    /// Every local failure is a backend fault. Only a decode failure or a worker panic might go
    /// away on retry; configuration, model and prompt problems will not.
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::Decode(_) | LocalError::Worker(_) => JudgeError::Retryable {
                kind: FaultKind::Backend,
                message: e.to_string(),
                retry_after: None,
            },
            LocalError::PromptTooLong { .. } => JudgeError::Permanent {
                kind: FaultKind::BadRequest,
                message: e.to_string(),
            },
            _ => JudgeError::Permanent {
                kind: FaultKind::Backend,
                message: e.to_string(),
            },
        }
    }
}

/// The log-probability of one label token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelLogprob {
    /// The verdict the label stands for.
    pub verdict: SlotVerdict,
    /// The label string as configured.
    pub label: String,
    /// Its first token id.
    pub token: i32,
    /// log P(token) under the full-vocabulary softmax at the answer position.
    pub logprob: f64,
}

/// One local judgment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalOutput {
    /// `Logits` mode: the most probable label string of the winning verdict. `Generate` mode:
    /// the generated text (parse it with the template's verdict parser).
    pub raw: String,
    /// `Logits` mode: the verdict with the highest label probability (`Invalid` only when the
    /// logits are not finite). `Generate` mode: the verdict whose label the trimmed text starts
    /// with (longest match), else `Invalid`; a quick first guess, the template parser decides.
    pub verdict: SlotVerdict,
    /// Label probabilities at the first answer position (both modes).
    pub probs: LabelProbs,
    /// Per label token log-probabilities (each distinct token once, in configuration order).
    pub label_logprobs: Vec<LabelLogprob>,
    /// Prompt tokens after the chat template.
    pub prompt_tokens: u64,
    /// Of those, tokens whose KV state was kept from the previous prompt instead of evaluated
    /// (0 without prefix reuse).
    #[serde(default)]
    pub reused_prompt_tokens: u64,
    /// Generated tokens (0 in `Logits` mode).
    pub completion_tokens: u64,
}

impl From<LocalOutput> for JudgeReply {
    fn from(o: LocalOutput) -> Self {
        JudgeReply {
            raw: o.raw,
            verdict: o.verdict,
            usage: Some(TokenUsage {
                input_tokens: o.prompt_tokens,
                output_tokens: o.completion_tokens,
            }),
            label_probs: Some(o.probs),
            redacted: false,
            grades: None,
        }
    }
}

/// A label token resolved against the model's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLabel {
    /// The verdict it stands for.
    pub verdict: SlotVerdict,
    /// The configured label string.
    pub label: String,
    /// The first token of the label string.
    pub token: i32,
}

/// One queued judgment.
struct Job {
    system: Option<String>,
    user: String,
    reply: oneshot::Sender<Result<LocalOutput, LocalError>>,
}

/// A loaded GGUF judge model with its worker thread. Share it via the `Arc` that
/// [`LocalModel::load`] returns; the model weights are loaded once.
pub struct LocalModel {
    settings: LocalSettings,
    labels: Arc<Vec<ResolvedLabel>>,
    n_vocab: usize,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("model_path", &self.settings.model_path)
            .field("mode", &self.settings.mode)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// The llama.cpp backend may be initialised only once per process.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every tensor at load time; route it to `tracing` (silent unless a
            // subscriber enables it) instead of stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl LocalModel {
    /// Load the GGUF, resolve the label tokens, create the inference context on a dedicated
    /// worker thread, and return the shared handle. Blocking (reads the model file).
    pub fn load(settings: &LocalSettings) -> Result<Arc<LocalModel>, LocalError> {
        settings.validate()?;
        let path = settings.model_path.clone();
        if !path.is_file() {
            return Err(LocalError::ModelNotFound { path });
        }
        let load_err = |message: String| LocalError::Load {
            path: path.clone(),
            message,
        };
        let backend = backend().map_err(load_err)?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| load_err(e.to_string()))?;
        let model = Arc::new(model);
        let labels = Arc::new(resolve_labels(&model, &settings.labels)?);
        let n_vocab = usize::try_from(model.n_vocab()).map_err(|e| load_err(e.to_string()))?;
        let template = model
            .chat_template(None)
            .map_err(|e| LocalError::Template(format!("{}: {e}", path.display())))?;

        let n_threads = match settings.n_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LocalError>>();
        let worker = Worker {
            model: Arc::clone(&model),
            template: template.clone(),
            labels: Arc::clone(&labels),
            settings: settings.clone(),
            n_threads: i32::try_from(n_threads).unwrap_or(1),
        };
        let handle = std::thread::Builder::new()
            .name("judge-local".to_owned())
            .spawn(move || worker.run(jobs_rx, ready_tx))
            .map_err(|e| load_err(format!("cannot spawn worker thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(load_err(
                    "worker thread died while creating the context".into(),
                ));
            }
        }
        Ok(Arc::new(LocalModel {
            settings: settings.clone(),
            labels,
            n_vocab,
            model,
            template,
            jobs: Some(jobs_tx),
            worker: Some(handle),
        }))
    }

    /// The settings the model was loaded with.
    pub fn settings(&self) -> &LocalSettings {
        &self.settings
    }

    /// The label tokens, each distinct token once, in configuration order.
    pub fn labels(&self) -> &[ResolvedLabel] {
        &self.labels
    }

    /// Vocabulary size (the softmax runs over all of it).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The exact prompt text a judgment of this chat feeds the model (chat template applied).
    pub fn render_prompt(&self, system: Option<&str>, user: &str) -> Result<String, LocalError> {
        render_chat(&self.model, &self.template, system, user)
    }

    /// The prompt token ids a judgment of this chat feeds the model.
    pub fn prompt_token_ids(
        &self,
        system: Option<&str>,
        user: &str,
    ) -> Result<Vec<i32>, LocalError> {
        let prompt = self.render_prompt(system, user)?;
        Ok(tokenize_prompt(&self.model, &prompt)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    /// Judge one chat (optional system message, then the user message). Never blocks the
    /// async runtime; concurrent calls queue on the model's worker thread.
    pub async fn judge_messages(
        &self,
        system: Option<&str>,
        user: &str,
    ) -> Result<LocalOutput, LocalError> {
        self.submit(system, user)?
            .await
            .map_err(|_| LocalError::Worker("the worker dropped the request".into()))?
    }

    /// Blocking variant of [`judge_messages`](Self::judge_messages), for non-async callers.
    /// Must not be called from inside an async task.
    pub fn judge_messages_blocking(
        &self,
        system: Option<&str>,
        user: &str,
    ) -> Result<LocalOutput, LocalError> {
        self.submit(system, user)?
            .blocking_recv()
            .map_err(|_| LocalError::Worker("the worker dropped the request".into()))?
    }

    fn submit(
        &self,
        system: Option<&str>,
        user: &str,
    ) -> Result<oneshot::Receiver<Result<LocalOutput, LocalError>>, LocalError> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            system: system.map(str::to_owned),
            user: user.to_owned(),
            reply: tx,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| LocalError::Worker("model is shutting down".into()))?
            .send(job)
            .map_err(|_| LocalError::Worker("the worker thread has exited".into()))?;
        Ok(rx)
    }
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        // Closing the channel ends the worker loop; join so the context and model are freed
        // before the handle is gone.
        self.jobs.take();
        if let Some(handle) = self.worker.take() {
            let _ = handle.join();
        }
    }
}

/// Tokenize each label and keep its first token; duplicates within a verdict are merged and a
/// token claimed by two verdicts is an error (its probability would count twice).
fn resolve_labels(
    model: &LlamaModel,
    labels: &LabelTokens,
) -> Result<Vec<ResolvedLabel>, LocalError> {
    let vocab = model.vocab();
    let mut out: Vec<ResolvedLabel> = Vec::new();
    for (field, verdict, strings) in [
        ("labels.first", SlotVerdict::First, &labels.first),
        ("labels.second", SlotVerdict::Second, &labels.second),
        ("labels.tie", SlotVerdict::Tie, &labels.tie),
    ] {
        for label in strings {
            let tokens = vocab.tokenize(label.as_bytes(), false, false);
            let Some(&LlamaToken(token)) = tokens.first() else {
                return Err(LocalError::Label {
                    field: field.to_owned(),
                    label: label.clone(),
                    message: "tokenizes to nothing".into(),
                });
            };
            if let Some(other) = out.iter().find(|r| r.token == token) {
                if other.verdict == verdict {
                    continue;
                }
                return Err(LocalError::Label {
                    field: field.to_owned(),
                    label: label.clone(),
                    message: format!(
                        "its first token {token} is also the first token of `{}` ({:?})",
                        other.label, other.verdict
                    ),
                });
            }
            out.push(ResolvedLabel {
                verdict,
                label: label.clone(),
                token,
            });
        }
    }
    Ok(out)
}

/// Log-softmax of one token over the full vocabulary, in f64. Returns per-label log-probs.
fn label_logprobs(logits: &[f32], labels: &[ResolvedLabel]) -> Vec<LabelLogprob> {
    let max = logits
        .iter()
        .map(|&x| f64::from(x))
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let log_z = max + sum.ln();
    labels
        .iter()
        .map(|l| LabelLogprob {
            verdict: l.verdict,
            label: l.label.clone(),
            token: l.token,
            logprob: usize::try_from(l.token)
                .ok()
                .and_then(|i| logits.get(i))
                .map_or(f64::NAN, |&x| f64::from(x) - log_z),
        })
        .collect()
}

/// Sum the label probabilities per verdict and pick the winner. Exact ties between verdicts
/// resolve in the order first, second, tie (deterministic; practically never happens).
fn aggregate(lps: &[LabelLogprob]) -> (LabelProbs, SlotVerdict, String) {
    let mut probs = LabelProbs {
        first: 0.0,
        second: 0.0,
        tie: 0.0,
    };
    for lp in lps {
        let p = lp.logprob.exp();
        match lp.verdict {
            SlotVerdict::First => probs.first += p,
            SlotVerdict::Second => probs.second += p,
            _ => probs.tie += p,
        }
    }
    if ![probs.first, probs.second, probs.tie]
        .iter()
        .all(|p| p.is_finite())
    {
        return (probs, SlotVerdict::Invalid, String::new());
    }
    let mut verdict = SlotVerdict::First;
    let mut best = probs.first;
    for (v, p) in [
        (SlotVerdict::Second, probs.second),
        (SlotVerdict::Tie, probs.tie),
    ] {
        if p > best {
            verdict = v;
            best = p;
        }
    }
    let raw = lps
        .iter()
        .filter(|l| l.verdict == verdict)
        .fold(None::<&LabelLogprob>, |acc, l| match acc {
            Some(a) if a.logprob >= l.logprob => Some(a),
            _ => Some(l),
        })
        .map(|l| l.label.clone())
        .unwrap_or_default();
    (probs, verdict, raw)
}

/// The verdict whose (trimmed) label the trimmed text starts with; the longest label wins.
fn prefix_verdict(text: &str, labels: &[ResolvedLabel]) -> SlotVerdict {
    let text = text.trim_start();
    labels
        .iter()
        .map(|l| (l.label.trim(), l.verdict))
        .filter(|(l, _)| !l.is_empty() && text.starts_with(l))
        .max_by_key(|(l, _)| l.len())
        .map_or(SlotVerdict::Invalid, |(_, v)| v)
}

/// Apply the GGUF's chat template (llama.cpp's built-in template engine) to an optional system
/// message and a user message, ending with the assistant turn's opening.
fn render_chat(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    system: Option<&str>,
    user: &str,
) -> Result<String, LocalError> {
    let msg = |role: &str, content: &str| {
        LlamaChatMessage::new(role.to_owned(), content.to_owned())
            .map_err(|e| LocalError::Template(format!("{role} message: {e}")))
    };
    let mut chat = Vec::with_capacity(2);
    if let Some(s) = system {
        chat.push(msg("system", s)?);
    }
    chat.push(msg("user", user)?);
    model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| LocalError::Template(e.to_string()))
}

/// Tokenize a rendered prompt the way llama-server does: BOS only if the vocabulary asks for
/// it, and the template's special tokens (e.g. `<|im_start|>`) parsed as such.
fn tokenize_prompt(model: &LlamaModel, prompt: &str) -> Vec<LlamaToken> {
    model.vocab().tokenize(prompt.as_bytes(), true, true)
}

/// How many leading tokens of `next` can keep the KV state `cached` left: their common prefix,
/// rounded down to whole evaluation steps of `chunk` tokens (so every later step covers the
/// same positions as in a fresh evaluation) and leaving at least the last token to evaluate
/// (its logits give the verdict).
fn reusable_prefix(cached: &[LlamaToken], next: &[LlamaToken], chunk: usize) -> usize {
    let common = cached
        .iter()
        .zip(next)
        .take_while(|(a, b)| a == b)
        .count()
        .min(next.len().saturating_sub(1));
    common / chunk * chunk
}

/// Index of the largest logit (lowest index on ties, so greedy decoding is deterministic).
fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// State owned by the worker thread.
struct Worker {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    labels: Arc<Vec<ResolvedLabel>>,
    settings: LocalSettings,
    n_threads: i32,
}

impl Worker {
    fn run(self, jobs: mpsc::Receiver<Job>, ready: mpsc::Sender<Result<(), LocalError>>) {
        let load_err = |message: String| LocalError::Load {
            path: self.settings.model_path.clone(),
            message,
        };
        let backend = match backend() {
            Ok(b) => b,
            Err(e) => {
                let _ = ready.send(Err(load_err(e)));
                return;
            }
        };
        // n_batch = n_ctx so a whole prompt goes into one decode call.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.settings.n_ctx))
            .with_n_batch(self.settings.n_ctx)
            .with_n_threads(self.n_threads)
            .with_n_threads_batch(self.n_threads);
        let mut ctx = match self.model.new_context(backend, params) {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(load_err(format!("cannot create context: {e}"))));
                return;
            }
        };
        let mut batch = LlamaBatch::new(self.settings.eval_chunk as usize, 1);
        // The prompt whose KV state the context holds at positions 0..len (empty: none).
        let mut cached: Vec<LlamaToken> = Vec::new();
        let _ = ready.send(Ok(()));
        while let Ok(job) = jobs.recv() {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.judge(
                    &mut ctx,
                    &mut batch,
                    &mut cached,
                    job.system.as_deref(),
                    &job.user,
                )
            }))
            .unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".into());
                Err(LocalError::Worker(msg))
            });
            let _ = job.reply.send(result);
        }
    }

    fn judge(
        &self,
        ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        cached: &mut Vec<LlamaToken>,
        system: Option<&str>,
        user: &str,
    ) -> Result<LocalOutput, LocalError> {
        let prompt = render_chat(&self.model, &self.template, system, user)?;
        let tokens = tokenize_prompt(&self.model, &prompt);
        let reserve = match self.settings.mode {
            LocalMode::Logits => 1,
            LocalMode::Generate => self.settings.max_tokens,
        };
        if tokens.is_empty() || tokens.len() + reserve as usize > self.settings.n_ctx as usize {
            return Err(LocalError::PromptTooLong {
                tokens: tokens.len(),
                n_ctx: self.settings.n_ctx,
                reserve,
            });
        }

        let chunk = self.settings.eval_chunk as usize;
        let mut reused = if self.settings.prefix_reuse {
            reusable_prefix(cached, &tokens, chunk)
        } else {
            0
        };
        // Whatever happens below, the context no longer holds `cached` as a whole.
        cached.clear();
        if reused > 0 {
            let kept = u32::try_from(reused).map_err(|e| LocalError::Decode(e.to_string()))?;
            // Drop positions >= reused (the previous prompt's tail and any generated tokens);
            // a model whose memory cannot drop a tail (recurrent) starts afresh.
            if !ctx
                .clear_kv_cache_seq(Some(0), Some(kept), None)
                .unwrap_or(false)
            {
                reused = 0;
            }
        }
        if reused == 0 {
            ctx.clear_kv_cache();
        }
        let last = tokens.len() - 1;
        for start in (reused..tokens.len()).step_by(chunk) {
            let end = (start + chunk).min(tokens.len());
            batch.clear();
            for (i, &t) in tokens.iter().enumerate().take(end).skip(start) {
                batch
                    .add(t, i as i32, &[0], i == last)
                    .map_err(|e| LocalError::Decode(e.to_string()))?;
            }
            ctx.decode(batch)
                .map_err(|e| LocalError::Decode(e.to_string()))?;
        }
        let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
        let lps = label_logprobs(logits, &self.labels);
        let greedy_first = argmax(logits);
        let (probs, verdict, raw) = aggregate(&lps);

        let mut out = LocalOutput {
            raw,
            verdict,
            probs,
            label_logprobs: lps,
            prompt_tokens: tokens.len() as u64,
            reused_prompt_tokens: reused as u64,
            completion_tokens: 0,
        };
        if self.settings.mode == LocalMode::Generate {
            let (text, n) = self.generate(ctx, batch, tokens.len(), greedy_first)?;
            out.verdict = prefix_verdict(&text, &self.labels);
            out.raw = text;
            out.completion_tokens = n;
        }
        // Generated tokens sit after the prompt; the next call's reuse stops at the prompt.
        *cached = tokens;
        Ok(out)
    }

    /// Greedy decoding from the already-evaluated prompt, starting with `first` (the argmax of
    /// the prompt's last logits). Stops at end-of-generation or `max_tokens`.
    fn generate(
        &self,
        ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        n_prompt: usize,
        first: usize,
    ) -> Result<(String, u64), LocalError> {
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut next = LlamaToken(i32::try_from(first).unwrap_or(0));
        let mut n = 0u64;
        let mut pos = n_prompt;
        loop {
            if vocab.is_eog(next) {
                break;
            }
            n += 1;
            vocab.token_to_piece_into(next, &mut bytes, false, None);
            if n >= u64::from(self.settings.max_tokens) {
                break;
            }
            batch.clear();
            batch
                .add(next, pos as i32, &[0], true)
                .map_err(|e| LocalError::Decode(e.to_string()))?;
            ctx.decode(batch)
                .map_err(|e| LocalError::Decode(e.to_string()))?;
            pos += 1;
            let t = argmax(ctx.get_logits_ith(0));
            next = LlamaToken(i32::try_from(t).unwrap_or(0));
        }
        Ok((String::from_utf8_lossy(&bytes).into_owned(), n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(verdict: SlotVerdict, label: &str, logprob: f64) -> LabelLogprob {
        LabelLogprob {
            verdict,
            label: label.into(),
            token: 0,
            logprob,
        }
    }

    #[test]
    fn label_logprobs_match_hand_softmax() {
        // logits [0, ln 2, ln 3, ln 4] -> Z = 1+2+3+4 = 10, so p = [0.1, 0.2, 0.3, 0.4].
        let logits = [0.0f32, 2f32.ln(), 3f32.ln(), 4f32.ln()];
        let labels = vec![
            ResolvedLabel {
                verdict: SlotVerdict::First,
                label: "A".into(),
                token: 1,
            },
            ResolvedLabel {
                verdict: SlotVerdict::Second,
                label: "B".into(),
                token: 3,
            },
        ];
        let lps = label_logprobs(&logits, &labels);
        assert!((lps[0].logprob.exp() - 0.2).abs() < 1e-6);
        assert!((lps[1].logprob.exp() - 0.4).abs() < 1e-6);
        let (probs, verdict, raw) = aggregate(&lps);
        assert_eq!(verdict, SlotVerdict::Second);
        assert_eq!(raw, "B");
        assert!((probs.first + probs.second + probs.tie - 0.6).abs() < 1e-6);
    }

    #[test]
    fn aggregate_sums_tokens_per_verdict() {
        // First: 0.3 + 0.25 = 0.55 beats Second 0.4 although " B" is the single best token.
        let lps = [
            lp(SlotVerdict::First, "A", 0.3f64.ln()),
            lp(SlotVerdict::First, " A", 0.25f64.ln()),
            lp(SlotVerdict::Second, " B", 0.4f64.ln()),
        ];
        let (probs, verdict, raw) = aggregate(&lps);
        assert_eq!(verdict, SlotVerdict::First);
        assert_eq!(raw, "A");
        assert!((probs.first - 0.55).abs() < 1e-12);
        assert!((probs.second - 0.4).abs() < 1e-12);
        assert_eq!(probs.tie, 0.0);
    }

    #[test]
    fn non_finite_logits_are_invalid() {
        let lps = [
            lp(SlotVerdict::First, "A", f64::NAN),
            lp(SlotVerdict::Second, "B", -1.0),
        ];
        assert_eq!(aggregate(&lps).1, SlotVerdict::Invalid);
    }

    #[test]
    fn prefix_verdict_prefers_longest_label() {
        let labels = vec![
            ResolvedLabel {
                verdict: SlotVerdict::First,
                label: "A".into(),
                token: 0,
            },
            ResolvedLabel {
                verdict: SlotVerdict::Second,
                label: "B".into(),
                token: 1,
            },
            ResolvedLabel {
                verdict: SlotVerdict::Tie,
                label: "Tie".into(),
                token: 2,
            },
            ResolvedLabel {
                verdict: SlotVerdict::First,
                label: "T".into(),
                token: 3,
            },
        ];
        assert_eq!(
            prefix_verdict("  B is better", &labels),
            SlotVerdict::Second
        );
        assert_eq!(prefix_verdict("Tie.", &labels), SlotVerdict::Tie);
        assert_eq!(prefix_verdict("The first", &labels), SlotVerdict::First);
        assert_eq!(prefix_verdict("neither", &labels), SlotVerdict::Invalid);
    }

    #[test]
    fn reusable_prefix_is_the_common_prefix_in_whole_steps() {
        let t = |xs: &[i32]| xs.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        let cached = t(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // Common prefix 7 (differs at index 7) -> 6 in steps of 2, 6 in steps of 3, 4 in 4s.
        let next = t(&[1, 2, 3, 4, 5, 6, 7, 0, 9, 10]);
        assert_eq!(reusable_prefix(&cached, &next, 2), 6);
        assert_eq!(reusable_prefix(&cached, &next, 3), 6);
        assert_eq!(reusable_prefix(&cached, &next, 4), 4);
        assert_eq!(reusable_prefix(&cached, &next, 8), 0);
        // The same prompt again keeps all but its last token, whose logits are the verdict.
        assert_eq!(reusable_prefix(&cached, &cached, 1), 8);
        assert_eq!(reusable_prefix(&cached, &cached, 4), 8);
        // A prompt that extends the cached one: the whole cached prompt, in whole steps.
        assert_eq!(reusable_prefix(&t(&[1, 2, 3]), &t(&[1, 2, 3, 4]), 1), 3);
        assert_eq!(reusable_prefix(&[], &next, 1), 0);
        assert_eq!(reusable_prefix(&cached, &t(&[5, 1]), 1), 0);
    }

    #[test]
    fn settings_validation_names_the_field() {
        let mut s = LocalSettings::new("/nonexistent.gguf");
        assert_eq!(s.validate(), Ok(()));
        s.labels.tie.clear();
        match s.validate() {
            Err(LocalError::Settings { field, .. }) => assert_eq!(field, "labels.tie"),
            other => panic!("unexpected {other:?}"),
        }
        let mut s = LocalSettings::new("/x.gguf");
        s.mode = LocalMode::Generate;
        s.max_tokens = 0;
        assert!(
            matches!(s.validate(), Err(LocalError::Settings { field, .. }) if field == "max_tokens")
        );
        let mut s = LocalSettings::new("/x.gguf");
        s.eval_chunk = 0;
        assert!(
            matches!(s.validate(), Err(LocalError::Settings { field, .. }) if field == "eval_chunk")
        );
    }

    #[test]
    fn settings_deserialize_with_defaults() {
        let s: LocalSettings =
            toml::from_str("model_path = \"m.gguf\"\nmode = \"generate\"").unwrap();
        assert_eq!(s.n_ctx, 2048);
        assert_eq!(s.mode, LocalMode::Generate);
        assert_eq!(s.labels, LabelTokens::default());
        assert!(toml::from_str::<LocalSettings>("model_path = \"m\"\nbogus = 1").is_err());
    }

    #[test]
    fn missing_model_file_is_reported_with_its_path() {
        let err = LocalModel::load(&LocalSettings::new("/definitely/not/here.gguf")).unwrap_err();
        assert_eq!(
            err,
            LocalError::ModelNotFound {
                path: "/definitely/not/here.gguf".into()
            }
        );
        assert!(err.to_string().contains("/definitely/not/here.gguf"));
    }
}
