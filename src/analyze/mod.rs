//! From verdicts to findings: maps every stored verdict back to answer identity and computes, per
//! judge and artifact, Chen's tie-detection score T and winrate shift WR, the flip rate against the
//! baseline with its direction, the judge's own run-to-run noise, position consistency and gold
//! accuracy. Pure: it reads call records and returns a [`Summary`]; it never calls a judge.

use crate::dataset::{Dataset, Pair, Preference};
use crate::design::{ConditionKind, Order, PerturbedAnswers, Plan, Side};
use crate::judge::{FaultKind, SlotVerdict};
use crate::run::CallRecord;
use crate::stats::{self, BootstrapConfig, BootstrapMethod};
pub mod trust;

pub use trust::{Trust, TrustThresholds, TrustVerdict};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Significance level used for every test and flag.
pub const ALPHA: f64 = 0.05;

/// Settings of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Bootstrap resamples for clustered intervals.
    pub bootstrap_resamples: usize,
    /// Seed of every bootstrap (mixed with judge, artifact and metric names).
    pub seed: u64,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Thresholds of the trust verdict.
    pub trust: TrustThresholds,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            bootstrap_resamples: 2000,
            seed: 0,
            confidence: 0.95,
            trust: TrustThresholds::default(),
        }
    }
}

/// An estimate with its interval and, where a test applies, its p-values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate (`None` when n = 0).
    pub estimate: Option<f64>,
    /// Lower bound of the 95% interval.
    pub ci_low: Option<f64>,
    /// Upper bound of the 95% interval.
    pub ci_high: Option<f64>,
    /// How the interval was formed.
    pub ci_method: String,
    /// Number of observations the estimate rests on.
    pub n: u64,
    /// Raw p-value of the test named in `test`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Holm-adjusted p-value over the family named in `p_family`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    /// The test behind `p_value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The multiplicity family of `p_adjusted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_family: Option<String>,
}

impl Estimate {
    fn empty(ci_method: &str) -> Estimate {
        Estimate {
            estimate: None,
            ci_low: None,
            ci_high: None,
            ci_method: ci_method.to_string(),
            n: 0,
            p_value: None,
            p_adjusted: None,
            test: None,
            p_family: None,
        }
    }

    /// True when the Holm-adjusted p-value is below [`ALPHA`].
    pub fn significant(&self) -> bool {
        self.p_adjusted.is_some_and(|p| p < ALPHA)
    }

    /// True when `value` lies inside the interval.
    pub fn covers(&self, value: f64) -> bool {
        matches!((self.ci_low, self.ci_high), (Some(l), Some(h)) if l <= value && value <= h)
    }
}

/// Tie detection (Chen Eq. 3): X against artifact(X).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TieDetection {
    /// T in [-1, 1]: P(prefers artifact) - P(prefers original); for position, first slot.
    #[serde(flatten)]
    pub score: Estimate,
    /// Verdicts for the artifact copy (position: the first slot).
    pub prefers_artifact: u64,
    /// Verdicts for the original (position: the second slot).
    pub prefers_original: u64,
    /// Tie verdicts.
    pub ties: u64,
    /// Unparseable verdicts (excluded from T, shown here).
    pub invalid: u64,
    /// Calls that failed (no verdict).
    pub failed: u64,
}

/// Winrate shift (Chen Eq. 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinrateShift {
    /// WR in [-1, 1], Chen's net-preference units.
    #[serde(flatten)]
    pub shift: Estimate,
    /// Pairs with at least one valid verdict.
    pub pairs: u64,
    /// Unparseable verdicts (excluded).
    pub invalid: u64,
    /// Calls that failed (no verdict).
    pub failed: u64,
}

/// Verdict changes against the baseline, with their direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlipRate {
    /// Share of comparisons whose verdict changed (Wilson interval; exact McNemar on direction).
    #[serde(flatten)]
    pub rate: Estimate,
    /// Changes toward the perturbed answer (position: toward the first slot).
    pub toward: u64,
    /// Changes away from it.
    pub away: u64,
    /// Comparisons where either verdict was invalid (excluded from the rate, shown here).
    pub invalid_comparisons: u64,
    /// Comparisons with a failed call.
    pub failed_comparisons: u64,
}

/// All metrics of one judge on one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactResult {
    /// Artifact id.
    pub artifact: String,
    /// Chen's T.
    pub tie_detection: TieDetection,
    /// Chen's WR.
    pub winrate_shift: WinrateShift,
    /// Flip rate against the baseline.
    pub flip_rate: FlipRate,
    /// Artifact flip rate minus the judge's run-to-run flip rate (paired cluster bootstrap).
    pub excess_flip_rate: Estimate,
    /// CALM robustness rate, 1 - flip rate.
    pub robustness_rate: Option<f64>,
    /// True when any of T, WR or the flip direction is significant after Holm correction.
    pub significant: bool,
    /// For simulated judges: the planted preference and whether T's interval covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted: Option<Planted>,
}

/// A simulated judge's planted effect and whether the audit recovered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planted {
    /// The declared value, in T units.
    pub value: f64,
    /// True when T's 95% interval contains it.
    pub recovered: bool,
}

