//! Simulated pointwise judges: seeded, deterministic graders with planted artifact effects,
//! deciding only from the answer they are shown, like [`super::sim::SimJudge`] for pairs.
//!
//! A `score` judge gives each answer a baseline score drawn from its substance (the answer's
//! words once every catalog artifact's inserted text is removed, [`super::sim::substance`]), so
//! an answer and its artifact copy share it: the better answer of a labelled pair lands in the
//! upper half of the scale with probability `accuracy`, else the lower half. When the answer
//! shows an artifact with a planted `[sim_grades] score_shift` Δ ([`Artifact::detect`]), the score moves by
//! ⌊Δ⌋ plus one with probability frac(Δ), so the expected shift is exactly Δ; the baseline range
//! leaves room for the largest shifts, so no score is clipped.
//!
//! A `label` judge labels an answer positive with probability `positive_rate` (default 0.5),
//! keyed on its substance; a positive answer showing an artifact with a planted `label_flip` p
//! is given the first other label with probability p (e.g. unsafe → safe under apology).
//!
//! With probability `invalid_rate` a call answers with no grade, and with probability `noise`
//! it redraws every decision from its own stream (run-to-run noise). The reply is written in
//! the judge's grade format, marked `[simulated]`, and read back with the judge's own grader.

use super::config::{JudgeKind, SimParams};
use super::grade::{Grade, Grader};
use super::sim::substance;
use super::{
    Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest, SlotVerdict,
    TokenUsage,
};
use crate::dataset::{Pair, Preference};
use crate::perturb::{Artifact, Catalog};
use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

/// A simulated score or label judge. Always reports itself as simulated.
#[derive(Debug, Clone)]
pub struct SimGrader {
    name: String,
    seed: u64,
    params: SimParams,
    /// Label judges: the share of answers labelled positive at baseline.
    positive_rate: f64,
    grader: Grader,
    /// Planted effects (score shift, or flip probability) per artifact, in id order.
    planted: Vec<(Artifact, f64)>,
    /// Quality per answer substance (+1 the better answer of its pair, −1 the worse).
    knowledge: OnceLock<HashMap<u64, i8>>,
}

