//! The prepare step of LLM-rewritten artifacts: before any judge call, every answer a rewrite
//! artifact is applied to is rewritten once by the artifact's rewriter (and, when configured,
//! checked by its checker model), each answer stored in the run store as soon as it arrives.
//!
//! A rewrite is keyed by what determines it (rewriter name, model, instruction hash, parameters,
//! original text; see [`rewrite_key`]), so a resumed or repeated run finds it in the run store
//! (or the shared response cache) and sends nothing. The judges' calls are built from the stored
//! rewrites, so every judge of the audit sees the same text, and `report` re-renders from them.

use super::cache::ResponseCache;
use super::store::{RunStore, StoreError};
use crate::dataset::Pair;
use crate::design::{self, PerturbedAnswers, Plan, Side};
use crate::judge::chat::{ChatCall, ChatMessage, ChatTransport, GenerationParams, Role};
use crate::judge::config::Backend;
use crate::judge::templated::{self, BuildTransport};
use crate::judge::{
    JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest, SlotVerdict, TokenUsage,
    anthropic, command, openai,
};
use crate::perturb::rewrite::{self, LengthBounds, rewrite_key};
use crate::perturb::{Artifact, Operation, Perturbation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Longest wait between retries of a rewrite call, whatever the server asks for.
const MAX_RETRY_WAIT_SECS: u64 = 30;

/// The rewriter (and optional checker) of one rewrite artifact, as stored in the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriterSet {
    /// The judge file whose backend writes the rewrites.
    pub rewriter: JudgeConfig,
    /// The file it was read from (its relative template path resolves there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewriter_path: Option<std::path::PathBuf>,
    /// The judge file whose backend answers "same claims?", if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker: Option<JudgeConfig>,
    /// The file the checker was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker_path: Option<std::path::PathBuf>,
}

/// One stored answer of the prepare step: a rewrite (`role = "rewrite"`, `answer` is the
/// rewritten text) or a meaning check (`role = "check"`, `answer` is the checker's reply about
/// `original` and `rewritten`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRewrite {
    /// The key ([`rewrite_key`] of the inputs).
    pub key: String,
    /// `rewrite` or `check`.
    pub role: String,
    /// Artifact that first asked for it.
    pub artifact: String,
    /// Pair that first asked for it.
    pub pair_id: String,
    /// Side of that pair (`a`/`b`).
    pub side: String,
    /// Rewriter (or checker) judge name.
    pub rewriter: String,
    /// Its model.
    pub model: String,
    /// SHA-256 of the instruction template (of the checker prompt for a check).
    pub instruction_hash: String,
    /// Instruction parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The original answer.
    pub original: String,
    /// The rewritten answer (for a check: the text it was asked about; for a rewrite: empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewritten: String,
    /// What the model answered (secrets removed).
    pub answer: String,
    /// Token usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// Cost of the call (USD, from the judge file's pricing).
    #[serde(default)]
    pub cost_usd: f64,
}

/// What the prepare step did in this session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareStats {
    /// Rewrite and check calls sent to a backend.
    pub sent: usize,
    /// Answered from the shared response cache.
    pub cache_hits: usize,
    /// Calls that failed after their retries (the items stay unrewritten; a resume retries).
    pub failed: Vec<String>,
}

/// One item of a rewrite artifact the plan uses.
struct Item<'a> {
    artifact: &'a Artifact,
    pair_index: usize,
    side: Side,
}

fn items<'a>(plan: &Plan, artifacts: &'a [Artifact]) -> Vec<Item<'a>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for call in &plan.calls {
        let (Some(id), Some(side)) = (&call.artifact, call.side) else {
            continue;
        };
        let Some(artifact) = artifacts.iter().find(|a| &a.id == id && a.is_rewrite()) else {
            continue;
        };
        if seen.insert((id.clone(), call.pair_index, side.letter())) {
            out.push(Item {
                artifact,
                pair_index: call.pair_index,
                side,
            });
        }
    }
    out
}

