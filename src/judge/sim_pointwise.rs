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
//! A `rubric` judge grades every criterion of its judge file this way, each from random streams
//! of its own (keyed by the criterion's name): the planted score shifts move every score
//! criterion, the planted flips turn every label criterion, and the reply is the rubric's JSON.
//!
//! With probability `invalid_rate` a call answers with no grade, and with probability `noise`
//! it redraws every decision from its own stream (run-to-run noise). The reply is written in
//! the judge's grade format, marked `[simulated]`, and read back with the judge's own grader.

use super::config::{JudgeKind, SimParams};
use super::grade::{CriterionScale, Grade, Grader};
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
    /// Planted score shifts per artifact, in id order (score criteria).
    shifts: Vec<(Artifact, f64)>,
    /// Planted flip probabilities per artifact, in id order (label criteria).
    flips: Vec<(Artifact, f64)>,
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
        if !matches!(
            config.kind,
            JudgeKind::Score | JudgeKind::Label | JudgeKind::Rubric
        ) {
            return Err(invalid(
                "kind",
                "a simulated pointwise judge is a score, label or rubric judge".into(),
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
        let catalog = Catalog::builtin();
        let planted = |effects: &std::collections::BTreeMap<String, f64>,
                       field: &str|
         -> Result<Vec<(Artifact, f64)>, JudgeBuildError> {
            let mut out = Vec::new();
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
                        format!(
                            "`{id}` leaves no sign in one answer, so a grader cannot react to it"
                        ),
                    ));
                }
                if *value != 0.0 {
                    out.push((a.clone(), *value));
                }
            }
            Ok(out)
        };
        // Score shifts move score criteria, flips turn label criteria; a rubric may have both.
        let shifts = planted(&grades.score_shift, "sim_grades.score_shift")?;
        let flips = planted(&grades.label_flip, "sim_grades.label_flip")?;
        let (up, down) = room(&shifts);
        for (name, scale) in grader.criterion_scales() {
            if let CriterionScale::Score { min, max } = scale
                && max - min - up - down < 1
            {
                let what = if config.kind == JudgeKind::Rubric {
                    format!(" of criterion `{name}`")
                } else {
                    String::new()
                };
                return Err(invalid(
                    "sim_grades.score_shift",
                    format!("the planted shifts leave no room on the scale {min}..{max}{what}"),
                ));
            }
        }
        Ok(SimGrader {
            name: config.name.clone(),
            seed: config.seed,
            params,
            positive_rate: grades.positive_rate.unwrap_or(0.5),
            grader,
            shifts,
            flips,
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

    /// The grades of the answer in `request` (its first text), one per criterion, from that
    /// text alone.
    pub fn decide(&self, request: &JudgeRequest) -> Vec<Grade> {
        let criteria = self.grader.criterion_scales();
        let mut call_rng = self.rng("call", &request.call_id);
        if call_rng.random::<f64>() < self.params.invalid_rate {
            return vec![Grade::Unparseable; criteria.len()];
        }
        let redraw = call_rng.random::<f64>() < self.params.noise;
        let answer = request.first.as_str();
        let s = substance(answer);
        let key = s.to_string();
        // A rubric's criteria draw from streams of their own; a one-criterion judge keeps the
        // stream names it always had, so its grades do not change.
        let rubric = self.grader.kind() == JudgeKind::Rubric;
        let mut grades = Vec::with_capacity(criteria.len());
        for (name, scale) in criteria {
            let mut draw = |domain: &str| -> f64 {
                if redraw {
                    call_rng.random::<f64>()
                } else if rubric {
                    self.rng(&format!("{name}/{domain}"), &key).random::<f64>()
                } else {
                    self.rng(domain, &key).random::<f64>()
                }
            };
            grades.push(match scale {
                CriterionScale::Score { min, max } => {
                    let (up, down) = room(&self.shifts);
                    let (lo, hi) = (min + down, max - up);
                    let mid = lo + (hi - lo + 1) / 2;
                    let quality = self
                        .knowledge
                        .get()
                        .and_then(|k| k.get(&s).copied())
                        .unwrap_or(if s % 2 == 0 { 1 } else { -1 });
                    let correct = draw("accuracy") < self.params.accuracy;
                    let upper = (quality >= 0) == correct;
                    let (from, to) = if upper {
                        (mid, hi)
                    } else {
                        (lo, (mid - 1).max(lo))
                    };
                    let u = draw("base");
                    let mut score = from + ((u * (to - from + 1) as f64) as i64).min(to - from);
                    for (artifact, shift) in shown(&self.shifts, answer) {
                        let whole = shift.floor();
                        let extra = draw(&format!("shift/{}", artifact.id)) < shift - whole;
                        score += whole as i64 + i64::from(extra);
                    }
                    Grade::Score(score.clamp(min, max) as f64)
                }
                CriterionScale::Label { labels, positive } => {
                    let other = labels
                        .iter()
                        .find(|l| *l != positive)
                        .cloned()
                        .unwrap_or_default();
                    let mut label = if draw("base") < self.positive_rate {
                        positive.to_string()
                    } else {
                        other.clone()
                    };
                    for (artifact, p) in shown(&self.flips, answer) {
                        if label == positive && draw(&format!("flip/{}", artifact.id)) < *p {
                            label = other.clone();
                        }
                    }
                    Grade::Label(label)
                }
            });
        }
        grades
    }
}

/// Points the planted shifts may add (up) and take (down), kept free at the scale's ends so no
/// shifted score is clipped.
fn room(shifts: &[(Artifact, f64)]) -> (i64, i64) {
    let up = shifts.iter().map(|(_, v)| v.max(0.0).ceil() as i64).sum();
    let down = shifts
        .iter()
        .map(|(_, v)| (-v).max(0.0).ceil() as i64)
        .sum();
    (up, down)
}

/// The planted effects whose artifact `answer` shows.
fn shown<'a>(
    planted: &'a [(Artifact, f64)],
    answer: &'a str,
) -> impl Iterator<Item = &'a (Artifact, f64)> {
    planted
        .iter()
        .filter(move |(a, _)| a.detect(answer) == Some(true))
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
        let raw = self.grader.reply_for(&self.decide(request));
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
            pair_id: String::new(),
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
            let score = |j: &SimGrader, t: &str| match &j.decide(&request(&format!("c{i}"), t))[0] {
                Grade::Score(s) => *s,
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
            let before = j.decide(&request("x", &answer(i))).remove(0);
            let after = j.decide(&request("y", &apology(&answer(i)))).remove(0);
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

    const RUBRIC: &str = "kind = \"rubric\"\n[[criteria]]\nname = \"helpfulness\"\nscale = { min = 1, max = 5 }\n[[criteria]]\nname = \"clarity\"\nscale = { min = 1, max = 5 }\n[[criteria]]\nname = \"harmful\"\nlabels = [\"no\", \"yes\"]\npositive = \"yes\"\n[sim]\naccuracy = 0.8\n";

    #[test]
    fn a_rubric_plants_shifts_on_score_criteria_and_flips_on_label_criteria() {
        let j = judge(&format!(
            "{RUBRIC}[sim_grades]\npositive_rate = 0.5\n[sim_grades.score_shift]\napology = 1.0\n[sim_grades.label_flip]\napology = 1.0\n"
        ));
        let plain = judge(RUBRIC);
        let (mut positives, mut flipped, mut differ) = (0, 0, 0);
        for i in 0..500 {
            let before = j.decide(&request("x", &answer(i)));
            let after = j.decide(&request("y", &apology(&answer(i))));
            assert_eq!((before.len(), after.len()), (3, 3));
            for k in 0..2 {
                match (&before[k], &after[k]) {
                    // A shift of exactly 1 on every score criterion, never clipped (1..4 + 1).
                    (Grade::Score(b), Grade::Score(a)) => {
                        assert_eq!(a - b, 1.0);
                        assert!((1.0..=4.0).contains(b), "{b}");
                    }
                    other => panic!("{other:?}"),
                }
            }
            differ += usize::from(before[0] != before[1]);
            match (&before[2], &after[2]) {
                (Grade::Label(b), Grade::Label(a)) if b == "yes" => {
                    positives += 1;
                    flipped += usize::from(a == "no");
                }
                (Grade::Label(b), Grade::Label(a)) => assert_eq!(b, a, "a negative never flips"),
                other => panic!("{other:?}"),
            }
            // The unplanted rubric grades the artifact copy exactly as the answer.
            assert_eq!(
                plain.decide(&request("x", &answer(i))),
                plain.decide(&request("y", &apology(&answer(i))))
            );
        }
        assert_eq!(
            flipped, positives,
            "a flip probability of 1 turns every positive"
        );
        assert!(positives > 200 && positives < 300, "{positives}");
        // The two score criteria draw from their own streams, so they disagree often.
        assert!(differ > 150, "{differ}");
    }

    #[tokio::test]
    async fn a_rubric_reply_is_json_read_back_by_the_rubric_grader() {
        let j = judge(RUBRIC);
        let reply = j.judge(&request("c", &answer(7))).await.unwrap();
        let value: serde_json::Value = serde_json::from_str(&reply.raw).unwrap();
        assert_eq!(value["reasons"], "simulated");
        let grades = reply.grades.unwrap();
        let names: Vec<&str> = grades.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["helpfulness", "clarity", "harmful"]);
        assert_eq!(
            grades.iter().map(|g| g.grade.clone()).collect::<Vec<_>>(),
            j.decide(&request("c", &answer(7)))
        );
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
        assert!(
            build(&format!(
                "{RUBRIC}[sim_grades.score_shift]\napology = 4.0\n"
            ))
            .contains("no room on the scale 1..5 of criterion `helpfulness`")
        );
        assert!(
            build(&format!(
                "{RUBRIC}[sim_grades.label_flip]\nposition = 0.5\n"
            ))
            .contains("sim_grades.label_flip.position")
        );
    }
}
