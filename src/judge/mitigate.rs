//! Mitigations the judge layer applies to every request (declared in the judge file, issue 14):
//!
//! - `normalise = true`: before the judge sees them, both answers lose every text a built-in
//!   artifact inserts (the catalog's apology, citation, authority phrases, fillers and
//!   restatement lead-ins) and their formatting (markdown emphasis, heading and list markers;
//!   whitespace runs collapsed), so an artifact cannot move a verdict it cannot be shown.
//! - `bias_instruction = "..."`: the sentence is added to the system message of every request
//!   ([`DEFAULT_BIAS_INSTRUCTION`] is the suggested one).
//! - `reference_guided = true`: the pair's reference answer (the dataset's optional `reference`
//!   field, attached by the audit) is shown after the user message with "A reference answer is
//!   given; judge each answer against it." A request whose pair has no reference fails
//!   permanently instead of being judged unguided (the audit refuses such a dataset before
//!   any call, [`attach_references`]).
//! - `swap_and_confirm = true`: every comparison is asked in both orders; the verdict counts
//!   only when both orders pick the same answer, otherwise it is a tie; an unparseable reply in
//!   either order makes the verdict unparseable (never coerced). Two calls per verdict.
//! - `majority_of_templates = true` (with `templates = [...]`): every request is asked with the
//!   primary template and each variant ([`TemplateMajorityJudge`]); the verdict is the strict
//!   majority of the valid verdicts, a tie without one, unparseable when none is valid. One
//!   call per template; the other mitigations apply to each template's call.
//!
//! The wrapper is transparent otherwise: same name, same simulated flag, the cache key of the
//! transformed request(s).

use super::template::ContextEdit;
use super::{Judge, JudgeError, JudgeReply, JudgeRequest, Slot, SlotVerdict, TokenUsage};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The suggested bias instruction (`bias_instruction = true` in audit.toml's `[mitigations]`).
pub const DEFAULT_BIAS_INSTRUCTION: &str = "Do not let length, apologies, citations or the order \
of answers influence you.";

/// The judge-layer mitigations of one judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mitigations {
    /// Ask both orders; disagreement is a tie.
    pub swap_and_confirm: bool,
    /// Strip artifact phrases and formatting from both answers.
    pub normalise: bool,
    /// A sentence added to the system message.
    pub bias_instruction: Option<String>,
    /// Ask every template and take the majority ([`TemplateMajorityJudge`]; set only for a
    /// judge with `templates`).
    pub majority_of_templates: bool,
    /// Reference-guided judging: show the judge the pair's reference answer, from
    /// `references` (pair id → reference answer).
    pub reference_guided: bool,
    /// The dataset's reference answers by pair id (filled by the audit for a reference-guided
    /// judge).
    pub references: std::collections::BTreeMap<String, String>,
}

impl Mitigations {
    /// True when nothing is applied.
    pub fn is_empty(&self) -> bool {
        *self == Mitigations::default()
    }
}

