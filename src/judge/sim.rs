//! Simulated reference judge: seeded, deterministic, with declared biases, and deciding only
//! from the text it is shown, like any judge.
//!
//! The judge never sees the design's ground truth ([`super::SimContext`]): which artifact a call
//! is about, which slot carries it, or which answer is gold. It reads the two answers in front of
//! it and decides in a fixed order, so that each planted parameter is the expected value of the
//! statistic that measures it:
//! 1. with probability `invalid_rate` it answers something unparseable;
//! 2. for every artifact it has a preference `p` for (in id order): when exactly one of the two
//!    answers shows the artifact ([`Artifact::detect`]: the artifact's fixed text, its declared
//!    `detector` regex, a repeated sentence), with probability `|p|` it picks that answer
//!    (`p > 0`) or the other one (`p < 0`), so Chen's T equals `p`. An artifact that did not
//!    change the text, or that both answers carry, shows in neither or both and has no effect;
//! 3. with probability `|position_bias|` it picks the first (`> 0`) or second slot, so T(position)
//!    on identical answers equals `position_bias`;
//! 4. otherwise it judges "substance": each answer's substance is a fingerprint of its distinct
//!    words once every catalog artifact's inserted text is removed ([`substance`]), so an
//!    artifact the judge ignores changes nothing it weighs. Two answers of equal substance give a
//!    tie with probability `tie_rate`, else a fair coin, drawn afresh for every call; otherwise it prefers the answer of higher
//!    quality with probability `accuracy`, a tie with probability `tie_rate`, else the other.
//!    Quality is the judge's competence: before the audit it learns which answer of each
//!    labelled pair is better ([`Judge::learn`]) and later recognises an answer by its substance
//!    in the text, as a competent reader would; an answer it does not recognise is ranked by the
//!    simulated world's quality ([`better_first`]), which
//!    [`crate::analyze::simulate::synthetic_pairs`] uses as its gold. Nothing about the call
//!    (artifact, slot, gold slot) is ever handed to it.
//!
//! Each decision draws from an RNG keyed on what it is about (the substances compared, the
//! artifact-carrying text), so repeats of a call agree; with probability `noise` a call redraws
//! every decision from its own stream, independently of every other call: that is the judge's
//! run-to-run noise. The reply is written in the template's own label format and parsed back
//! with the judge's parser, like a real reply.

use super::config::SimParams;
use super::parser::VerdictParser;
use super::template::Template;
use super::{
    Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest, Slot, SlotVerdict,
    TokenUsage,
};
use crate::dataset::{Pair, Preference};
use crate::perturb::{Artifact, Catalog, Operation};
use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// A seeded, deterministic judge with declared biases. Always reports itself as simulated.
#[derive(Debug, Clone)]
pub struct SimJudge {
    name: String,
    seed: u64,
    params: SimParams,
    /// Planted artifacts with their preference, in id order.
    planted: Vec<(Artifact, f64)>,
    parser: VerdictParser,
    /// Quality the judge knows per answer substance (+1 the better answer of its pair, −1 the
    /// worse, 0 a tie), learned from the dataset's labels ([`Judge::learn`]).
    knowledge: OnceLock<HashMap<u64, i8>>,
    /// Reply texts for first, second, tie, in the template's label format (parsed back by
    /// `parser`).
    labels: [String; 3],
    /// The judge's template: it reads context-side artifacts from the prompt it renders, as
    /// any backend would be shown it.
    template: Template,
    /// The name its random streams are drawn under: its base judge's for a template variant
    /// (`variant_of`), so a variant differs from its base only where the prompt makes it.
    stream_name: String,
    /// The planted template dependence, when this judge's rendered instructions contain its
    /// phrase: the share of items reversed.
    template_flip: Option<f64>,
}