/// MT-Bench position consistency over the baseline's two orders (first repeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionConsistency {
    /// Pairs with a verdict in both orders.
    pub n: u64,
    /// Same winner (or tie) in both orders.
    pub consistent: u64,
    /// The first slot won both times.
    pub prefers_first: u64,
    /// The second slot won both times.
    pub prefers_second: u64,
    /// A win in one order and a tie in the other.
    pub other: u64,
    /// Pairs with an invalid or failed verdict.
    pub error: u64,
    /// `consistent / n` with a Wilson interval.
    pub rate: Estimate,
}

/// Baseline behaviour of a judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineResult {
    /// Position consistency.
    pub position_consistency: PositionConsistency,
    /// Share of baseline verdicts that changed between repeat 0 and 1 (Chen's 1 - SSC).
    pub noise_flip_rate: Estimate,
    /// Agreement with gold labels over baseline verdicts (ties count as wrong, invalid excluded).
    pub gold_accuracy: Estimate,
    /// Unparseable baseline verdicts.
    pub invalid: u64,
}

/// Call counts of one judge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Calls in the plan.
    pub planned: u64,
    /// Calls with a verdict (including invalid ones).
    pub completed: u64,
    /// Calls that failed after retries or were not sent.
    pub failed: u64,
    /// Completed calls whose verdict was unparseable.
    pub invalid: u64,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens reported.
    pub output_tokens: u64,
}

/// Everything about one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeResult {
    /// Judge name.
    pub name: String,
    /// True for simulated judges.
    pub simulated: bool,
    /// Call counts.
    pub calls: CallCounts,
    /// Faults by kind (every failed attempt).
    pub faults: BTreeMap<FaultKind, u64>,
    /// Why the judge was stopped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Baseline behaviour.
    pub baseline: BaselineResult,
    /// One entry per artifact, in plan order.
    pub artifacts: Vec<ArtifactResult>,
    /// Per-category gold accuracy and pooled flip rate (Chen Eq. 6 by category).
    pub categories: Vec<CategoryResult>,
    /// ADOPT / CAUTION / REJECT with reasons.
    pub trust: TrustVerdict,
    /// Plain-language findings, strongest first.
    pub findings: Vec<String>,
}

/// One category of pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryResult {
    /// Category name (`(none)` for pairs without one).
    pub category: String,
    /// Pairs in the category.
    pub pairs: u64,
    /// Agreement with gold labels over baseline verdicts.
    pub gold_accuracy: Estimate,
    /// Flip rate against the baseline pooled over every text artifact's shift calls.
    pub flip_rate: Estimate,
}

/// Inputs the analysis needs besides the records.
pub struct AnalysisInput<'a> {
    /// The dataset.
    pub dataset: &'a Dataset,
    /// The plan the records belong to.
    pub plan: &'a Plan,
    /// Every finished call.
    pub records: &'a [CallRecord],
    /// Simulated judges' names and planted artifact preferences (position under `position`).
    pub planted: &'a BTreeMap<String, BTreeMap<String, f64>>,
    /// Which judges are simulated.
    pub simulated: &'a BTreeMap<String, bool>,
    /// Faults per judge and kind.
    pub faults: &'a BTreeMap<String, BTreeMap<FaultKind, u64>>,
    /// Stopped judges and why.
    pub stopped: &'a BTreeMap<String, String>,
    /// Perturbed answers (for flipped examples).
    pub perturbed: &'a PerturbedAnswers,
}

/// How many flipped examples to keep per judge and artifact.
pub const EXAMPLES_PER_CELL: usize = 3;

/// A verdict that changed when the artifact was added: original and perturbed answer side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlipExample {
    /// Judge name.
    pub judge: String,
    /// Artifact id.
    pub artifact: String,
    /// Pair id.
    pub pair_id: String,
    /// The prompt.
    pub prompt: String,
    /// The perturbed answer's identity.
    pub side: Side,
    /// Presentation order of both calls.
    pub order: Order,
    /// The answer before the artifact.
    pub original: String,
    /// The answer with the artifact.
    pub perturbed: String,
    /// Byte ranges of `perturbed` that were injected or moved.
    pub injected: Vec<std::ops::Range<usize>>,
    /// The other answer of the pair (unchanged).
    pub other: String,
    /// Baseline outcome for the perturbed answer: `wins`, `tie` or `loses`.
    pub before: String,
    /// Outcome with the artifact.
    pub after: String,
    /// `toward` (the perturbed answer gained) or `away`.
    pub direction: String,
}

fn outcome_word(score: i8) -> &'static str {
    match score {
        1 => "wins",
        0 => "tie",
        _ => "loses",
    }
}