/// `text` with every built-in artifact's inserted text removed and its formatting collapsed.
pub fn normalise(text: &str) -> String {
    let mut t = text.to_string();
    for m in super::sim::inserted_texts() {
        if t.contains(m.as_str()) {
            t = t.replace(m.as_str(), " ");
        }
    }
    let mut lines = Vec::new();
    for line in t.lines() {
        let mut l = line.trim_start();
        // Heading and list markers carry no content.
        l = l.trim_start_matches('#');
        for marker in ["- ", "* ", "+ "] {
            if let Some(rest) = l.trim_start().strip_prefix(marker) {
                l = rest;
            }
        }
        let l = l.replace("**", "").replace("__", "").replace('`', "");
        lines.push(l);
    }
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn other(slot: Slot) -> Slot {
    match slot {
        Slot::First => Slot::Second,
        Slot::Second => Slot::First,
    }
}

/// The same edit favouring the other slot (the answers swap places).
fn swapped_edit(e: &ContextEdit) -> ContextEdit {
    let mut e = e.clone();
    match &mut e {
        ContextEdit::System { chosen, .. }
        | ContextEdit::Note { chosen, .. }
        | ContextEdit::Names { chosen, .. }
        | ContextEdit::VerdictLine { chosen, .. } => *chosen = other(*chosen),
        ContextEdit::Reference { .. } => {}
    }
    e
}

/// A judge with judge-layer mitigations.
pub struct MitigatedJudge {
    inner: Arc<dyn Judge>,
    mitigations: Mitigations,
    /// Swap-and-confirm: the first order's reply of a call whose swapped request failed, kept
    /// until the runner's retry of that call, so a paid answer is not asked for again. Removed
    /// when the call completes; at most one entry per call in flight.
    first_replies: Mutex<HashMap<String, JudgeReply>>,
}

impl MitigatedJudge {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Judge>, mitigations: Mitigations) -> Self {
        MitigatedJudge {
            inner,
            mitigations,
            first_replies: Mutex::new(HashMap::new()),
        }
    }

    /// The request the judge is sent (normalised answers, the instruction added).
    fn prepared(&self, request: &JudgeRequest) -> JudgeRequest {
        let mut r = request.clone();
        if self.mitigations.normalise {
            r.first = normalise(&r.first);
            r.second = normalise(&r.second);
        }
        if self.mitigations.reference_guided
            && let Some(text) = self.mitigations.references.get(&r.pair_id)
        {
            r.context
                .push(ContextEdit::Reference { text: text.clone() });
        }
        if let Some(text) = &self.mitigations.bias_instruction {
            r.context.push(ContextEdit::System {
                // `{chosen}` would name a slot: an instruction never favours one.
                text: text.replace("{chosen}", ""),
                chosen: Slot::First,
            });
        }
        r
    }

    /// The other order of a prepared request (its own call id, so its noise is its own).
    fn swapped(request: &JudgeRequest) -> JudgeRequest {
        let mut r = request.clone();
        std::mem::swap(&mut r.first, &mut r.second);
        r.call_id = format!("{}#swapped", request.call_id);
        r.context = request.context.iter().map(swapped_edit).collect();
        r
    }
}

/// Give every reference-guided judge of `judges` the reference answers of `pairs`
/// (`references`: pair id → reference, read from the dataset's `reference` field). An error,
/// in words, when a reference-guided judge is asked for and some pair has no reference: the
/// mitigation would otherwise be measured on pairs it was never applied to.
pub fn attach_references<'a>(
    judges: impl IntoIterator<Item = &'a mut super::JudgeConfig>,
    pairs: &[crate::dataset::Pair],
    references: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let mut judges: Vec<&mut super::JudgeConfig> =
        judges.into_iter().filter(|j| j.reference_guided).collect();
    let Some(first) = judges.first() else {
        return Ok(());
    };
    let missing: Vec<&str> = pairs
        .iter()
        .filter(|p| !references.contains_key(&p.id))
        .map(|p| p.id.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "reference-guided judging (`{}`): {} of {} pairs have no reference answer (the \
             dataset's optional `reference` field, JSONL or CSV), e.g. `{}`; add a reference to \
             every pair or drop the mitigation",
            first.name,
            missing.len(),
            pairs.len(),
            missing[0]
        ));
    }
    let used: std::collections::BTreeMap<String, String> = pairs
        .iter()
        .filter_map(|p| Some((p.id.clone(), references.get(&p.id)?.clone())))
        .collect();
    for j in judges.iter_mut() {
        j.references = used.clone();
    }
    Ok(())
}

/// Combine the verdicts of both orders (`b` in swapped slot terms).
pub fn confirm(a: SlotVerdict, b: SlotVerdict) -> SlotVerdict {
    let b = match b {
        SlotVerdict::First => SlotVerdict::Second,
        SlotVerdict::Second => SlotVerdict::First,
        v => v,
    };
    match (a, b) {
        (SlotVerdict::Invalid, _) | (_, SlotVerdict::Invalid) => SlotVerdict::Invalid,
        (x, y) if x == y => x,
        _ => SlotVerdict::Tie,
    }
}