impl SimGrader {
    /// Build from a `backend = "sim"` judge file of kind `score` or `label`.
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        let invalid = |field: &str, message: String| JudgeBuildError::Invalid {
            judge: config.name.clone(),
            field: field.to_string(),
            message,
        };
        config
            .validate()
            .map_err(|e| invalid(e.field().unwrap_or("kind"), e.to_string()))?;
        if !matches!(config.kind, JudgeKind::Score | JudgeKind::Label) {
            return Err(invalid(
                "kind",
                "a simulated pointwise judge is a score or a label judge".into(),
            ));
        }
        let params = config
            .sim
            .clone()
            .ok_or_else(|| invalid("sim", "a sim judge needs a [sim] table".into()))?;
        let template = config
            .load_template()
            .map_err(|e| invalid("template", e.to_string()))?;
        let grader = Grader::for_config(config, &template).map_err(|e| invalid("kind", e))?;
        let grades = config.sim_grades.clone().unwrap_or_default();
        let (effects, field) = match config.kind {
            JudgeKind::Score => (&grades.score_shift, "sim_grades.score_shift"),
            _ => (&grades.label_flip, "sim_grades.label_flip"),
        };
        let catalog = Catalog::builtin();
        let mut planted = Vec::new();
        for (id, value) in effects {
            let Some(a) = catalog.get(id) else {
                return Err(invalid(
                    &format!("{field}.{id}"),
                    format!("`{id}` is not a built-in artifact"),
                ));
            };
            if a.is_context() || a.is_position() || a.detect("").is_none() {
                return Err(invalid(
                    &format!("{field}.{id}"),
                    format!("`{id}` leaves no sign in one answer, so a grader cannot react to it"),
                ));
            }
            if *value != 0.0 {
                planted.push((a.clone(), *value));
            }
        }
        if let Some((min, max)) = grader.scale() {
            let up: f64 = planted.iter().map(|(_, v)| v.max(0.0).ceil()).sum();
            let down: f64 = planted.iter().map(|(_, v)| (-v).max(0.0).ceil()).sum();
            if (max - min) as f64 - up - down < 1.0 {
                return Err(invalid(
                    field,
                    format!("the planted shifts leave no room on the scale {min}..{max}"),
                ));
            }
        }
        Ok(SimGrader {
            name: config.name.clone(),
            seed: config.seed,
            params,
            positive_rate: grades.positive_rate.unwrap_or(0.5),
            grader,
            planted,
            knowledge: OnceLock::new(),
        })
    }

    fn rng(&self, domain: &str, key: &str) -> ChaCha8Rng {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_le_bytes());
        hasher.update(self.name.as_bytes());
        hasher.update([0]);
        hasher.update(domain.as_bytes());
        hasher.update([0]);
        hasher.update(key.as_bytes());
        ChaCha8Rng::from_seed(hasher.finalize().into())
    }

    /// The grade of the answer in `request` (its first text), from that text alone.
    pub fn decide(&self, request: &JudgeRequest) -> Grade {
        let mut call_rng = self.rng("call", &request.call_id);
        if call_rng.random::<f64>() < self.params.invalid_rate {
            return Grade::Unparseable;
        }
        let redraw = call_rng.random::<f64>() < self.params.noise;
        let mut draw = |domain: &str, key: &str| -> f64 {
            if redraw {
                call_rng.random::<f64>()
            } else {
                self.rng(domain, key).random::<f64>()
            }
        };
        let answer = request.first.as_str();
        let s = substance(answer);
        let key = s.to_string();
        let shown: Vec<&(Artifact, f64)> = self
            .planted
            .iter()
            .filter(|(a, _)| a.detect(answer) == Some(true))
            .collect();
        if let Some((min, max)) = self.grader.scale() {
            let up: i64 = self
                .planted
                .iter()
                .map(|(_, v)| v.max(0.0).ceil() as i64)
                .sum();
            let down: i64 = self
                .planted
                .iter()
                .map(|(_, v)| (-v).max(0.0).ceil() as i64)
                .sum();
            let (lo, hi) = (min + down, max - up);
            let mid = lo + (hi - lo + 1) / 2;
            let quality = self
                .knowledge
                .get()
                .and_then(|k| k.get(&s).copied())
                .unwrap_or(if s % 2 == 0 { 1 } else { -1 });
            let correct = draw("accuracy", &key) < self.params.accuracy;
            let upper = (quality >= 0) == correct;
            let (from, to) = if upper {
                (mid, hi)
            } else {
                (lo, (mid - 1).max(lo))
            };
            let u = draw("base", &key);
            let mut score = from + ((u * (to - from + 1) as f64) as i64).min(to - from);
            for (artifact, shift) in shown {
                let whole = shift.floor();
                let extra = draw(&format!("shift/{}", artifact.id), &key) < shift - whole;
                score += whole as i64 + i64::from(extra);
            }
            Grade::Score(score.clamp(min, max) as f64)
        } else {
            let labels = self.grader.labels();
            let positive = self.grader.positive().unwrap_or_default().to_string();
            let other = labels
                .iter()
                .find(|l| **l != positive)
                .cloned()
                .unwrap_or_default();
            let mut label = if draw("base", &key) < self.positive_rate {
                positive.clone()
            } else {
                other.clone()
            };
            for (artifact, p) in shown {
                if label == positive && draw(&format!("flip/{}", artifact.id), &key) < *p {
                    label = other.clone();
                }
            }
            Grade::Label(label)
        }
    }
}

#[async_trait]
impl Judge for SimGrader {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        true
    }

    fn learn(&self, pairs: &[Pair]) {
        let mut known = HashMap::new();
        for pair in pairs {
            let (qa, qb) = match pair.preferred {
                Some(Preference::A) => (1, -1),
                Some(Preference::B) => (-1, 1),
                Some(Preference::Tie) => (0, 0),
                None => continue,
            };
            known.insert(substance(&pair.response_a), qa);
            known.insert(substance(&pair.response_b), qb);
        }
        let _ = self.knowledge.set(known);
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let raw = self.grader.reply_for(&[self.decide(request)]);
        // Read back like any reply, so the simulated judge exercises the real grader.
        let grades = self.grader.grade(&raw, None);
        Ok(JudgeReply {
            raw,
            verdict: SlotVerdict::Invalid,
            usage: Some(TokenUsage {
                input_tokens: ((request.prompt.len() + request.first.len()) / 4) as u64,
                output_tokens: 4,
            }),
            label_probs: None,
            redacted: false,
            grades: Some(grades),
        })
    }

    fn estimate_input_tokens(&self, request: &JudgeRequest) -> u64 {
        ((request.prompt.len() + request.first.len()) / 4) as u64
    }
}
