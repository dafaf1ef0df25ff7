//! One judge over any chat transport. It owns everything about judging that is not talking to a
//! provider: rendering the template for a request, the verdict parser, the response-cache key,
//! the input-token estimate and the label probabilities from token log-probabilities. Because
//! every real backend is a [`TemplatedJudge`], every real backend caches, and in the same way.
//!
//! The verdict is read from the completion by one private function (`verdict`), so
//! another verdict kind is another parser behind that function; the transports do not change.

use super::chat::{
    ChatBody, ChatCall, ChatMessage, ChatTransport, Completion, GenerationParams, Role,
    TokenLogprob, VerdictSource,
};
use super::config::{Backend, ConfigError};
use super::grade::Grader;
use super::http::build_error;
use super::parser::{Pick, VerdictParser};
use super::template::{LabelTokens, Template};
use super::{
    Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest, LabelProbs,
    SlotVerdict,
};
use async_trait::async_trait;
use std::fmt;

/// A verdict keyword (`first`, `a`, `1`, `second`, `b`, `2`, `tie`, `c`, `draw`, `0`, `invalid`),
/// case-insensitive; `None` for anything else.
pub fn verdict_keyword(text: &str) -> Option<SlotVerdict> {
    match text.trim().to_ascii_lowercase().as_str() {
        "first" | "a" | "1" => Some(SlotVerdict::First),
        "second" | "b" | "2" => Some(SlotVerdict::Second),
        "tie" | "c" | "draw" | "0" => Some(SlotVerdict::Tie),
        "invalid" => Some(SlotVerdict::Invalid),
        _ => None,
    }
}

/// A judge: a template and a verdict parser over a transport.
pub struct TemplatedJudge<T> {
    name: String,
    template: Template,
    parser: VerdictParser,
    /// Parameters shared by every call; the seed is varied per repeat.
    params: GenerationParams,
    /// The label tokens, when label probabilities come from token log-probabilities.
    label_tokens: Option<LabelTokens>,
    /// How a pointwise judge reads its replies (`None` for pairwise judges).
    grader: Option<Grader>,
    transport: T,
}

impl<T: fmt::Debug> fmt::Debug for TemplatedJudge<T> {
    // The transport's Debug never shows a key (HTTP transports print `<redacted>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplatedJudge")
            .field("name", &self.name)
            .field("model", &self.params.model)
            .field("temperature", &self.params.temperature)
            .field("max_tokens", &self.params.max_tokens)
            .field("seed", &self.params.seed)
            .field("template", &self.template.name)
            .field("logprobs", &self.params.top_logprobs)
            .field("transport", &self.transport)
            .finish()
    }
}

/// A configuration error as a build error naming its field.
pub fn config_build_error(judge: &str, err: ConfigError) -> JudgeBuildError {
    let field = err.field().unwrap_or("template").to_string();
    build_error(judge, &field, err.to_string())
}

/// What a transport needs from the judge file before it is built: the validated configuration
/// and the loaded template.
pub struct Prepared {
    /// The template the judge renders.
    pub template: Template,
    parser: VerdictParser,
    grader: Option<Grader>,
}

/// Validate `config` once for every templated backend and load its template and parser. Backend
/// builders call this first and build their transport from the result.
pub fn prepare(config: &JudgeConfig) -> Result<Prepared, JudgeBuildError> {
    let name = &config.name;
    config.validate().map_err(|e| config_build_error(name, e))?;
    let template = config
        .load_template()
        .map_err(|e| config_build_error(name, e))?;
    // A pointwise template has no pairwise labels: its parser is never asked (the grader reads
    // the reply), and its empty regexes compile.
    let parser = VerdictParser::for_config(&template, &config.parser)
        .map_err(|e| build_error(name, &format!("parser.{}", e.field), e.message))?;
    let grader = if config.is_pointwise() {
        Some(Grader::for_config(config, &template).map_err(|e| build_error(name, "kind", e))?)
    } else {
        None
    };
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
    Ok(Prepared {
        template,
        parser,
        grader,
    })
}