/// Pick up to [`EXAMPLES_PER_CELL`] flipped shift comparisons per judge and artifact, in plan
/// order (deterministic).
pub fn flipped_examples(input: &AnalysisInput<'_>) -> Vec<FlipExample> {
    let pairs = &input.dataset.pairs;
    let mut verdicts: HashMap<&str, Option<SlotVerdict>> = HashMap::new();
    for record in input.records {
        verdicts.insert(record.call_id.as_str(), record.verdict);
    }
    let mut baseline_ids: HashMap<(&str, usize, Order), &str> = HashMap::new();
    for spec in &input.plan.calls {
        if spec.kind == ConditionKind::Baseline && spec.repeat == 0 {
            baseline_ids.insert(
                (spec.judge.as_str(), spec.pair_index, spec.order),
                spec.id.as_str(),
            );
        }
    }
    let mut kept: HashMap<(&str, &str), usize> = HashMap::new();
    let mut examples = Vec::new();
    for spec in input
        .plan
        .calls
        .iter()
        .filter(|c| c.kind == ConditionKind::Shift)
    {
        let (Some(artifact), Some(side)) = (spec.artifact.as_deref(), spec.side) else {
            continue;
        };
        let count = kept.entry((spec.judge.as_str(), artifact)).or_default();
        if *count >= EXAMPLES_PER_CELL {
            continue;
        }
        let side_first = (spec.order == Order::Ab) == (side == Side::A);
        let after = slot_score(
            verdicts.get(spec.id.as_str()).copied().flatten(),
            side_first,
        );
        let before = baseline_ids
            .get(&(spec.judge.as_str(), spec.pair_index, spec.order))
            .and_then(|id| verdicts.get(id).copied().flatten());
        let before = slot_score(before, side_first);
        let (Some(Some(x)), Some(Some(y))) = (before, after) else {
            continue;
        };
        if x == y {
            continue;
        }
        let (Some(pair), Some(perturbation)) = (
            pairs.get(spec.pair_index),
            input.perturbed.get(artifact, spec.pair_index, side),
        ) else {
            continue;
        };
        *count += 1;
        examples.push(FlipExample {
            judge: spec.judge.clone(),
            artifact: artifact.to_string(),
            pair_id: pair.id.clone(),
            prompt: pair.prompt.clone(),
            side,
            order: spec.order,
            original: crate::design::answer(pair, side).to_string(),
            perturbed: perturbation.text.clone(),
            injected: perturbation.injected.clone(),
            other: crate::design::answer(pair, side.other()).to_string(),
            before: outcome_word(x).into(),
            after: outcome_word(y).into(),
            direction: if y > x { "toward" } else { "away" }.into(),
        });
    }
    examples
}

/// Outcome of one call from one answer's point of view: +1 wins, 0 tie, -1 loses; `None` for
/// invalid; the outer `Option` is `None` when the call failed or is missing.
type Score = Option<Option<i8>>;

fn slot_score(verdict: Option<SlotVerdict>, our_slot_is_first: bool) -> Score {
    verdict.map(|v| match v {
        SlotVerdict::First => Some(if our_slot_is_first { 1 } else { -1 }),
        SlotVerdict::Second => Some(if our_slot_is_first { -1 } else { 1 }),
        SlotVerdict::Tie => Some(0),
        SlotVerdict::Invalid => None,
    })
}

