//! In-process simulated audits for self-validation and benchmarks: synthetic pairs, the real
//! plan and perturbations, the real judge requests, and simulated judges that read the shown
//! texts, write a reply in the template's label format and have it parsed back
//! ([`SimJudge::judge_text`]), synchronously (no async runner, no files), so thousands of audits
//! run in seconds. The path is the one a run takes: perturb → request → judge reading the text →
//! parse.
//!
//! The statistics layer is validated against these because a simulated judge's planted
//! `artifact_preference` is exactly the expected tie-detection score T on the answers the
//! artifact changed, and its `position_bias` the expected T(position) (see
//! [`crate::judge::sim`]). The judges never see the ground truth; the analysis keeps the planted
//! values to check them.

use crate::dataset::{Pair, Preference};
use crate::design::{self, DesignOptions, PerturbedAnswers, Plan};
use crate::judge::sim::{SimJudge, better_first};
use crate::judge::{JudgeRequest, LabelProbs, SlotVerdict};
use crate::perturb::Artifact;
use crate::run::CallRecord;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const WORDS: [&str; 12] = [
    "risk", "advice", "safety", "source", "check", "doctor", "careful", "never", "always", "local",
    "guidance", "context",
];
const CATEGORIES: [&str; 4] = ["medical", "privacy", "self-harm", "misinformation"];

/// `n` synthetic pairs (ids `p0`, `p1`, …) with answers of varied length, four categories and a
/// gold label: the answer of higher simulated-world quality ([`better_first`]), which is what a
/// simulated judge's `accuracy` is measured against. Deterministic in `seed`.
pub fn synthetic_pairs(n: usize, seed: u64) -> Vec<Pair> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let text = |rng: &mut ChaCha8Rng, lead: &str| {
        let words = rng.random_range(8..40);
        let mut t = String::from(lead);
        for k in 0..words {
            t.push(' ');
            t.push_str(WORDS[(k * 7 + rng.random_range(0..WORDS.len())) % WORDS.len()]);
        }
        t.push('.');
        t
    };
    (0..n)
        .map(|i| Pair {
            id: format!("p{i}"),
            prompt: format!("Question {i}: is this safe?"),
            response_a: text(&mut rng, &format!("Answer A{i}:")),
            response_b: text(&mut rng, &format!("Answer B{i}:")),
            preferred: None,
            category: Some(CATEGORIES[i % CATEGORIES.len()].to_string()),
            label_kind: Some("safety".into()),
        })
        .map(|mut pair: Pair| {
            pair.preferred = Some(match better_first(&pair.response_a, &pair.response_b) {
                Some(true) => Preference::A,
                Some(false) => Preference::B,
                None => Preference::Tie,
            });
            pair
        })
        .collect()
}

/// A plan with its perturbations and every request built once, ready to be judged by any set of
/// simulated judges (one per plan judge).
pub struct SimulatedDesign {
    /// The plan.
    pub plan: Plan,
    /// Perturbed answers.
    pub perturbed: PerturbedAnswers,
    requests: Vec<JudgeRequest>,
    pairs: Vec<Pair>,
}

impl SimulatedDesign {
    /// Plan `judges` × `pairs` × `artifacts` and build every request.
    pub fn new(
        pairs: &[Pair],
        artifacts: &[&Artifact],
        judges: &[String],
        options: &DesignOptions,
        seed: u64,
    ) -> SimulatedDesign {
        let plan = Plan::build(judges, pairs, artifacts, options);
        let perturbed = PerturbedAnswers::compute(pairs, artifacts, seed);
        let requests = plan
            .calls
            .par_iter()
            .map(|spec| {
                design::request(spec, pairs, &perturbed).expect("plan and perturbations agree")
            })
            .collect();
        SimulatedDesign {
            plan,
            perturbed,
            requests,
            pairs: pairs.to_vec(),
        }
    }

    /// Every call of the plan judged by `judges[judge_index]`. With `label_probs`, each record
    /// also carries probabilities consistent with its verdict (0.7 on the chosen label, 0.15 on
    /// each other; a flat third for an unparseable answer), to exercise the soft metrics.
    pub fn records(&self, judges: &[SimJudge], label_probs: bool) -> Vec<CallRecord> {
        // Fields this module does not set keep their serde defaults, so records stay valid when
        // the record type grows.
        let template: CallRecord = serde_json::from_value(serde_json::json!({
            "call_id": "", "judge": "", "pair_id": "", "kind": "baseline", "artifact": null,
            "side": null, "order": "ab", "repeat": 0, "raw": null, "verdict": null,
            "label_probs": null, "usage": {"input_tokens": 100, "output_tokens": 3},
            "latency_ms": 0, "attempts": 1, "error": null, "error_kind": null
        }))
        .expect("a valid call record");
        for judge in judges {
            // As in a run: the judge learns the dataset before its first call.
            judge.learn_pairs(&self.pairs);
        }
        self.plan
            .calls
            .par_iter()
            .zip(&self.requests)
            .map(|(spec, request)| {
                let judge = &judges[spec.judge_index];
                let (raw, verdict) = judge.judge_text(request);
                let probs = label_probs.then(|| match verdict {
                    SlotVerdict::First => LabelProbs {
                        first: 0.7,
                        second: 0.15,
                        tie: 0.15,
                    },
                    SlotVerdict::Second => LabelProbs {
                        first: 0.15,
                        second: 0.7,
                        tie: 0.15,
                    },
                    SlotVerdict::Tie => LabelProbs {
                        first: 0.15,
                        second: 0.15,
                        tie: 0.7,
                    },
                    SlotVerdict::Invalid => LabelProbs {
                        first: 1.0 / 3.0,
                        second: 1.0 / 3.0,
                        tie: 1.0 / 3.0,
                    },
                });
                let mut record = template.clone();
                record.call_id = spec.id.clone();
                record.judge = spec.judge.clone();
                record.pair_id = spec.pair_id.clone();
                record.kind = spec.kind;
                record.artifact = spec.artifact.clone();
                record.side = spec.side;
                record.order = spec.order;
                record.repeat = spec.repeat;
                record.raw = Some(raw);
                record.verdict = Some(verdict);
                record.label_probs = probs;
                record
            })
            .collect()
    }
}