/// The fields of a rewrite operation (panics on other artifacts: callers filter).
struct Spec<'a> {
    instruction: &'a str,
    params: &'a BTreeMap<String, String>,
    bounds: LengthBounds,
}

fn spec(artifact: &Artifact) -> Spec<'_> {
    match &artifact.operation {
        Operation::Rewrite {
            instruction,
            params,
            min_length_percent,
            max_length_percent,
            skip_guards,
            ..
        } => Spec {
            instruction,
            params,
            bounds: LengthBounds {
                min_percent: *min_length_percent,
                max_percent: *max_length_percent,
                refusal: !skip_guards.iter().any(|g| g == "refusal"),
                names: !skip_guards.iter().any(|g| g == "names"),
            },
        },
        _ => unreachable!("only rewrite artifacts have a rewrite spec"),
    }
}

const CHECK_ID: &str = "checker: same claims?";

fn keys(
    set: &RewriterSet,
    artifact: &Artifact,
    original: &str,
    rewritten: &str,
) -> (String, String) {
    let s = spec(artifact);
    let r = rewrite_key(
        &set.rewriter.name,
        &set.rewriter.model,
        &rewrite::instruction_hash(s.instruction),
        s.params,
        original,
    );
    let c = set.checker.as_ref().map_or_else(String::new, |c| {
        rewrite_key(
            &c.name,
            &c.model,
            &rewrite::instruction_hash(CHECK_ID),
            &BTreeMap::new(),
            &format!("{original}\0{rewritten}"),
        )
    });
    (r, c)
}

/// The perturbation of one item from the stored answers: the rewrite when it passes the guards
/// and the checker (if any) said yes, else the original with the reason.
fn perturbation(
    set: Option<&RewriterSet>,
    artifact: &Artifact,
    original: &str,
    stored: &BTreeMap<String, StoredRewrite>,
) -> Perturbation {
    let Some(set) = set else {
        return artifact.apply(original, 0, "");
    };
    let (rkey, _) = keys(set, artifact, original, "");
    let Some(rw) = stored.get(&rkey) else {
        return artifact.apply(original, 0, "");
    };
    let rewritten = rw.answer.trim();
    let mut reason = rewrite::guard(original, rewritten, spec(artifact).bounds);
    if reason.is_none() && set.checker.is_some() {
        let (_, ckey) = keys(set, artifact, original, rewritten);
        reason = match stored.get(&ckey).map(|c| rewrite::checker_says(&c.answer)) {
            None => Some("no stored meaning check".into()),
            Some(Some(true)) => None,
            Some(Some(false)) => Some("checker: different claims".into()),
            Some(None) => Some("checker: unreadable answer".into()),
        };
    }
    Artifact::with_rewrite(original, rewritten, reason)
}

/// Put the stored rewrites of every rewrite artifact into `perturbed` (items without one stay
/// excluded as "no stored rewrite"). Pure: the same store gives the same answers.
pub fn fill(
    perturbed: &mut PerturbedAnswers,
    plan: &Plan,
    pairs: &[Pair],
    artifacts: &[Artifact],
    sets: &BTreeMap<String, RewriterSet>,
    stored: &BTreeMap<String, StoredRewrite>,
) {
    for item in items(plan, artifacts) {
        let original = design::answer(&pairs[item.pair_index], item.side);
        let p = perturbation(sets.get(&item.artifact.id), item.artifact, original, stored);
        perturbed.set(&item.artifact.id, item.pair_index, item.side, p);
    }
}

/// A rewriter's transport with its generation parameters.
struct Writer {
    config: JudgeConfig,
    transport: Arc<dyn ChatTransport>,
}