/// A transport built from a judge file: what makes `TemplatedJudge::<T>::new` work for it.
pub trait BuildTransport: ChatTransport + Sized {
    /// The backend this transport serves.
    const BACKEND: Backend;

    /// Build the transport from a configuration [`prepare`] has validated, with an explicit
    /// environment lookup for keys and base URLs.
    fn build(
        config: &JudgeConfig,
        prepared: &Prepared,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError>;
}

impl<T: BuildTransport> TemplatedJudge<T> {
    /// Build from configuration, reading keys and base URLs from the process environment.
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// Build from configuration with an explicit environment lookup (tests, embedding).
    pub fn with_env(
        config: &JudgeConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        if config.backend != T::BACKEND {
            return Err(build_error(
                &config.name,
                "backend",
                format!("not {} judge", T::BACKEND.with_article()),
            ));
        }
        let prepared = prepare(config)?;
        let transport = T::build(config, &prepared, &env)?;
        TemplatedJudge::from_parts(config, prepared, transport)
    }
}

impl<T: ChatTransport> TemplatedJudge<T> {
    /// A judge for `config` over `transport`, from what [`prepare`] returned.
    pub fn from_parts(
        config: &JudgeConfig,
        prepared: Prepared,
        transport: T,
    ) -> Result<Self, JudgeBuildError> {
        let label_tokens = if config.logprobs && prepared.grader.is_none() {
            Some(prepared.template.tokens.clone().ok_or_else(|| {
                build_error(
                    &config.name,
                    "logprobs",
                    "the template declares no [labels.tokens]",
                )
            })?)
        } else {
            None
        };
        Ok(Self {
            name: config.name.clone(),
            template: prepared.template,
            parser: prepared.parser,
            params: GenerationParams {
                model: config.model.clone(),
                temperature: config.temperature,
                max_tokens: config.max_tokens,
                seed: config.seed,
                top_logprobs: config.logprobs.then_some(config.top_logprobs),
            },
            label_tokens,
            grader: prepared.grader,
            transport,
        })
    }

    /// Whether an API key was found (the key itself is never exposed).
    pub fn has_api_key(&self) -> bool {
        !self.transport.redactor().is_empty()
    }