/// Every text a built-in artifact inserts (prefixes, suffixes, fillers, lead-ins), longest first,
/// so [`substance`] can remove them.
pub(crate) fn inserted_texts() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let mut out: Vec<String> = Vec::new();
        for a in Catalog::builtin().artifacts() {
            out.extend(a.operation.markers());
            if let Operation::Verbose {
                restatement_leads, ..
            } = &a.operation
            {
                out.extend(restatement_leads.iter().map(|l| l.trim().to_string()));
            }
        }
        out.retain(|t| !t.is_empty());
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out.dedup();
        out
    })
}

/// The substance of an answer as a simulated judge perceives it: a hash of the set of its
/// distinct lower-cased words after every built-in artifact's inserted text is removed.
/// Adding a fixed phrase, padding with fillers and a restatement, repeating or reordering
/// sentences and list items, and markdown formatting leave it unchanged; different answers
/// differ. Deterministic, and the same for every simulated judge.
pub fn substance(text: &str) -> u64 {
    let mut t = text.to_string();
    for m in inserted_texts() {
        if t.contains(m.as_str()) {
            t = t.replace(m.as_str(), " ");
        }
    }
    let lower = t.to_lowercase();
    let words: BTreeSet<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut h = Sha256::new();
    for w in words {
        h.update(w.as_bytes());
        h.update([0]);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// True when the first answer has the higher substance, i.e. is the better one in the
/// simulated world (the same for every simulated judge). `None` for equal substance.
pub fn better_first(first: &str, second: &str) -> Option<bool> {
    let (a, b) = (substance(first), substance(second));
    (a != b).then_some(a > b)
}

impl SimJudge {
    /// Build from configuration (`backend = "sim"` with a `[sim]` table).
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        let invalid = |field: &str, message: String| JudgeBuildError::Invalid {
            judge: config.name.clone(),
            field: field.to_string(),
            message,
        };
        let params = config
            .sim
            .clone()
            .ok_or_else(|| invalid("sim", "a sim judge needs a [sim] table".into()))?;
        let check = |field: &str, value: f64, low: f64| -> Result<(), JudgeBuildError> {
            if value.is_finite() && (low..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    &format!("sim.{field}"),
                    format!("{value} is outside [{low}, 1]"),
                ))
            }
        };
        check("accuracy", params.accuracy, 0.0)?;
        check("position_bias", params.position_bias, -1.0)?;
        check("noise", params.noise, 0.0)?;
        check("tie_rate", params.tie_rate, 0.0)?;
        check("invalid_rate", params.invalid_rate, 0.0)?;
        let catalog = Catalog::builtin();
        let mut planted = Vec::new();
        for (artifact, value) in &params.artifact_preference {
            let field = format!("sim.artifact_preference.{artifact}");
            check(&format!("artifact_preference.{artifact}"), *value, -1.0)?;
            let Some(a) = catalog.get(artifact) else {
                return Err(invalid(
                    &field,
                    format!(
                        "`{artifact}` is not a built-in artifact; a simulated judge can only \
                         react to artifacts whose signs it knows"
                    ),
                ));
            };
            if !a.is_context() && a.detect("").is_none() {
                return Err(invalid(
                    &field,
                    format!(
                        "`{artifact}` leaves no sign in one answer (no fixed text or detector), \
                         so a judge reading the text cannot react to it"
                    ),
                ));
            }
            if *value != 0.0 {
                planted.push((a.clone(), *value));
            }
        }
        if params.accuracy + params.tie_rate > 1.0 {
            return Err(invalid(
                "sim.tie_rate",
                "accuracy + tie_rate must not exceed 1".into(),
            ));
        }
        let template = config
            .load_template()
            .map_err(|e| invalid("template", e.to_string()))?;
        let parser = VerdictParser::for_config(&template, &config.parser)
            .map_err(|e| invalid(&format!("parser.{}", e.field), e.message))?;
        // The reply is marked as simulated where the template's labels allow a prefix, and is
        // the bare label otherwise (e.g. a label anchored at the start of the reply).
        let label = |want: SlotVerdict, candidates: &[&str]| -> Result<String, JudgeBuildError> {
            let prefixed = candidates.iter().map(|c| format!("[simulated] {c}"));
            // Bare labels shortest first: the plainest reply the parser accepts.
            let mut bare: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
            bare.sort_by_key(String::len);
            prefixed
                .chain(bare)
                .find(|c| parser.parse(c) == want)
                .ok_or_else(|| {
                    invalid(
                        "template",
                        format!(
                            "the simulated judge found no reply its parser reads as {want:?} \
                             (tried {candidates:?})"
                        ),
                    )
                })
        };
        let labels = [
            label(
                SlotVerdict::First,
                &[
                    "Output (a)",
                    "[[A]]",
                    "A",
                    "Assistant A",
                    "(a)",
                    "Verdict: A",
                ],
            )?,
            label(
                SlotVerdict::Second,
                &[
                    "Output (b)",
                    "[[B]]",
                    "B",
                    "Assistant B",
                    "(b)",
                    "Verdict: B",
                ],
            )?,
            label(
                SlotVerdict::Tie,
                &["Tie", "[[C]]", "C", "tie", "Verdict: tie"],
            )?,
        ];
        // The instructions as rendered (empty prompt and answers): what the judge is told to do,
        // independent of the texts it compares.
        let template_flip = config.sim_template.as_ref().and_then(|effect| {
            let r = template.render("", "", "");
            let shown = format!("{}\n{}", r.system.unwrap_or_default(), r.user);
            shown
                .contains(effect.phrase.as_str())
                .then_some(effect.share)
        });
        Ok(SimJudge {
            stream_name: config
                .variant_of
                .clone()
                .unwrap_or_else(|| config.name.clone()),
            template_flip,
            name: config.name.clone(),
            seed: config.seed,
            params,
            planted,
            parser,
            labels,
            knowledge: OnceLock::new(),
            template,
        })
    }

    /// Learn which answer of each labelled pair is better (the first call wins; later calls
    /// change nothing). Without it, or for an answer it does not recognise, the judge falls
    /// back to the simulated world's quality ([`better_first`]).
    pub fn learn_pairs(&self, pairs: &[Pair]) {
        let mut known = HashMap::new();
        for pair in pairs {
            let (a, b) = (substance(&pair.response_a), substance(&pair.response_b));
            let (qa, qb) = match pair.preferred {
                Some(Preference::A) => (1, -1),
                Some(Preference::B) => (-1, 1),
                Some(Preference::Tie) => (0, 0),
                None => continue,
            };
            known.insert(a, qa);
            known.insert(b, qb);
        }
        let _ = self.knowledge.set(known);
    }

    /// Which of two answers of different substance the judge holds to be better.
    fn better(&self, sa: u64, sb: u64) -> Option<Slot> {
        let known = self.knowledge.get();
        let q = |s: u64| known.and_then(|k| k.get(&s).copied());
        match (q(sa), q(sb)) {
            (Some(x), Some(y)) if x > y => Some(Slot::First),
            (Some(x), Some(y)) if x < y => Some(Slot::Second),
            (Some(_), Some(_)) => None,
            _ => Some(if sa > sb { Slot::First } else { Slot::Second }),
        }
    }

    /// The declared parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    fn rng(&self, domain: &str, key: &str) -> ChaCha8Rng {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_le_bytes());
        hasher.update(self.stream_name.as_bytes());
        hasher.update([0]);
        hasher.update(domain.as_bytes());
        hasher.update([0]);
        hasher.update(key.as_bytes());
        ChaCha8Rng::from_seed(hasher.finalize().into())
    }

    /// The verdict for `request`, from the shown texts only, deterministic in (seed, name,
    /// call id, texts). With a planted template dependence whose phrase the instructions
    /// contain, the verdict is reversed on the planted share of items.
    pub fn decide(&self, request: &JudgeRequest) -> SlotVerdict {
        let verdict = self.decide_texts(request);
        let Some(share) = self.template_flip else {
            return verdict;
        };
        // The item is the pair of answers as the judge perceives them (order-free, artifact
        // text removed): the same in both orders, every repeat and every artifact condition.
        let (sa, sb) = (substance(&request.first), substance(&request.second));
        let item = format!("{}/{}", sa.min(sb), sa.max(sb));
        if self.rng("template", &item).random::<f64>() >= share {
            return verdict;
        }
        match verdict {
            SlotVerdict::First => SlotVerdict::Second,
            SlotVerdict::Second => SlotVerdict::First,
            v => v,
        }
    }

    fn decide_texts(&self, request: &JudgeRequest) -> SlotVerdict {
        // The call id only seeds the call's own noise stream; it carries no decision.
        let mut call_rng = self.rng("call", &request.call_id);
        if call_rng.random::<f64>() < self.params.invalid_rate {
            return SlotVerdict::Invalid;
        }
        let redraw = call_rng.random::<f64>() < self.params.noise;
        let mut stream = |domain: &str, key: &str| -> f64 {
            if redraw {
                call_rng.random::<f64>()
            } else {
                self.rng(domain, key).random::<f64>()
            }
        };
        let (first, second) = (request.first.as_str(), request.second.as_str());
        for (artifact, preference) in &self.planted {
            let in_first = artifact.detect(first) == Some(true);
            let in_second = artifact.detect(second) == Some(true);
            if in_first == in_second {
                continue;
            }
            let (slot, carrier, plain) = if in_first {
                (Slot::First, first, second)
            } else {
                (Slot::Second, second, first)
            };
            let key = format!("{}\0{}\0{}", artifact.id, digest(carrier), digest(plain));
            if stream("artifact", &key) < preference.abs() {
                return slot_verdict(if *preference > 0.0 { slot } else { other(slot) });
            }
        }
        // Context-side artifacts are read from the rendered prompt: the favoured slot is the one
        // the prompt's added text names (or gives the model name).
        let planted_context = self.planted.iter().filter(|(a, _)| a.is_context());
        let mut rendered: Option<String> = None;
        for (artifact, preference) in planted_context {
            let text = rendered.get_or_insert_with(|| {
                let r = self
                    .template
                    .render_with(&request.prompt, first, second, &request.context);
                let mut all = r.system.unwrap_or_default();
                all.push('\n');
                all.push_str(&r.user);
                all
            });
            let Some(slot) = context_slot(artifact, &self.template, text) else {
                continue;
            };
            let (carrier, plain) = match slot {
                Slot::First => (first, second),
                Slot::Second => (second, first),
            };
            let key = format!("{}\0{}\0{}", artifact.id, digest(carrier), digest(plain));
            if stream("artifact", &key) < preference.abs() {
                return slot_verdict(if *preference > 0.0 { slot } else { other(slot) });
            }
        }
        let (sa, sb) = (substance(first), substance(second));
        // Order-free: which answer is better does not depend on where it is shown.
        let pair_key = format!("{}/{}", sa.min(sb), sa.max(sb));
        let bias = self.params.position_bias;
        if bias != 0.0 && stream("position", &pair_key) < bias.abs() {
            return slot_verdict(if bias > 0.0 {
                Slot::First
            } else {
                Slot::Second
            });
        }
        if sa == sb {
            // Nothing to prefer: every call is its own coin (a judge at temperature > 0), so
            // the two orders of an identical-answer test do not cancel by construction.
            let u = call_rng.random::<f64>();
            if u < self.params.tie_rate {
                SlotVerdict::Tie
            } else if u < self.params.tie_rate + (1.0 - self.params.tie_rate) / 2.0 {
                SlotVerdict::First
            } else {
                SlotVerdict::Second
            }
        } else {
            let u = stream("substance", &pair_key);
            match self.better(sa, sb) {
                Some(better) if u < self.params.accuracy => slot_verdict(better),
                Some(_) if u < self.params.accuracy + self.params.tie_rate => SlotVerdict::Tie,
                Some(better) => slot_verdict(other(better)),
                // Known equals: a tie with probability tie_rate, else a coin.
                None if u < self.params.tie_rate => SlotVerdict::Tie,
                None if u < self.params.tie_rate + (1.0 - self.params.tie_rate) / 2.0 => {
                    SlotVerdict::First
                }
                None => SlotVerdict::Second,
            }
        }
    }

    /// The reply text for `request`, in the template's label format (what the judge "writes").
    pub fn reply_text(&self, request: &JudgeRequest) -> String {
        let label = match self.decide(request) {
            SlotVerdict::First => &self.labels[0],
            SlotVerdict::Second => &self.labels[1],
            SlotVerdict::Tie => &self.labels[2],
            SlotVerdict::Invalid => return "[simulated] I cannot decide.".into(),
        };
        label.clone()
    }

    /// Write the reply for `request` and read it back with the judge's parser.
    pub fn judge_text(&self, request: &JudgeRequest) -> (String, SlotVerdict) {
        let raw = self.reply_text(request);
        let verdict = self.parser.parse(&raw);
        (raw, verdict)
    }
}