fn transport(config: &JudgeConfig) -> Result<Arc<dyn ChatTransport>, JudgeBuildError> {
    fn make<T: BuildTransport + 'static>(
        config: &JudgeConfig,
    ) -> Result<Arc<dyn ChatTransport>, JudgeBuildError> {
        let prepared = templated::prepare(config)?;
        Ok(Arc::new(T::build(config, &prepared, &|k| {
            std::env::var(k).ok()
        })?))
    }
    match config.backend {
        Backend::Openai => make::<openai::OpenAiTransport>(config),
        Backend::Anthropic => make::<anthropic::AnthropicTransport>(config),
        Backend::Command => make::<command::CommandTransport>(config),
        _ => Err(JudgeBuildError::Invalid {
            judge: config.name.clone(),
            field: "backend".into(),
            message: "a rewriter or checker must generate text: use an `openai`, `anthropic` \
                      or `command` judge file"
                .into(),
        }),
    }
}

/// Send one generation with retries; the answer has its secrets removed.
async fn generate(
    writer: &Writer,
    call_id: &str,
    text: &str,
) -> Result<(String, Option<TokenUsage>), JudgeError> {
    let request = JudgeRequest {
        pair_id: String::new(),
        call_id: call_id.to_string(),
        prompt: String::new(),
        first: String::new(),
        second: String::new(),
        repeat: 0,
        sim: Default::default(),
        context: Vec::new(),
    };
    let messages = [ChatMessage {
        role: Role::User,
        content: text.to_string(),
    }];
    let params = GenerationParams {
        model: writer.config.model.clone(),
        temperature: writer.config.temperature,
        max_tokens: writer.config.max_tokens,
        seed: writer.config.seed,
        top_logprobs: None,
    };
    let mut attempt = 0;
    loop {
        match writer
            .transport
            .complete(&ChatCall::new(&request, &messages, &params))
            .await
        {
            Ok(mut c) => {
                writer.transport.redactor().redact_in_place(&mut c.text);
                return Ok((c.text, c.usage));
            }
            Err(JudgeError::Retryable { retry_after, .. })
                if attempt < writer.config.max_retries =>
            {
                attempt += 1;
                let wait = retry_after
                    .unwrap_or(std::time::Duration::from_millis(200 << attempt.min(6)))
                    .min(std::time::Duration::from_secs(MAX_RETRY_WAIT_SECS));
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn cost(config: &JudgeConfig, usage: &Option<TokenUsage>) -> f64 {
    match (usage, &config.pricing) {
        (Some(u), Some(p)) => super::cost_usd(u, p),
        _ => 0.0,
    }
}

fn cache_reply(r: &StoredRewrite) -> JudgeReply {
    JudgeReply {
        raw: r.answer.clone(),
        verdict: SlotVerdict::Invalid,
        usage: r.usage,
        label_probs: None,
        redacted: false,
        grades: None,
    }
}

/// Rewrite (and check) every item the plan uses that has no stored answer yet, storing each
/// answer as it arrives. Calls go one at a time per artifact in plan order, so a rule-based
/// loopback rewriter and a request log line up with the plan.
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    plan: &Plan,
    pairs: &[Pair],
    artifacts: &[Artifact],
    sets: &BTreeMap<String, RewriterSet>,
    out: &Path,
    cache_dir: Option<&Path>,
    max_cost: Option<f64>,
) -> Result<PrepareStats, StoreError> {
    let store = RunStore::open(out)?;
    let mut stored = store.rewrites()?;
    // Spend of earlier sessions counts against the budget, as the judges' does.
    let mut budget = Spend {
        max: max_cost,
        spent: usage(&stored).cost_usd,
    };
    let mut cache = cache_dir.and_then(|d| ResponseCache::open(d).ok());
    let mut stats = PrepareStats::default();
    let mut writers: HashMap<String, Option<Arc<Writer>>> = HashMap::new();
    let paths: HashMap<String, Option<std::path::PathBuf>> = sets
        .values()
        .flat_map(|s| {
            [
                Some((s.rewriter.name.clone(), s.rewriter_path.clone())),
                s.checker
                    .as_ref()
                    .map(|c| (c.name.clone(), s.checker_path.clone())),
            ]
        })
        .flatten()
        .collect();
    let mut writer = |config: &JudgeConfig, failed: &mut Vec<String>| -> Option<Arc<Writer>> {
        let mut config = config.clone();
        config.source_path = paths.get(&config.name).cloned().flatten();
        let config = &config;
        writers
            .entry(format!("{}\0{}", config.name, config.model))
            .or_insert_with(|| match transport(config) {
                Ok(t) => Some(Arc::new(Writer {
                    config: config.clone(),
                    transport: t,
                })),
                Err(e) => {
                    failed.push(e.to_string());
                    None
                }
            })
            .clone()
    };
    for item in items(plan, artifacts) {
        let Some(set) = sets.get(&item.artifact.id) else {
            continue;
        };
        let pair = &pairs[item.pair_index];
        let original = design::answer(pair, item.side);
        let s = spec(item.artifact);
        let (rkey, _) = keys(set, item.artifact, original, "");
        let base = StoredRewrite {
            key: rkey.clone(),
            role: "rewrite".into(),
            artifact: item.artifact.id.clone(),
            pair_id: pair.id.clone(),
            side: item.side.letter().to_string(),
            rewriter: set.rewriter.name.clone(),
            model: set.rewriter.model.clone(),
            instruction_hash: rewrite::instruction_hash(s.instruction),
            params: s.params.clone(),
            original: original.to_string(),
            rewritten: String::new(),
            answer: String::new(),
            usage: None,
            cost_usd: 0.0,
        };
        if !stored.contains_key(&rkey) {
            let prompt = rewrite::render_instruction(s.instruction, s.params, original);
            let call_id = format!("rewrite/{}/{}/{}", item.artifact.id, pair.id, base.side);
            if let Some(r) = ask(
                &mut cache,
                &mut stats,
                &mut budget,
                &mut writer,
                &set.rewriter,
                &call_id,
                &prompt,
                base,
            )
            .await
            {
                store.insert_rewrite(&r)?;
                stored.insert(rkey.clone(), r);
            }
        }
        let Some(checker) = &set.checker else {
            continue;
        };
        let Some(rw) = stored.get(&rkey) else {
            continue;
        };
        let rewritten = rw.answer.trim().to_string();
        // A rewrite the guards reject is excluded anyway: the checker is not paid to confirm it.
        if rewrite::guard(original, &rewritten, s.bounds).is_some() {
            continue;
        }
        let (_, ckey) = keys(set, item.artifact, original, &rewritten);
        if stored.contains_key(&ckey) {
            continue;
        }
        let check = StoredRewrite {
            key: ckey.clone(),
            role: "check".into(),
            rewriter: checker.name.clone(),
            model: checker.model.clone(),
            instruction_hash: rewrite::instruction_hash(CHECK_ID),
            params: BTreeMap::new(),
            rewritten: rewritten.clone(),
            ..rw.clone()
        };
        let prompt = rewrite::checker_prompt(original, &rewritten);
        let call_id = format!("check/{}/{}/{}", item.artifact.id, pair.id, check.side);
        if let Some(r) = ask(
            &mut cache,
            &mut stats,
            &mut budget,
            &mut writer,
            checker,
            &call_id,
            &prompt,
            check,
        )
        .await
        {
            store.insert_rewrite(&r)?;
            stored.insert(ckey, r);
        }
    }
    Ok(stats)
}

/// The cost budget of the prepare step (`--max-cost`).
struct Spend {
    max: Option<f64>,
    spent: f64,
}

impl Spend {
    /// True when a call of at most `estimate` still fits.
    fn fits(&self, estimate: f64) -> bool {
        self.max.is_none_or(|max| self.spent + estimate <= max)
    }
}

/// The most a call can cost: the prompt at about four characters a token, and `max_tokens` out.
fn worst_case(config: &JudgeConfig, prompt: &str) -> f64 {
    let usage = Some(TokenUsage {
        input_tokens: (prompt.len() / 4 + 1) as u64,
        output_tokens: config.max_tokens as u64,
    });
    cost(config, &usage)
}

/// Answer `record` from the shared cache or by one call; `None` when the call failed or would
/// exceed the budget (counted in `stats.failed`; a resume asks again).
#[allow(clippy::too_many_arguments)]
async fn ask(
    cache: &mut Option<ResponseCache>,
    stats: &mut PrepareStats,
    budget: &mut Spend,
    writer: &mut impl FnMut(&JudgeConfig, &mut Vec<String>) -> Option<Arc<Writer>>,
    config: &JudgeConfig,
    call_id: &str,
    prompt: &str,
    mut record: StoredRewrite,
) -> Option<StoredRewrite> {
    let cache_key = format!("rewrite:{}", record.key);
    if let Some(hit) = cache
        .as_ref()
        .and_then(|c| c.lookup(&[cache_key.as_str()]).ok())
        .and_then(|mut m| m.remove(&cache_key))
    {
        stats.cache_hits += 1;
        record.answer = hit.raw;
        record.usage = hit.usage;
        // Paid for by the run that stored it.
        record.cost_usd = 0.0;
        return Some(record);
    }
    if !budget.fits(worst_case(config, prompt)) {
        stats
            .failed
            .push(format!("{call_id}: not sent, the cost budget is reached"));
        return None;
    }
    let w = writer(config, &mut stats.failed)?;
    stats.sent += 1;
    match generate(&w, call_id, prompt).await {
        Ok((answer, usage)) => {
            record.answer = answer;
            record.cost_usd = cost(config, &usage);
            budget.spent += record.cost_usd;
            record.usage = usage;
            if let Some(c) = cache.as_mut() {
                // A cache that cannot be written costs a call later, never a wrong answer.
                let _ = c.store(&[(cache_key, cache_reply(&record))]);
            }
            Some(record)
        }
        Err(e) => {
            stats.failed.push(format!("{call_id}: {e}"));
            None
        }
    }
}

/// Usage of the prepare step over the whole run, from the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewriteUsage {
    /// Stored rewrites.
    pub rewrites: u64,
    /// Stored meaning checks.
    pub checks: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost (USD).
    pub cost_usd: f64,
}

/// Sum the stored rewrites' usage.
pub fn usage(stored: &BTreeMap<String, StoredRewrite>) -> RewriteUsage {
    let mut u = RewriteUsage::default();
    for r in stored.values() {
        if r.role == "check" {
            u.checks += 1;
        } else {
            u.rewrites += 1;
        }
        if let Some(t) = r.usage {
            u.input_tokens += t.input_tokens;
            u.output_tokens += t.output_tokens;
        }
        u.cost_usd += r.cost_usd;
    }
    u
}

/// What the rewrite step of a plan will ask at most (before any store or cache lookup).
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteEstimate {
    /// Artifact id.
    pub artifact: String,
    /// Rewriter judge name.
    pub rewriter: String,
    /// Answers to rewrite (one call each, plus one check each when a checker is set).
    pub calls: usize,
    /// Worst-case cost of the rewrites (prompt/4 tokens in, `max_tokens` out), when priced.
    pub cost_usd: Option<f64>,
}

/// The rewrite calls of a plan, per rewrite artifact.
pub fn estimate(
    plan: &Plan,
    pairs: &[Pair],
    artifacts: &[Artifact],
    sets: &BTreeMap<String, RewriterSet>,
) -> Vec<RewriteEstimate> {
    let mut out: Vec<RewriteEstimate> = Vec::new();
    for item in items(plan, artifacts) {
        let Some(set) = sets.get(&item.artifact.id) else {
            continue;
        };
        let s = spec(item.artifact);
        let original = design::answer(&pairs[item.pair_index], item.side);
        let prompt = rewrite::render_instruction(s.instruction, s.params, original);
        let cost = set
            .rewriter
            .pricing
            .map(|_| worst_case(&set.rewriter, &prompt));
        match out.iter_mut().find(|e| e.artifact == item.artifact.id) {
            Some(e) => {
                e.calls += 1;
                e.cost_usd = e.cost_usd.zip(cost).map(|(a, b)| a + b);
            }
            None => out.push(RewriteEstimate {
                artifact: item.artifact.id.clone(),
                rewriter: set.rewriter.name.clone(),
                calls: 1,
                cost_usd: cost,
            }),
        }
    }
    out
}