fn mix_seed(seed: u64, parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Analyse every judge of the plan.
pub fn analyze(input: &AnalysisInput<'_>, options: &AnalysisOptions) -> Vec<JudgeResult> {
    let pairs = &input.dataset.pairs;
    let pair_index: HashMap<&str, usize> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut results: Vec<JudgeResult> = input
        .plan
        .judges
        .iter()
        .map(|judge| analyze_judge(judge, input, &pair_index, options))
        .collect();
    adjust_p_values(&mut results);
    for result in &mut results {
        for artifact in &mut result.artifacts {
            artifact.significant = artifact.tie_detection.score.significant()
                || artifact.winrate_shift.shift.significant()
                || artifact.flip_rate.rate.significant();
        }
        result.trust = trust::verdict(result, &options.trust);
        result.findings = findings(result);
    }
    results
}

fn analyze_judge(
    judge: &str,
    input: &AnalysisInput<'_>,
    pair_index: &HashMap<&str, usize>,
    options: &AnalysisOptions,
) -> JudgeResult {
    let pairs = &input.dataset.pairs;
    let mut lookup = HashMap::new();
    let mut calls = CallCounts::default();
    // Tie-detection calls per artifact, from the plan, so failed or missing calls are counted.
    let mut tie_calls: HashMap<&str, Vec<TieCall>> = HashMap::new();
    for spec in input.plan.calls.iter().filter(|c| c.judge == judge) {
        calls.planned += 1;
        if spec.kind == ConditionKind::TieDetection
            && let (Some(artifact), Some(side)) = (spec.artifact.as_deref(), spec.side)
        {
            tie_calls.entry(artifact).or_default().push(TieCall {
                pair: spec.pair_index,
                side,
                order: spec.order,
                repeat: spec.repeat,
            });
        }
    }
    for record in input.records.iter().filter(|r| r.judge == judge) {
        let Some(&index) = pair_index.get(record.pair_id.as_str()) else {
            continue;
        };
        match record.verdict {
            Some(verdict) => {
                calls.completed += 1;
                if verdict == SlotVerdict::Invalid {
                    calls.invalid += 1;
                }
            }
            None => calls.failed += 1,
        }
        if let Some(usage) = record.usage {
            calls.input_tokens += usage.input_tokens;
            calls.output_tokens += usage.output_tokens;
        }
        lookup.insert(
            (
                index,
                record.kind,
                record.artifact.clone(),
                record.side,
                record.order,
                record.repeat,
            ),
            record,
        );
    }
    // Missing records (a stopped or unfinished run) count as failed calls.
    calls.failed = calls.planned.saturating_sub(calls.completed);
    let get = |pair: usize,
               kind: ConditionKind,
               artifact: Option<&str>,
               side: Option<Side>,
               order: Order,
               repeat: u32|
     -> Option<SlotVerdict> {
        lookup
            .get(&(
                pair,
                kind,
                artifact.map(str::to_string),
                side,
                order,
                repeat,
            ))
            .and_then(|r: &&CallRecord| r.verdict)
    };

    let boot = |parts: &[&str]| BootstrapConfig {
        resamples: options.bootstrap_resamples,
        seed: mix_seed(options.seed, parts),
        confidence: options.confidence,
        method: BootstrapMethod::Percentile,
    };

    let baseline = baseline_result(pairs, &get, input.plan.options.repeats, options);
    let planted = input.planted.get(judge);
    let artifacts = input
        .plan
        .artifacts
        .iter()
        .map(|artifact| {
            let ties = tie_calls
                .get(artifact.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let tie_detection = tie_detection(
                artifact,
                pairs.len(),
                ties,
                &get,
                &boot(&[judge, artifact, "T"]),
            );
            let config = boot(&[judge, artifact]);
            let mut result = if artifact == "position" {
                position_result(
                    tie_detection,
                    pairs,
                    &get,
                    input.plan.options.repeats,
                    &config,
                    options,
                )
            } else {
                artifact_result(
                    artifact,
                    tie_detection,
                    pairs,
                    &get,
                    input.plan.options.repeats,
                    &config,
                    options,
                )
            };
            if let Some(value) = planted.map(|p| p.get(artifact).copied().unwrap_or(0.0)) {
                result.planted = Some(Planted {
                    value,
                    recovered: result.tie_detection.score.covers(value),
                });
            }
            result
        })
        .collect();
    let categories = category_results(
        pairs,
        &get,
        &input.plan.artifacts,
        input.plan.options.repeats,
        options,
    );
    JudgeResult {
        name: judge.to_string(),
        simulated: input.simulated.get(judge).copied().unwrap_or(false),
        calls,
        faults: input.faults.get(judge).cloned().unwrap_or_default(),
        stopped: input.stopped.get(judge).cloned(),
        baseline,
        artifacts,
        categories,
        trust: TrustVerdict {
            verdict: Trust::Adopt,
            reasons: Vec::new(),
            passed: Vec::new(),
        },
        findings: Vec::new(),
    }
}

fn category_results(
    pairs: &[Pair],
    get: &Getter<'_>,
    artifacts: &[String],
    repeats: u32,
    options: &AnalysisOptions,
) -> Vec<CategoryResult> {
    #[derive(Default)]
    struct Tally {
        pairs: u64,
        correct: u64,
        gold_n: u64,
        flips: u64,
        flip_n: u64,
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        let tally = tallies
            .entry(pair.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_default();
        tally.pairs += 1;
        for order in Order::BOTH {
            let a_first = order == Order::Ab;
            if let Some(gold) = pair.preferred.filter(|p| *p != Preference::Tie) {
                for repeat in 0..repeats.max(1) {
                    if let Some(Some(score)) = slot_score(
                        get(i, ConditionKind::Baseline, None, None, order, repeat),
                        a_first,
                    ) {
                        tally.gold_n += 1;
                        let wanted = if gold == Preference::A { 1 } else { -1 };
                        tally.correct += u64::from(score == wanted);
                    }
                }
            }
            let before = slot_score(
                get(i, ConditionKind::Baseline, None, None, order, 0),
                a_first,
            );
            for artifact in artifacts.iter().filter(|a| a.as_str() != "position") {
                for side in [Side::A, Side::B] {
                    let after = slot_score(
                        get(
                            i,
                            ConditionKind::Shift,
                            Some(artifact),
                            Some(side),
                            order,
                            0,
                        ),
                        a_first,
                    );
                    if let (Some(Some(x)), Some(Some(y))) = (before, after) {
                        tally.flip_n += 1;
                        tally.flips += u64::from(x != y);
                    }
                }
            }
        }
    }
    tallies
        .into_iter()
        .map(|(category, t)| CategoryResult {
            category,
            pairs: t.pairs,
            gold_accuracy: wilson_estimate(t.correct, t.gold_n, options.confidence),
            flip_rate: wilson_estimate(t.flips, t.flip_n, options.confidence),
        })
        .collect()
}

type Getter<'a> = dyn Fn(usize, ConditionKind, Option<&str>, Option<Side>, Order, u32) -> Option<SlotVerdict>
    + 'a;

fn wilson_estimate(successes: u64, n: u64, confidence: f64) -> Estimate {
    if n == 0 {
        return Estimate::empty("wilson");
    }
    let interval = stats::wilson(successes, n, confidence);
    Estimate {
        estimate: Some(successes as f64 / n as f64),
        ci_low: Some(interval.low),
        ci_high: Some(interval.high),
        ci_method: "wilson".into(),
        n,
        p_value: None,
        p_adjusted: None,
        test: None,
        p_family: None,
    }
}

/// Mean of per-cluster sums over per-cluster counts, with a clustered percentile bootstrap.
fn clustered_mean(sums: &[f64], counts: &[f64], config: &BootstrapConfig) -> Estimate {
    let n: f64 = counts.iter().sum();
    if n == 0.0 {
        return Estimate::empty("cluster bootstrap (percentile, by pair)");
    }
    let estimate = sums.iter().sum::<f64>() / n;
    // Pairs without a valid verdict carry no information; dropping them keeps resamples defined.
    let kept: Vec<usize> = (0..sums.len()).filter(|&i| counts[i] > 0.0).collect();
    let interval = stats::cluster_bootstrap(
        kept.len(),
        |draw| {
            let (s, c) = draw.iter().fold((0.0, 0.0), |(s, c), &i| {
                (s + sums[kept[i]], c + counts[kept[i]])
            });
            s / c
        },
        config,
    );
    Estimate {
        estimate: Some(estimate),
        ci_low: interval.map(|i| i.low),
        ci_high: interval.map(|i| i.high),
        ci_method: "cluster bootstrap (percentile, by pair)".into(),
        n: n as u64,
        p_value: None,
        p_adjusted: None,
        test: None,
        p_family: None,
    }
}

fn sign_counts(net_per_pair: &[f64]) -> (u64, u64) {
    let positive = net_per_pair.iter().filter(|v| **v > 0.0).count() as u64;
    let negative = net_per_pair.iter().filter(|v| **v < 0.0).count() as u64;
    (positive, negative)
}

fn baseline_result(
    pairs: &[Pair],
    get: &Getter<'_>,
    repeats: u32,
    options: &AnalysisOptions,
) -> BaselineResult {
    let mut consistency = PositionConsistency {
        n: 0,
        consistent: 0,
        prefers_first: 0,
        prefers_second: 0,
        other: 0,
        error: 0,
        rate: Estimate::empty("wilson"),
    };
    let (mut noise_flips, mut noise_n) = (0u64, 0u64);
    let (mut correct, mut gold_n, mut invalid) = (0u64, 0u64, 0u64);
    for (i, pair) in pairs.iter().enumerate() {
        let ab = get(i, ConditionKind::Baseline, None, None, Order::Ab, 0);
        let ba = get(i, ConditionKind::Baseline, None, None, Order::Ba, 0);
        // Identity score of answer a in each order.
        let a_ab = slot_score(ab, true);
        let a_ba = slot_score(ba, false);
        match (a_ab, a_ba) {
            (Some(Some(x)), Some(Some(y))) => {
                consistency.n += 1;
                if x == y {
                    consistency.consistent += 1;
                } else if x == 1 && y == -1 {
                    consistency.prefers_first += 1;
                } else if x == -1 && y == 1 {
                    consistency.prefers_second += 1;
                } else {
                    consistency.other += 1;
                }
            }
            _ => consistency.error += 1,
        }
        for order in Order::BOTH {
            for repeat in 0..repeats {
                let verdict = get(i, ConditionKind::Baseline, None, None, order, repeat);
                if verdict == Some(SlotVerdict::Invalid) {
                    invalid += 1;
                }
                if let Some(gold) = pair.preferred.filter(|p| *p != Preference::Tie) {
                    let a_first = order == Order::Ab;
                    if let Some(Some(score)) = slot_score(verdict, a_first) {
                        gold_n += 1;
                        let a_wins = score == 1;
                        let b_wins = score == -1;
                        if (gold == Preference::A && a_wins) || (gold == Preference::B && b_wins) {
                            correct += 1;
                        }
                    }
                }
            }
            if repeats >= 2 {
                let r0 = get(i, ConditionKind::Baseline, None, None, order, 0);
                let r1 = get(i, ConditionKind::Baseline, None, None, order, 1);
                if let (Some(x), Some(y)) = (r0, r1)
                    && x != SlotVerdict::Invalid
                    && y != SlotVerdict::Invalid
                {
                    noise_n += 1;
                    noise_flips += u64::from(x != y);
                }
            }
        }
    }
    consistency.rate = wilson_estimate(consistency.consistent, consistency.n, options.confidence);
    BaselineResult {
        position_consistency: consistency,
        noise_flip_rate: wilson_estimate(noise_flips, noise_n, options.confidence),
        gold_accuracy: wilson_estimate(correct, gold_n, options.confidence),
        invalid,
    }
}

/// Per-pair flip counts of the noise baseline: (flips, comparisons) for each pair.
fn noise_per_pair(pairs: &[Pair], get: &Getter<'_>, repeats: u32) -> Vec<(f64, f64)> {
    (0..pairs.len())
        .map(|i| {
            if repeats < 2 {
                return (0.0, 0.0);
            }
            Order::BOTH.iter().fold((0.0, 0.0), |(f, n), &order| {
                let r0 = get(i, ConditionKind::Baseline, None, None, order, 0);
                let r1 = get(i, ConditionKind::Baseline, None, None, order, 1);
                match (r0, r1) {
                    (Some(x), Some(y))
                        if x != SlotVerdict::Invalid && y != SlotVerdict::Invalid =>
                    {
                        (f + f64::from(u8::from(x != y)), n + 1.0)
                    }
                    _ => (f, n),
                }
            })
        })
        .collect()
}

fn excess_flip(
    artifact_flips: &[(f64, f64)],
    noise: &[(f64, f64)],
    config: &BootstrapConfig,
) -> Estimate {
    let total = |v: &[(f64, f64)], idx: &mut dyn Iterator<Item = usize>| {
        idx.fold((0.0, 0.0), |(f, n), i| (f + v[i].0, n + v[i].1))
    };
    let all = 0..artifact_flips.len();
    let (af, an) = total(artifact_flips, &mut all.clone());
    let (nf, nn) = total(noise, &mut all.clone());
    const METHOD: &str = "paired cluster bootstrap (percentile, by pair)";
    if an == 0.0 || nn == 0.0 {
        return Estimate::empty(METHOD);
    }
    let estimate = af / an - nf / nn;
    let interval = stats::cluster_bootstrap(
        artifact_flips.len(),
        |draw| {
            let (af, an) = total(artifact_flips, &mut draw.iter().copied());
            let (nf, nn) = total(noise, &mut draw.iter().copied());
            if an == 0.0 || nn == 0.0 {
                f64::NAN
            } else {
                af / an - nf / nn
            }
        },
        config,
    );
    Estimate {
        estimate: Some(estimate),
        ci_low: interval.map(|i| i.low),
        ci_high: interval.map(|i| i.high),
        ci_method: METHOD.into(),
        n: an as u64,
        p_value: None,
        p_adjusted: None,
        test: None,
        p_family: None,
    }
}

fn tie_counts(scores: &[Score]) -> (u64, u64, u64, u64, u64) {
    let mut counts = (0, 0, 0, 0, 0);
    for score in scores {
        match score {
            Some(Some(1)) => counts.0 += 1,
            Some(Some(-1)) => counts.1 += 1,
            Some(Some(_)) => counts.2 += 1,
            Some(None) => counts.3 += 1,
            None => counts.4 += 1,
        }
    }
    counts
}

/// One planned tie-detection call.
struct TieCall {
    pair: usize,
    side: Side,
    order: Order,
    repeat: u32,
}

/// T from the planned tie-detection calls: J = +1 when the artifact copy wins (for `position`,
/// when the first slot wins; both slots hold the same text there).
fn tie_detection(
    artifact: &str,
    n_pairs: usize,
    calls: &[TieCall],
    get: &Getter<'_>,
    config: &BootstrapConfig,
) -> TieDetection {
    let mut per_pair: Vec<Vec<Score>> = vec![Vec::new(); n_pairs];
    for call in calls {
        let verdict = get(
            call.pair,
            ConditionKind::TieDetection,
            Some(artifact),
            Some(call.side),
            call.order,
            call.repeat,
        );
        let artifact_first = artifact == "position" || call.order == Order::Ab;
        per_pair[call.pair].push(slot_score(verdict, artifact_first));
    }
    let sums: Vec<f64> = per_pair
        .iter()
        .map(|s| s.iter().filter_map(|x| x.flatten()).map(f64::from).sum())
        .collect();
    let counts: Vec<f64> = per_pair
        .iter()
        .map(|s| s.iter().filter(|x| matches!(x, Some(Some(_)))).count() as f64)
        .collect();
    let mut score = clustered_mean(&sums, &counts, config);
    if score.n > 0 {
        let (positive, negative) = sign_counts(&sums);
        score.p_value = Some(stats::sign_test(positive, negative));
        score.test = Some("exact sign test on per-pair net preference".into());
    }
    let all: Vec<Score> = per_pair.iter().flatten().copied().collect();
    let (prefers_artifact, prefers_original, ties, invalid, failed) = tie_counts(&all);
    TieDetection {
        score,
        prefers_artifact,
        prefers_original,
        ties,
        invalid,
        failed,
    }
}

fn flip_rate(comparisons: &[(Score, Score)], confidence: f64) -> FlipRate {
    let (mut toward, mut away, mut same, mut invalid, mut failed) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (before, after) in comparisons {
        match (before, after) {
            (None, _) | (_, None) => failed += 1,
            (Some(None), _) | (_, Some(None)) => invalid += 1,
            (Some(Some(x)), Some(Some(y))) => {
                if y > x {
                    toward += 1;
                } else if y < x {
                    away += 1;
                } else {
                    same += 1;
                }
            }
        }
    }
    let n = toward + away + same;
    let mut rate = wilson_estimate(toward + away, n, confidence);
    if n > 0 {
        rate.p_value = Some(stats::mcnemar_exact(toward, away));
        rate.test = Some("exact McNemar on flips toward vs away".into());
    }
    FlipRate {
        rate,
        toward,
        away,
        invalid_comparisons: invalid,
        failed_comparisons: failed,
    }
}

fn artifact_result(
    artifact: &str,
    tie_detection: TieDetection,
    pairs: &[Pair],
    get: &Getter<'_>,
    repeats: u32,
    config: &BootstrapConfig,
    options: &AnalysisOptions,
) -> ArtifactResult {
    let n = pairs.len();

    // Shift: the perturbed answer's score, and the same answer's score in the baseline.
    let mut comparisons = Vec::new();
    let mut shift_sums = vec![0.0; n];
    let mut shift_counts = vec![[0.0f64; 2]; n];
    let mut shift_side_sums = vec![[0.0f64; 2]; n];
    let mut per_pair_flips = vec![(0.0, 0.0); n];
    let (mut wr_invalid, mut wr_failed) = (0u64, 0u64);
    for i in 0..n {
        for (s, side) in [Side::A, Side::B].into_iter().enumerate() {
            for order in Order::BOTH {
                let side_first = (order == Order::Ab) == (side == Side::A);
                let after = slot_score(
                    get(
                        i,
                        ConditionKind::Shift,
                        Some(artifact),
                        Some(side),
                        order,
                        0,
                    ),
                    side_first,
                );
                let before = slot_score(
                    get(i, ConditionKind::Baseline, None, None, order, 0),
                    side_first,
                );
                match after {
                    Some(Some(score)) => {
                        shift_sums[i] += f64::from(score);
                        shift_side_sums[i][s] += f64::from(score);
                        shift_counts[i][s] += 1.0;
                    }
                    Some(None) => wr_invalid += 1,
                    None => wr_failed += 1,
                }
                if let (Some(Some(x)), Some(Some(y))) = (before, after) {
                    per_pair_flips[i].0 += f64::from(u8::from(x != y));
                    per_pair_flips[i].1 += 1.0;
                }
                comparisons.push((before, after));
            }
        }
    }
    let winrate_shift = winrate_shift(
        &shift_side_sums,
        &shift_counts,
        &shift_sums,
        wr_invalid,
        wr_failed,
        config,
    );
    let flip_rate = flip_rate(&comparisons, options.confidence);
    let noise = noise_per_pair(pairs, get, repeats);
    let mut excess_config = *config;
    excess_config.seed = config.seed.wrapping_add(1);
    let excess_flip_rate = excess_flip(&per_pair_flips, &noise, &excess_config);
    ArtifactResult {
        artifact: artifact.to_string(),
        robustness_rate: flip_rate.rate.estimate.map(|f| 1.0 - f),
        tie_detection,
        winrate_shift,
        flip_rate,
        excess_flip_rate,
        significant: false,
        planted: None,
    }
}

/// WR = ½(mean score of a' + mean score of b'), each side's mean over its valid calls (Chen Eq. 5,
/// App. G); the interval resamples pairs.
fn winrate_shift(
    side_sums: &[[f64; 2]],
    side_counts: &[[f64; 2]],
    net_per_pair: &[f64],
    invalid: u64,
    failed: u64,
    config: &BootstrapConfig,
) -> WinrateShift {
    let statistic = |draw: &mut dyn Iterator<Item = usize>| {
        let mut totals = [[0.0f64; 2]; 2];
        for i in draw {
            for s in 0..2 {
                totals[s][0] += side_sums[i][s];
                totals[s][1] += side_counts[i][s];
            }
        }
        if totals[0][1] == 0.0 || totals[1][1] == 0.0 {
            f64::NAN
        } else {
            0.5 * (totals[0][0] / totals[0][1] + totals[1][0] / totals[1][1])
        }
    };
    let pairs_with_data = side_counts.iter().filter(|c| c[0] + c[1] > 0.0).count() as u64;
    let n_calls: f64 = side_counts.iter().map(|c| c[0] + c[1]).sum();
    const METHOD: &str = "cluster bootstrap (percentile, by pair)";
    let estimate = statistic(&mut (0..side_sums.len()));
    let mut shift = if estimate.is_finite() {
        let interval = stats::cluster_bootstrap(
            side_sums.len(),
            |draw| statistic(&mut draw.iter().copied()),
            config,
        );
        let (positive, negative) = sign_counts(net_per_pair);
        Estimate {
            estimate: Some(estimate),
            ci_low: interval.map(|i| i.low),
            ci_high: interval.map(|i| i.high),
            ci_method: METHOD.into(),
            n: n_calls as u64,
            p_value: Some(stats::sign_test(positive, negative)),
            p_adjusted: None,
            test: Some("exact sign test on per-pair net shift".into()),
            p_family: None,
        }
    } else {
        Estimate::empty(METHOD)
    };
    shift.n = n_calls as u64;
    WinrateShift {
        shift,
        pairs: pairs_with_data,
        invalid,
        failed,
    }
}

fn position_result(
    tie_detection: TieDetection,
    pairs: &[Pair],
    get: &Getter<'_>,
    repeats: u32,
    config: &BootstrapConfig,
    options: &AnalysisOptions,
) -> ArtifactResult {
    let n = pairs.len();

    // Winrate shift from the baseline: first-slot preference ½(J_ab - J_ba) per pair and repeat.
    let mut side_sums = vec![[0.0f64; 2]; n];
    let mut side_counts = vec![[0.0f64; 2]; n];
    let mut net = vec![0.0; n];
    let (mut invalid, mut failed) = (0u64, 0u64);
    let mut comparisons = Vec::new();
    let mut per_pair_flips = vec![(0.0, 0.0); n];
    for i in 0..n {
        for repeat in 0..repeats.max(1) {
            // "Perturbed" side in slot terms: answer a moved from the first slot (ab) to the second
            // (ba). Score of the first slot: in ab it is a's score, in ba it is b's score.
            let ab = get(i, ConditionKind::Baseline, None, None, Order::Ab, repeat);
            let ba = get(i, ConditionKind::Baseline, None, None, Order::Ba, repeat);
            for (s, verdict) in [ab, ba].into_iter().enumerate() {
                match slot_score(verdict, true) {
                    Some(Some(score)) => {
                        side_sums[i][s] += f64::from(score);
                        side_counts[i][s] += 1.0;
                        net[i] += f64::from(score);
                    }
                    Some(None) => invalid += 1,
                    None => failed += 1,
                }
            }
            if repeat == 0 {
                // Conflict: a's score with a first vs a's score with a second. "Toward" = the move
                // to the second slot made the answer lose ground... reported from the first slot's
                // point of view: a flip toward the first slot means the first-shown answer gained.
                let a_first = slot_score(ab, true);
                let a_second = slot_score(ba, false);
                if let (Some(Some(x)), Some(Some(y))) = (a_first, a_second) {
                    per_pair_flips[i].0 += f64::from(u8::from(x != y));
                    per_pair_flips[i].1 += 1.0;
                }
                // Before = a's score in the second slot, after = a's score in the first slot:
                // an increase is a move toward the first slot.
                comparisons.push((a_second, a_first));
            }
        }
    }
    let winrate_shift = winrate_shift(&side_sums, &side_counts, &net, invalid, failed, config);
    let flip_rate = flip_rate(&comparisons, options.confidence);
    let noise = noise_per_pair(pairs, get, repeats);
    let mut excess_config = *config;
    excess_config.seed = config.seed.wrapping_add(1);
    let excess_flip_rate = excess_flip(&per_pair_flips, &noise, &excess_config);
    ArtifactResult {
        artifact: "position".into(),
        robustness_rate: flip_rate.rate.estimate.map(|f| 1.0 - f),
        tie_detection,
        winrate_shift,
        flip_rate,
        excess_flip_rate,
        significant: false,
        planted: None,
    }
}

/// Holm over every artifact test of the run (all judges × artifacts × {T, WR, flip direction}).
fn adjust_p_values(results: &mut [JudgeResult]) {
    const FAMILY: &str = "holm over all judge × artifact × {T, WR, flip} tests of this run";
    let mut raw = Vec::new();
    for result in results.iter() {
        for artifact in &result.artifacts {
            for estimate in [
                &artifact.tie_detection.score,
                &artifact.winrate_shift.shift,
                &artifact.flip_rate.rate,
            ] {
                if let Some(p) = estimate.p_value {
                    raw.push(p);
                }
            }
        }
    }
    let adjusted = stats::holm(&raw);
    let mut next = adjusted.into_iter();
    for result in results.iter_mut() {
        for artifact in &mut result.artifacts {
            for estimate in [
                &mut artifact.tie_detection.score,
                &mut artifact.winrate_shift.shift,
                &mut artifact.flip_rate.rate,
            ] {
                if estimate.p_value.is_some() {
                    estimate.p_adjusted = next.next();
                    estimate.p_family = Some(FAMILY.into());
                }
            }
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn rate(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A signed estimate (T, WR, excess) with its interval.
fn ci(e: &Estimate) -> String {
    ci_with(e, pct)
}

/// A rate (flip rate, consistency, accuracy) with its interval.
fn ci_rate(e: &Estimate) -> String {
    ci_with(e, rate)
}

fn ci_with(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.estimate, e.ci_low, e.ci_high) {
        (Some(v), Some(l), Some(h)) => {
            format!("{} (95% CI {} to {}, n = {})", f(v), f(l), f(h), e.n)
        }
        (Some(v), _, _) => format!("{} (n = {})", f(v), e.n),
        _ => format!("not estimable (n = {})", e.n),
    }
}

fn findings(result: &JudgeResult) -> Vec<String> {
    let mut lines = Vec::new();
    let mut scored: Vec<(f64, String)> = Vec::new();
    for artifact in &result.artifacts {
        let t = &artifact.tie_detection.score;
        if t.significant() {
            let direction = if t.estimate.unwrap_or(0.0) > 0.0 {
                if artifact.artifact == "position" {
                    "prefers the first slot"
                } else {
                    "prefers the answer with the artifact"
                }
            } else if artifact.artifact == "position" {
                "prefers the second slot"
            } else {
                "disfavours the answer with the artifact"
            };
            scored.push((
                t.estimate.unwrap_or(0.0).abs(),
                format!(
                    "{}: {direction} when the two answers are otherwise identical: T = {}, Holm-adjusted p = {:.2e}.",
                    artifact.artifact,
                    ci(t),
                    t.p_adjusted.unwrap_or(1.0)
                ),
            ));
        }
        let wr = &artifact.winrate_shift.shift;
        if wr.significant() {
            scored.push((
                wr.estimate.unwrap_or(0.0).abs(),
                format!(
                    "{}: shifts the net preference between different answers by WR = {}, Holm-adjusted p = {:.2e}.",
                    artifact.artifact,
                    ci(wr),
                    wr.p_adjusted.unwrap_or(1.0)
                ),
            ));
        }
        let flip = &artifact.flip_rate;
        if flip.rate.significant() {
            scored.push((
                flip.rate.estimate.unwrap_or(0.0),
                format!(
                    "{}: flips {} of verdicts against the baseline ({} toward, {} away; exact McNemar Holm-adjusted p = {:.2e}); excess over run-to-run noise {}.",
                    artifact.artifact,
                    ci_rate(&flip.rate),
                    flip.toward,
                    flip.away,
                    flip.rate.p_adjusted.unwrap_or(1.0),
                    ci(&artifact.excess_flip_rate)
                ),
            ));
        }
    }
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    lines.extend(scored.into_iter().map(|(_, line)| line));
    if lines.is_empty() {
        lines.push(
            "No artifact moved this judge's verdicts significantly after Holm correction (see the minimum detectable effects at this n before reading that as robustness).".into(),
        );
    }
    let pc = &result.baseline.position_consistency;
    if pc.n > 0 {
        lines.push(format!(
            "Position consistency: {} of {} pairs got the same winner in both orders ({}); {} favoured the first slot, {} the second.",
            pc.consistent,
            pc.n,
            ci_rate(&pc.rate),
            pc.prefers_first,
            pc.prefers_second
        ));
    }
    let noise = &result.baseline.noise_flip_rate;
    if noise.n > 0 {
        lines.push(format!(
            "Run-to-run noise: {} of identical baseline calls changed verdict between repeats.",
            ci_rate(noise)
        ));
    }
    let gold = &result.baseline.gold_accuracy;
    if gold.n > 0 {
        lines.push(format!("Agreement with gold labels: {}.", ci_rate(gold)));
    }
    if result.calls.invalid > 0 || result.calls.failed > 0 {
        lines.push(format!(
            "{} of {} calls gave an unparseable verdict and {} failed; they are counted, not coerced.",
            result.calls.invalid, result.calls.planned, result.calls.failed
        ));
    }
    lines
}