    /// The messages and parameters of `request`'s call.
    pub fn call_parts(&self, request: &JudgeRequest) -> (Vec<ChatMessage>, GenerationParams) {
        (self.messages(request), self.params(request))
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Where requests go (URL, command line, model file).
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    /// The prompt template in use (its `sha256()` belongs in run metadata).
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The messages sent for `request`: the one place a request is rendered, so everything the
    /// request carries (answers, context) reaches the template through it.
    pub fn messages(&self, request: &JudgeRequest) -> Vec<ChatMessage> {
        let rendered = match &self.grader {
            // One answer; `{{criteria}}` shows a rubric's criteria. No context edit applies to
            // a single answer (the plan never asks for one).
            Some(grader) => {
                self.template
                    .render(&request.prompt, &request.first, &grader.criteria_text())
            }
            None => self.template.render_with(
                &request.prompt,
                &request.first,
                &request.second,
                &request.context,
            ),
        };
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = rendered.system {
            messages.push(ChatMessage {
                role: Role::System,
                content: system,
            });
        }
        messages.push(ChatMessage {
            role: Role::User,
            content: rendered.user,
        });
        messages
    }

    /// The generation parameters of `request`'s call (the seed varied by repeat).
    pub fn params(&self, request: &JudgeRequest) -> GenerationParams {
        GenerationParams {
            seed: super::openai::request_seed(self.params.seed, request.repeat),
            ..self.params.clone()
        }
    }

    /// Read the verdict and label probabilities from a completion, after removing secrets from
    /// every text in it.
    pub fn reply(&self, mut completion: Completion) -> JudgeReply {
        let redactor = self.transport.redactor();
        // Transports redact raw bytes; decoding JSON escapes can bring a secret back, so the
        // decoded texts are checked again.
        let mut redacted = completion.redacted;
        redacted |= redactor.redact_in_place(&mut completion.text);
        if let Some(grader) = &self.grader {
            let grades = if completion.refused {
                grader.unparseable()
            } else {
                let text = match &mut completion.stated_verdict {
                    None => None,
                    Some(VerdictSource::Text(t)) | Some(VerdictSource::Stated(t)) => {
                        redacted |= redactor.redact_in_place(t);
                        Some(t.clone())
                    }
                };
                grader.grade(
                    text.as_deref().unwrap_or(&completion.text),
                    completion.logprobs.as_deref(),
                )
            };
            return JudgeReply {
                raw: completion.text,
                verdict: SlotVerdict::Invalid,
                usage: completion.usage,
                label_probs: None,
                redacted,
                grades: Some(grades),
            };
        }
        let verdict = self.verdict(&mut completion, &mut redacted);
        let label_probs = match (&self.label_tokens, &completion.logprobs) {
            (Some(tokens), Some(content)) => label_probs(
                content,
                tokens,
                matches!(self.parser.pick(), Pick::Last | Pick::Final),
            ),
            _ => completion.label_probs,
        };
        JudgeReply {
            raw: completion.text,
            verdict,
            usage: completion.usage,
            label_probs,
            redacted,
            grades: None,
        }
    }

    /// The pairwise verdict of a completion.
    fn verdict(&self, completion: &mut Completion, redacted: &mut bool) -> SlotVerdict {
        if completion.refused {
            // A refusal is an answer, not a transport fault: counted as an invalid verdict.
            return SlotVerdict::Invalid;
        }
        match &mut completion.stated_verdict {
            None => self.parser.parse(&completion.text),
            Some(VerdictSource::Text(text)) => {
                *redacted |= self.transport.redactor().redact_in_place(text);
                self.parser.parse(text)
            }
            Some(VerdictSource::Stated(word)) => {
                *redacted |= self.transport.redactor().redact_in_place(word);
                verdict_keyword(word).unwrap_or_else(|| self.parser.parse(word))
            }
        }
    }
}

#[async_trait]
impl<T: ChatTransport> Judge for TemplatedJudge<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let (messages, params) = self.call_parts(request);
        let call = ChatCall::new(request, &messages, &params);
        let completion = self.transport.complete(&call).await?;
        Ok(self.reply(completion))
    }

    /// A hash of the backend id, the endpoint, the rendered messages with every generation
    /// parameter, and the repeat index. For `openai` this is the request body it sends, so the
    /// key is the one earlier versions stored.
    fn cache_key(&self, request: &JudgeRequest) -> Option<String> {
        use sha2::{Digest, Sha256};
        let (messages, params) = self.call_parts(request);
        // The OpenAI request body: for openai the key is the one earlier versions stored.
        let body = serde_json::to_string(&ChatBody::new(&messages, &params)).ok()?;
        let mut hasher = Sha256::new();
        for part in [
            self.transport.backend(),
            self.transport.endpoint(),
            body.as_str(),
            &request.repeat.to_string(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        Some(hex::encode(hasher.finalize()))
    }

    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        // About four characters a token for English text; budgets only need the right size.
        let chars: usize = self.messages(request).iter().map(|m| m.content.len()).sum();
        (chars / 4) as u64
    }
}

/// Label probabilities at one generated position: the first non-blank generated token, or,
/// with `tokens.after`, the token generated right after text ending in `after` (the last such
/// position when `use_last`, matching a `last` or `final` pick rule). Each label's probability
/// is the summed probability of its tokens among the position's alternatives (plus the sampled
/// token). `None`
/// when there is no such position or none of the label tokens is among the alternatives.
/// Results are finite, non-negative and sum to at most 1.
pub fn label_probs(
    content: &[TokenLogprob],
    tokens: &LabelTokens,
    use_last: bool,
) -> Option<LabelProbs> {
    let alternatives = super::grade::alternatives_at(content, tokens.after.as_deref(), use_last)?;
    let (mut first, mut second, mut tie) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut matched = false;
    for (token, p) in alternatives {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::chat::TopLogprob;

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
    fn verdict_keywords() {
        assert_eq!(verdict_keyword(" B "), Some(SlotVerdict::Second));
        assert_eq!(verdict_keyword("draw"), Some(SlotVerdict::Tie));
        assert_eq!(verdict_keyword("[[A]]"), None);
    }
}