/// The slot a context-side artifact favours in the rendered prompt `text`: the one whose
/// version of the artifact's added text (its note naming that slot, a model name on that
/// slot, a verdict line for it) the prompt contains, when exactly one does.
fn context_slot(artifact: &Artifact, template: &Template, text: &str) -> Option<Slot> {
    let slots = template.slot_names();
    let shows = |slot: Slot| {
        artifact
            .context_edit(slot)
            .is_some_and(|edit| text.contains(&edit.shown_text(&slots, slot)))
    };
    match (shows(Slot::First), shows(Slot::Second)) {
        (true, false) => Some(Slot::First),
        (false, true) => Some(Slot::Second),
        _ => None,
    }
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

fn other(slot: Slot) -> Slot {
    match slot {
        Slot::First => Slot::Second,
        Slot::Second => Slot::First,
    }
}

fn slot_verdict(slot: Slot) -> SlotVerdict {
    match slot {
        Slot::First => SlotVerdict::First,
        Slot::Second => SlotVerdict::Second,
    }
}

#[async_trait]
impl Judge for SimJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        true
    }

    fn learn(&self, pairs: &[Pair]) {
        self.learn_pairs(pairs);
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let (raw, verdict) = self.judge_text(request);
        // A crude token count keeps cost and token columns meaningful for demos.
        let input_tokens =
            ((request.prompt.len() + request.first.len() + request.second.len()) / 4) as u64;
        Ok(JudgeReply {
            raw,
            verdict,
            usage: Some(TokenUsage {
                input_tokens,
                output_tokens: 3,
            }),
            label_probs: None,
            redacted: false,
            grades: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::SimContext;
    use crate::judge::config::Backend;
    use std::collections::BTreeMap;

    fn config(params: SimParams) -> JudgeConfig {
        let mut config = JudgeConfig::new("sim-test", Backend::Sim);
        config.seed = 7;
        config.sim = Some(params);
        config
    }

    fn params() -> SimParams {
        SimParams {
            accuracy: 0.8,
            position_bias: 0.0,
            noise: 0.0,
            tie_rate: 0.1,
            invalid_rate: 0.0,
            artifact_preference: BTreeMap::new(),
        }
    }

    fn request(call: &str, first: &str, second: &str) -> JudgeRequest {
        JudgeRequest {
            pair_id: String::new(),
            call_id: call.into(),
            prompt: "p".into(),
            first: first.into(),
            second: second.into(),
            repeat: 0,
            sim: SimContext::default(),
            context: Vec::new(),
        }
    }

    fn answer(i: usize) -> String {
        format!("Answer {i}: check with a doctor number {} first.", i * 7)
    }

    const APOLOGY: &str = "I'm sorry, as a chatbot I cannot respond to this. ";

    /// Net score of the artifact copy over `n` identical-answer calls, alternating its slot.
    fn tie_score(judge: &SimJudge, perturb: impl Fn(&str) -> String, n: usize) -> f64 {
        let mut net = 0i64;
        for i in 0..n {
            let base = answer(i);
            let carried = perturb(&base);
            let (first, second, artifact_first) = if i % 2 == 0 {
                (carried.as_str(), base.as_str(), true)
            } else {
                (base.as_str(), carried.as_str(), false)
            };
            match (
                judge.decide(&request(&format!("c{i}"), first, second)),
                artifact_first,
            ) {
                (SlotVerdict::First, true) | (SlotVerdict::Second, false) => net += 1,
                (SlotVerdict::First, false) | (SlotVerdict::Second, true) => net -= 1,
                _ => {}
            }
        }
        net as f64 / n as f64
    }

    #[test]
    fn artifact_preference_is_the_expected_tie_detection_score() {
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 0.6);
        let judge = SimJudge::new(&config(p)).unwrap();
        let t = tie_score(&judge, |a| format!("{APOLOGY}{a}"), 20_000);
        // Binomial-type sd of the mean is about 0.006 here; 0.03 is five of them.
        assert!((t - 0.6).abs() < 0.03, "T = {t}");
    }

    #[test]
    fn an_artifact_the_text_does_not_show_has_no_effect() {
        // The judge loves apologies, but the copy it is shown carries none (a no-op artifact),
        // or both copies carry one (already present): T is the unbiased 0.
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 1.0);
        let judge = SimJudge::new(&config(p)).unwrap();
        let unchanged = tie_score(&judge, |a| a.to_string(), 20_000);
        assert!(
            unchanged.abs() < 0.03,
            "T on unchanged copies = {unchanged}"
        );
        let mut net = 0i64;
        for i in 0..20_000 {
            let carried = format!("{APOLOGY}{}", answer(i));
            let twice = format!("{APOLOGY}{carried}");
            let (first, second) = if i % 2 == 0 {
                (&twice, &carried)
            } else {
                (&carried, &twice)
            };
            let v = judge.decide(&request(&format!("c{i}"), first, second));
            net += match (v, i % 2 == 0) {
                (SlotVerdict::First, true) | (SlotVerdict::Second, false) => 1,
                (SlotVerdict::First, false) | (SlotVerdict::Second, true) => -1,
                _ => 0,
            };
        }
        let t = net as f64 / 20_000.0;
        assert!(t.abs() < 0.03, "T with the artifact already present = {t}");
    }

    #[test]
    fn the_judge_never_reads_the_ground_truth() {
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 0.5);
        p.position_bias = 0.3;
        p.noise = 0.2;
        let judge = SimJudge::new(&config(p)).unwrap();
        for i in 0..300 {
            let plain = request(&format!("c{i}"), &answer(i), &answer(i + 1));
            let mut told = plain.clone();
            told.sim = SimContext {
                artifact: Some("apology".into()),
                artifact_slot: Some(Slot::First),
                gold_slot: Some(Slot::Second),
                same_answer: true,
                substance_key: format!("k{i}"),
                artifact_key: format!("a{i}"),
            };
            assert_eq!(judge.decide(&plain), judge.decide(&told));
        }
    }

    #[test]
    fn ignored_artifact_never_flips_without_noise() {
        let judge = SimJudge::new(&config(params())).unwrap();
        let catalog = Catalog::builtin();
        let ids = [
            "apology",
            "authority",
            "halo",
            "verbosity",
            "repetition",
            "reorder",
        ];
        for i in 0..300 {
            let (a, b) = (answer(i), format!("Other {i}. It is fine. Ask a nurse."));
            let base = judge.decide(&request(&format!("base{i}"), &a, &b));
            for id in ids {
                let shifted = catalog.get(id).unwrap().apply(&b, 3, &format!("p{i}/b"));
                assert_eq!(
                    base,
                    judge.decide(&request(&format!("shift{i}/{id}"), &a, &shifted.text)),
                    "{id} on {b:?}"
                );
            }
        }
    }

    #[test]
    fn accuracy_is_agreement_with_the_world_quality() {
        let judge = SimJudge::new(&config(params())).unwrap();
        let (mut agree, n) = (0, 10_000);
        for i in 0..n {
            let (a, b) = (answer(i), answer(i + n));
            let better = if better_first(&a, &b).unwrap() {
                SlotVerdict::First
            } else {
                SlotVerdict::Second
            };
            agree += usize::from(judge.decide(&request(&format!("c{i}"), &a, &b)) == better);
        }
        let rate = agree as f64 / n as f64;
        assert!((rate - 0.8).abs() < 0.02, "agreement = {rate}");
    }

    #[test]
    fn noise_makes_repeats_disagree_at_a_bounded_rate() {
        let mut p = params();
        p.noise = 0.2;
        let judge = SimJudge::new(&config(p)).unwrap();
        let n = 10_000;
        let mut differ = 0;
        for i in 0..n {
            let (a, b) = (answer(i), answer(i + n));
            let r0 = judge.decide(&request(&format!("c{i}/r0"), &a, &b));
            let r1 = judge.decide(&request(&format!("c{i}/r1"), &a, &b));
            differ += usize::from(r0 != r1);
        }
        // P(differ) = 1 - P(same); with outcome probabilities (0.8, 0.1, 0.1) and independent redraws
        // with probability 0.2 each: P(same) = 0.64 + 0.36 * 0.66 = 0.8776, so P(differ) = 0.1224.
        let rate = differ as f64 / n as f64;
        assert!((rate - 0.1224).abs() < 0.02, "rate = {rate}");
    }

    #[test]
    fn replies_in_the_template_label_format_and_parses_them() {
        for (template, first) in [
            ("chen-safety", "[simulated] Output (a)"),
            ("mtbench-pairwise", "[simulated] [[A]]"),
            ("letter-safety", "A"),
        ] {
            let mut p = params();
            p.position_bias = 1.0;
            let mut c = config(p);
            c.template = template.into();
            let judge = SimJudge::new(&c).unwrap();
            let (raw, verdict) = judge.judge_text(&request("c", &answer(1), &answer(2)));
            assert_eq!(
                (raw.as_str(), verdict),
                (first, SlotVerdict::First),
                "{template}"
            );
        }
    }

    #[test]
    fn rejects_out_of_range_parameters_and_undetectable_artifacts() {
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 1.5);
        let err = SimJudge::new(&config(p)).unwrap_err().to_string();
        assert!(err.contains("sim.artifact_preference.apology"), "{err}");
        for id in ["reorder", "no-such-artifact"] {
            let mut p = params();
            p.artifact_preference.insert(id.into(), 0.5);
            let err = SimJudge::new(&config(p)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("sim.artifact_preference.{id}")),
                "{err}"
            );
        }
    }

    #[test]
    fn shipped_template_variants_render_and_parse() {
        // Every variant shows each answer once, and the simulated judge's replies in its label
        // style parse back to the verdict it meant.
        let variants = [
            "chen-safety-paraphrase",
            "chen-safety-brackets",
            "chen-safety-system",
            "mtbench-pairwise-paraphrase",
            "mtbench-pairwise-verdict-line",
            "mtbench-pairwise-user",
            "mtbench-pairwise-cot",
        ];
        for name in variants {
            let t = Template::builtin(name).unwrap();
            let r = t.render("PROMPT-X", "ANSWER-ONE", "ANSWER-TWO");
            let all = format!("{}\n{}", r.system.unwrap_or_default(), r.user);
            assert_eq!(all.matches("ANSWER-ONE").count(), 1, "{name}");
            assert_eq!(all.matches("PROMPT-X").count(), 1, "{name}");
            let mut c = config(params());
            c.template = name.into();
            let judge = SimJudge::new(&c).unwrap();
            for (i, want) in [SlotVerdict::First, SlotVerdict::Second, SlotVerdict::Tie]
                .into_iter()
                .enumerate()
            {
                assert_eq!(judge.parser.parse(&judge.labels[i]), want, "{name}");
            }
        }
        // Placement variants keep the primary's text, only moved between the messages.
        let words = |name: &str| {
            let r = Template::builtin(name).unwrap().render("P", "A", "B");
            format!("{} {}", r.system.unwrap_or_default(), r.user)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words("chen-safety-system"), words("chen-safety"));
        assert_eq!(words("mtbench-pairwise-user"), words("mtbench-pairwise"));
    }
}
