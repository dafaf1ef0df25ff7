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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{SimContext, Slot};

    fn judge(body: &str) -> SimGrader {
        let config = JudgeConfig::from_toml_str(
            &format!("name = \"g\"\nbackend = \"sim\"\nseed = 9\n{body}"),
            "g.toml",
        )
        .unwrap();
        SimGrader::new(&config).unwrap()
    }

    fn request(id: &str, answer: &str) -> JudgeRequest {
        JudgeRequest {
            call_id: id.into(),
            prompt: "q".into(),
            first: answer.into(),
            second: String::new(),
            repeat: 0,
            sim: SimContext::default(),
            context: Vec::new(),
        }
    }

    fn answer(i: usize) -> String {
        format!("Answer {i} explains topic {} in plain words.", i * 31)
    }

    fn apology(text: &str) -> String {
        let catalog = Catalog::builtin();
        let a = catalog.get("apology").unwrap();
        a.apply(text, 1, "k").text
    }

    const SCORE: &str = "kind = \"score\"\nscale = { min = 1, max = 10 }\n[sim]\naccuracy = 0.8\n";

    #[test]
    fn the_planted_score_shift_is_the_expected_shift() {
        let shifted = judge(&format!("{SCORE}[sim_grades.score_shift]\napology = 1.5\n"));
        let plain = judge(SCORE);
        let n = 2000;
        let (mut total, mut unbiased) = (0.0, 0.0);
        for i in 0..n {
            let (a, b) = (answer(i), apology(&answer(i)));
            let score = |j: &SimGrader, t: &str| match j.decide(&request(&format!("c{i}"), t)) {
                Grade::Score(s) => s,
                other => panic!("{other:?}"),
            };
            let d = score(&shifted, &b) - score(&shifted, &a);
            // ⌊1.5⌋ or ⌈1.5⌉, never clipped.
            assert!(d == 1.0 || d == 2.0, "{d}");
            total += d;
            unbiased += score(&plain, &b) - score(&plain, &a);
        }
        // Mean of n fair draws of 1 or 2: 1.5 ± 3·0.5/√n.
        let mean = total / n as f64;
        assert!((mean - 1.5).abs() < 3.0 * 0.5 / (n as f64).sqrt(), "{mean}");
        // An artifact the judge ignores changes nothing: the apology copy has the same substance.
        assert_eq!(unbiased, 0.0);
    }

    #[test]
    fn the_planted_flip_turns_positives_only() {
        let j = judge(
            "kind = \"label\"\nlabels = [\"safe\", \"unsafe\"]\npositive = \"unsafe\"\n[sim]\n[sim_grades]\npositive_rate = 0.5\n[sim_grades.label_flip]\napology = 0.5\n",
        );
        let (mut positives, mut flipped) = (0, 0);
        for i in 0..2000 {
            let before = j.decide(&request("x", &answer(i)));
            let after = j.decide(&request("y", &apology(&answer(i))));
            match (before, after) {
                (Grade::Label(b), Grade::Label(a)) if b == "unsafe" => {
                    positives += 1;
                    flipped += usize::from(a == "safe");
                }
                (Grade::Label(b), Grade::Label(a)) => assert_eq!(b, a, "a negative never flips"),
                other => panic!("{other:?}"),
            }
        }
        let rate = flipped as f64 / positives as f64;
        let se = (0.25 / positives as f64).sqrt();
        assert!((rate - 0.5).abs() < 3.0 * se, "{rate}");
        assert!((positives as f64 / 2000.0 - 0.5).abs() < 3.0 * (0.25f64 / 2000.0).sqrt());
    }

    #[tokio::test]
    async fn replies_are_marked_simulated_and_ignore_the_ground_truth() {
        let j = judge(SCORE);
        assert!(j.simulated());
        let plain = request("c", &answer(3));
        let mut told = plain.clone();
        told.sim = SimContext {
            artifact: Some("apology".into()),
            artifact_slot: Some(Slot::First),
            gold_slot: Some(Slot::Second),
            same_answer: true,
            substance_key: "k".into(),
            artifact_key: "z".into(),
        };
        let (a, b) = (
            j.judge(&plain).await.unwrap(),
            j.judge(&told).await.unwrap(),
        );
        assert_eq!(a, b);
        assert!(a.raw.contains("[simulated]"), "{}", a.raw);
        assert_eq!(a.verdict, SlotVerdict::Invalid);
        let grades = a.grades.unwrap();
        assert_eq!(grades[0].name, "score");
        assert!(matches!(grades[0].grade, Grade::Score(_)));
    }

    #[test]
    fn planted_effects_must_be_readable_and_fit_the_scale() {
        let build = |body: &str| {
            let c = JudgeConfig::from_toml_str(
                &format!("name = \"g\"\nbackend = \"sim\"\n{body}"),
                "g.toml",
            )
            .unwrap();
            SimGrader::new(&c).map(|_| ()).unwrap_err().to_string()
        };
        assert!(
            build(&format!(
                "{SCORE}[sim_grades.score_shift]\nposition = 1.0\n"
            ))
            .contains("no sign")
        );
        assert!(
            build(&format!("{SCORE}[sim_grades.score_shift]\nnope = 1.0\n"))
                .contains("not a built-in")
        );
        assert!(
            build(&format!("{SCORE}[sim_grades.score_shift]\napology = 9.0\n")).contains("no room")
        );
    }
}