/// The majority over templates of one call's verdicts (all in the same slot terms): the strict
/// majority of the valid ones, a tie without one, `Invalid` when none is valid.
pub fn template_majority(verdicts: &[SlotVerdict]) -> SlotVerdict {
    let valid: Vec<SlotVerdict> = verdicts
        .iter()
        .copied()
        .filter(|v| *v != SlotVerdict::Invalid)
        .collect();
    if valid.is_empty() {
        return SlotVerdict::Invalid;
    }
    [SlotVerdict::First, SlotVerdict::Second, SlotVerdict::Tie]
        .into_iter()
        .find(|want| 2 * valid.iter().filter(|v| *v == want).count() > valid.len())
        .unwrap_or(SlotVerdict::Tie)
}

/// A judge that asks every request with each of its templates (one judge per template, the
/// primary first) and answers with their majority ([`template_majority`]).
pub struct TemplateMajorityJudge {
    name: String,
    members: Vec<Arc<dyn Judge>>,
    /// Replies of a call whose later template failed, kept until the runner's retry of that
    /// call, so paid answers are not asked for again. Removed when the call completes.
    kept: Mutex<HashMap<String, Vec<Option<JudgeReply>>>>,
}

impl TemplateMajorityJudge {
    /// The judge `name` over `members` (one per template, the primary first).
    pub fn new(name: impl Into<String>, members: Vec<Arc<dyn Judge>>) -> Self {
        TemplateMajorityJudge {
            name: name.into(),
            members,
            kept: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Judge for TemplateMajorityJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        self.members.iter().all(|m| m.simulated())
    }

    fn learn(&self, pairs: &[crate::dataset::Pair]) {
        for m in &self.members {
            m.learn(pairs);
        }
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let mut replies = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.call_id)
            .unwrap_or_else(|| self.members.iter().map(|_| None).collect());
        for (member, reply) in self.members.iter().zip(replies.iter_mut()) {
            if reply.is_some() {
                continue;
            }
            match member.judge(request).await {
                Ok(r) => *reply = Some(r),
                Err(e) => {
                    self.kept
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(request.call_id.clone(), replies);
                    return Err(e);
                }
            }
        }
        let replies: Vec<JudgeReply> = replies.into_iter().flatten().collect();
        let verdicts: Vec<SlotVerdict> = replies.iter().map(|r| r.verdict).collect();
        let usage = replies
            .iter()
            .filter_map(|r| r.usage)
            .reduce(|a, b| TokenUsage {
                input_tokens: a.input_tokens + b.input_tokens,
                output_tokens: a.output_tokens + b.output_tokens,
            });
        let raw = replies
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}: {}", i + 1, r.raw))
            .collect::<Vec<_>>()
            .join(" | ");
        Ok(JudgeReply {
            raw: format!("[majority-of-templates] {raw}"),
            verdict: template_majority(&verdicts),
            usage,
            label_probs: None,
            redacted: replies.iter().any(|r| r.redacted),
            grades: None,
        })
    }

    fn cache_key(&self, request: &JudgeRequest) -> Option<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"majority-of-templates\0");
        for m in &self.members {
            h.update(m.cache_key(request)?.as_bytes());
            h.update([0]);
        }
        Some(hex::encode(h.finalize()))
    }

    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        self.members
            .iter()
            .map(|m| m.estimate_input_tokens(request))
            .sum()
    }

    fn requests_per_call(&self) -> u32 {
        self.members.iter().map(|m| m.requests_per_call()).sum()
    }
}

#[async_trait]
impl Judge for MitigatedJudge {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn simulated(&self) -> bool {
        self.inner.simulated()
    }

    fn learn(&self, pairs: &[crate::dataset::Pair]) {
        self.inner.learn(pairs);
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        if self.mitigations.reference_guided
            && !self.mitigations.references.contains_key(&request.pair_id)
        {
            // Never judged unguided as if guided: the call fails and says why.
            return Err(JudgeError::Permanent {
                kind: super::FaultKind::BadRequest,
                message: format!(
                    "reference-guided judge: pair `{}` has no reference answer (the dataset's \
                     `reference` field)",
                    request.pair_id
                ),
            });
        }
        let r = self.prepared(request);
        if !self.mitigations.swap_and_confirm {
            return self.inner.judge(&r).await;
        }
        let kept = self
            .first_replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.call_id);
        let first = match kept {
            Some(reply) => reply,
            None => self.inner.judge(&r).await?,
        };
        let second = match self.inner.judge(&Self::swapped(&r)).await {
            Ok(reply) => reply,
            Err(e) => {
                self.first_replies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(request.call_id.clone(), first);
                return Err(e);
            }
        };
        let usage = match (first.usage, second.usage) {
            (Some(a), Some(b)) => Some(TokenUsage {
                input_tokens: a.input_tokens + b.input_tokens,
                output_tokens: a.output_tokens + b.output_tokens,
            }),
            (a, b) => a.or(b),
        };
        Ok(JudgeReply {
            raw: format!(
                "[swap-and-confirm] as shown: {} | swapped: {}",
                first.raw, second.raw
            ),
            verdict: confirm(first.verdict, second.verdict),
            usage,
            label_probs: None,
            redacted: first.redacted || second.redacted,
            grades: None,
        })
    }

    fn cache_key(&self, request: &JudgeRequest) -> Option<String> {
        use sha2::{Digest, Sha256};
        let r = self.prepared(request);
        let key = self.inner.cache_key(&r)?;
        if !self.mitigations.swap_and_confirm {
            return Some(key);
        }
        let swapped = self.inner.cache_key(&Self::swapped(&r))?;
        let mut h = Sha256::new();
        for part in ["swap-and-confirm", key.as_str(), swapped.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Some(hex::encode(h.finalize()))
    }

    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        let one = self.inner.estimate_input_tokens(&self.prepared(request));
        one * u64::from(self.requests_per_call())
    }

    fn requests_per_call(&self) -> u32 {
        if self.mitigations.swap_and_confirm {
            2
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_keeps_agreement_only() {
        use SlotVerdict::*;
        // Both orders pick the answer first shown: First then (swapped) Second.
        assert_eq!(confirm(First, Second), First);
        // Both pick the first slot whatever is in it: position bias, a tie.
        assert_eq!(confirm(First, First), Tie);
        assert_eq!(confirm(Tie, Tie), Tie);
        assert_eq!(confirm(Second, Invalid), Invalid);
    }

    /// Answers "Output (a)" and fails its second request once, as a server error would.
    struct FlakyJudge {
        requests: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Judge for FlakyJudge {
        fn name(&self) -> &str {
            "flaky"
        }
        fn simulated(&self) -> bool {
            false
        }
        async fn judge(&self, _: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
            let n = self
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 1 {
                return Err(JudgeError::Retryable {
                    kind: super::super::FaultKind::ServerError,
                    message: "503".into(),
                    retry_after: None,
                });
            }
            Ok(JudgeReply {
                raw: format!("reply {n}"),
                verdict: SlotVerdict::First,
                usage: Some(TokenUsage {
                    input_tokens: 10,
                    output_tokens: 1,
                }),
                label_probs: None,
                redacted: false,
                grades: None,
            })
        }
    }

    #[tokio::test]
    async fn a_failed_swapped_request_is_retried_without_asking_the_first_order_again() {
        let inner = Arc::new(FlakyJudge {
            requests: Default::default(),
        });
        let judge = MitigatedJudge::new(
            inner.clone(),
            Mitigations {
                swap_and_confirm: true,
                ..Mitigations::default()
            },
        );
        assert_eq!(judge.requests_per_call(), 2);
        let request = JudgeRequest {
            pair_id: String::new(),
            call_id: "c".into(),
            prompt: "q".into(),
            first: "a".into(),
            second: "b".into(),
            repeat: 0,
            sim: Default::default(),
            context: Vec::new(),
        };
        // The swapped request (the second) fails: the call fails and keeps the first reply.
        assert!(judge.judge(&request).await.is_err());
        // The runner's retry sends only the swapped request again.
        let reply = judge.judge(&request).await.unwrap();
        let sent = inner.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(sent, 3, "first, swapped (failed), swapped again");
        assert_eq!(
            reply.raw,
            "[swap-and-confirm] as shown: reply 0 | swapped: reply 2"
        );
        // Both orders picked the first slot: position, not preference, so a tie.
        assert_eq!(reply.verdict, SlotVerdict::Tie);
        assert!(judge.first_replies.lock().unwrap().is_empty());
    }

    /// Answers `verdicts[i]` on its i-th request; fails its request number `fail_at` once.
    struct Scripted {
        verdicts: Vec<SlotVerdict>,
        fail_at: Option<usize>,
        requests: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Judge for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn simulated(&self) -> bool {
            false
        }
        async fn judge(&self, _: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
            let n = self
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if Some(n) == self.fail_at {
                return Err(JudgeError::Retryable {
                    kind: super::super::FaultKind::ServerError,
                    message: "503".into(),
                    retry_after: None,
                });
            }
            let verdict = self.verdicts[n.min(self.verdicts.len() - 1)];
            Ok(JudgeReply {
                raw: format!("{verdict:?}"),
                verdict,
                usage: Some(TokenUsage {
                    input_tokens: 10,
                    output_tokens: 2,
                }),
                label_probs: None,
                redacted: false,
                grades: None,
            })
        }
        fn cache_key(&self, _: &JudgeRequest) -> Option<String> {
            Some(format!("{:?}", self.verdicts))
        }
    }

    fn scripted(verdicts: &[SlotVerdict], fail_at: Option<usize>) -> Arc<Scripted> {
        Arc::new(Scripted {
            verdicts: verdicts.to_vec(),
            fail_at,
            requests: Default::default(),
        })
    }

    #[test]
    fn template_majority_is_strict() {
        use SlotVerdict::*;
        assert_eq!(template_majority(&[First, First, Second]), First);
        assert_eq!(template_majority(&[First, Second, Tie]), Tie);
        assert_eq!(template_majority(&[Second, Invalid, Invalid]), Second);
        assert_eq!(template_majority(&[First, Second, Invalid]), Tie);
        assert_eq!(template_majority(&[Invalid, Invalid]), Invalid);
    }

    #[tokio::test]
    async fn template_majority_judge_asks_every_template_and_keeps_paid_replies() {
        use SlotVerdict::*;
        let (a, b, c) = (
            scripted(&[Second], None),
            scripted(&[First], None),
            // The third template fails its first request, then answers First.
            scripted(&[First, First], Some(0)),
        );
        let judge = TemplateMajorityJudge::new(
            "j",
            vec![
                a.clone() as Arc<dyn Judge>,
                b.clone() as Arc<dyn Judge>,
                c.clone() as Arc<dyn Judge>,
            ],
        );
        assert_eq!(judge.requests_per_call(), 3);
        let request = JudgeRequest {
            pair_id: String::new(),
            call_id: "c".into(),
            prompt: "q".into(),
            first: "a".into(),
            second: "b".into(),
            repeat: 0,
            sim: Default::default(),
            context: Vec::new(),
        };
        assert!(judge.judge(&request).await.is_err());
        let reply = judge.judge(&request).await.unwrap();
        // The retry asks only the template that failed: 1 + 1 + 2 requests.
        let count = |s: &Scripted| s.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 2));
        assert_eq!(reply.verdict, First);
        assert_eq!(
            reply.raw,
            "[majority-of-templates] 1: Second | 2: First | 3: First"
        );
        assert_eq!(
            reply.usage,
            Some(TokenUsage {
                input_tokens: 30,
                output_tokens: 6
            })
        );
        assert!(judge.kept.lock().unwrap().is_empty());
        // The cache key changes with any member's.
        let other = TemplateMajorityJudge::new("j", vec![a as Arc<dyn Judge>, b as Arc<dyn Judge>]);
        assert_ne!(judge.cache_key(&request), other.cache_key(&request));
    }

    #[test]
    fn normalise_strips_artifact_text_and_formatting() {
        let apology = "I'm sorry, as a chatbot I cannot respond to this.";
        let t = normalise(&format!("{apology} **Yes**:\n\n- it is  safe\n## Note"));
        assert_eq!(t, "Yes: it is safe Note");
    }
}
