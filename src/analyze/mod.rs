//! From verdicts to findings: maps every stored verdict back to answer identity and computes, per
//! judge and artifact, Chen's tie-detection score T and winrate shift WR, the flip rate against the
//! baseline with its direction and a Stuart–Maxwell test, the judge's own run-to-run noise (SSC,
//! MSC, CALM's CR), MT-Bench position consistency, gold agreement and κ, length sensitivity, soft
//! (probability) shifts and the minimum detectable effect at the audit's size; then juries built
//! post hoc from the judges' verdicts, agreement between judges, multiplicity control and trust
//! verdicts. Pure: it reads call records and returns results; it never calls a judge.
//!
//! Layout of the submodules:
//! - `index`: records indexed once into dense per-judge byte matrices (pair × condition slot);
//! - `boot`: one clustered bootstrap pass (resampling pairs) for every statistic of a judge;
//! - `judge`: the per-judge metrics;
//! - [`jury`]: aggregation rules, juror error correlation, the jury composer;
//! - [`mitigation`]: post-hoc mitigations (swap-and-confirm, order-averaged probabilities,
//!   majority over repeats, juries) measured on the same calls;
//! - `agreement`: κ / π / Fleiss / Krippendorff between judges;
//! - `multiplicity`: Holm and Benjamini–Hochberg families;
//! - [`power`]: minimum detectable effects and the `plan --power` table;
//! - [`trust`]: ADOPT / CAUTION / REJECT;
//! - [`simulate`]: in-process simulated audits (self-validation, benchmarks);
//! - `findings`: plain-language findings.

mod agreement;
mod boot;
pub mod compare;
mod findings;
pub(crate) mod index;
mod judge;
pub mod jury;
pub mod mitigation;
mod multiplicity;
pub mod pointwise;
pub mod pointwise_summary;
pub mod power;
pub mod rewrites;
pub mod sequential;
pub mod simulate;
pub mod summary;
pub mod templates;
pub mod trust;

pub use agreement::{AgreementResult, PairAgreement, RaterAgreement};
pub use jury::{
    ComposerCandidate, ComposerResult, CorrelationMatrix, JurorWeight, JuryAnalysis, JuryOptions,
    JuryRule, TieRule, WeightSource,
};
pub use multiplicity::{FamilyInfo, Multiplicity};
pub use trust::{Trust, TrustReason, TrustThresholds, TrustVerdict};

use crate::dataset::Dataset;
use crate::design::{ConditionKind, Order, PerturbedAnswers, Plan, Side};
use crate::judge::FaultKind;
use crate::run::CallRecord;
use crate::stats::BootstrapMethod;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Significance level used for every test and flag.
pub const ALPHA: f64 = 0.05;

fn default_method() -> BootstrapMethod {
    BootstrapMethod::Percentile
}

fn default_power() -> f64 {
    0.8
}

/// Settings of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Bootstrap resamples for clustered intervals.
    pub bootstrap_resamples: usize,
    /// Seed of every bootstrap (mixed with the judge's name: one resampling of pairs per judge,
    /// shared by all its statistics so they stay jointly consistent).
    pub seed: u64,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Thresholds of the trust verdict.
    pub trust: TrustThresholds,
    /// Bootstrap interval: `percentile` (default) or `bca` (bias-corrected and accelerated,
    /// Efron & Tibshirani 1993 §14.3, with a leave-one-pair-out jackknife).
    #[serde(default = "default_method")]
    pub bootstrap_method: BootstrapMethod,
    /// Target power of the minimum detectable effects (default 0.8).
    #[serde(default = "default_power")]
    pub power: f64,
    /// Juries built post hoc from the judges' verdicts (`[jury]` in `audit.toml`).
    #[serde(default)]
    pub jury: JuryOptions,
    /// Multiplicity families: per judge (default) or over the whole run.
    #[serde(default)]
    pub multiplicity: Multiplicity,
    /// Measure the post-hoc mitigations (default true). Each costs one more analysis of the
    /// judge, so Monte Carlo studies of the unmitigated statistics may turn it off.
    #[serde(default = "default_true")]
    pub mitigations: bool,
}

fn default_true() -> bool {
    true
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            bootstrap_resamples: 2000,
            seed: 0,
            confidence: 0.95,
            trust: TrustThresholds::default(),
            bootstrap_method: default_method(),
            power: default_power(),
            jury: JuryOptions::default(),
            multiplicity: Multiplicity::default(),
            mitigations: true,
        }
    }
}

/// A confidence interval for a proportion, with the method that formed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateInterval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// `clopper-pearson` or `jeffreys`.
    pub method: String,
}

/// An estimate with its interval and, where a test applies, its p-values. Every p-value says
/// what it is: `p_value` is raw (from `test`), `p_adjusted` is Holm-adjusted over `p_family`
/// (confirmatory), `q_value` is Benjamini–Hochberg-adjusted over `q_family` (screening).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate (`None` when n = 0).
    pub estimate: Option<f64>,
    /// Lower bound of the interval (level: the analysis confidence, 95% by default).
    pub ci_low: Option<f64>,
    /// Upper bound of the interval.
    pub ci_high: Option<f64>,
    /// How the interval was formed.
    pub ci_method: String,
    /// Number of observations the estimate rests on.
    pub n: u64,
    /// Raw p-value of the test named in `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Holm-adjusted p-value over the family named in `p_family`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    /// The test behind `p_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The multiplicity family of `p_adjusted` (Holm, confirmatory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_family: Option<String>,
    /// Raw mid-p value of the same test (Lancaster's mid-p: less conservative than the exact
    /// test; shown alongside, never adjusted or used for flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_mid: Option<f64>,
    /// Benjamini–Hochberg q-value over the family named in `q_family` (screening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_value: Option<f64>,
    /// The multiplicity family of `q_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_family: Option<String>,
    /// Clopper–Pearson ("exact") interval, for rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_exact: Option<RateInterval>,
    /// Jeffreys interval, for rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_jeffreys: Option<RateInterval>,
    /// Present when the interval of a bootstrapped statistic is not the bootstrap's, because
    /// the audit has too few pairs or the resamples were degenerate (VALIDATION.md, "Small
    /// audits and the boundary"): why, and what the small-sample interval rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_small_sample: Option<SmallSampleInterval>,
}

/// Why and how a bootstrapped statistic got its small-sample interval instead of the cluster
/// bootstrap's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmallSampleInterval {
    /// `few pairs` (fewer than [`BOOTSTRAP_MIN_PAIRS`] pairs carry data) or `degenerate
    /// bootstrap` (the bootstrap interval had zero width, or could not be formed).
    pub reason: String,
    /// Pairs that carry data for the statistic (the independent units).
    pub pairs: u64,
    /// Effective number of independent trials behind the Clopper–Pearson bounds (Korn &
    /// Graubard); equal to `pairs` when the data carry no variance information. For a
    /// difference (MOVER), the smaller of its two parts'.
    pub n_eff: f64,
    /// The cluster bootstrap interval that was replaced, when one was formed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_low: Option<f64>,
    /// Its upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_high: Option<f64>,
}

/// Pairs from which a bootstrapped statistic keeps its cluster bootstrap interval (when that
/// interval has positive width); below it, the effective-sample-size Clopper–Pearson interval
/// is reported (see [`SmallSampleInterval`]).
pub const BOOTSTRAP_MIN_PAIRS: u64 = 100;

impl Default for Estimate {
    fn default() -> Self {
        Estimate::empty("none")
    }
}

impl Estimate {
    /// An estimate with no data.
    pub fn empty(ci_method: &str) -> Estimate {
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
            p_mid: None,
            q_value: None,
            q_family: None,
            ci_exact: None,
            ci_jeffreys: None,
            ci_small_sample: None,
        }
    }

    /// True when the Holm-adjusted p-value is below [`ALPHA`].
    pub fn significant(&self) -> bool {
        self.p_adjusted.is_some_and(|p| p < ALPHA)
    }

    /// True when the Benjamini–Hochberg q-value is below [`ALPHA`] (screening).
    pub fn screening_significant(&self) -> bool {
        self.q_value.is_some_and(|q| q < ALPHA)
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
    /// Soft T from label probabilities: mean of P(artifact copy wins) − P(original wins), when
    /// the backend reports probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<Estimate>,
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
    /// Share of comparisons whose verdict changed: Wilson interval (plus Clopper–Pearson and
    /// Jeffreys in `ci_exact` / `ci_jeffreys`); exact McNemar on toward vs away (mid-p in
    /// `p_mid`).
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

/// Stuart–Maxwell test of marginal homogeneity on the 3 × 3 table of the perturbed answer's
/// outcome (wins / tie / loses) before (baseline) and after the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StuartMaxwellResult {
    /// `table[before][after]`, categories in the order wins, tie, loses (position: the answer
    /// moved from the second slot to the first).
    pub table: [[u64; 3]; 3],
    /// Chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom used (2 unless some outcome never changes).
    pub df: u64,
    /// Raw p-value.
    pub p_value: f64,
    /// Holm-adjusted p-value over `p_family`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    /// Holm family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_family: Option<String>,
    /// Benjamini–Hochberg q-value over `q_family`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_value: Option<f64>,
    /// Benjamini–Hochberg family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_family: Option<String>,
}

/// Minimum detectable effects at this audit's size (power analysis, not a test).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mde {
    /// Smallest |T| the exact sign test detects with the target power at level α, assuming every
    /// pair has a non-zero net preference (T = 2δ for P(+) = ½ + δ); `None` if no outcome can
    /// reject at this n.
    pub t: Option<f64>,
    /// The same at the Bonferroni level α/m of the confirmatory family (what a Holm-significant
    /// finding needs in the worst case).
    pub t_family: Option<f64>,
    /// Smallest excess flip rate over the judge's noise rate detectable by a paired test of the
    /// flip comparisons (Connor 1987 normal approximation, comparisons treated as independent).
    pub excess_flip: Option<f64>,
    /// Pairs with a valid tie-detection verdict (n of the sign test).
    pub pairs: u64,
    /// Flip comparisons (n of the flip test).
    pub comparisons: u64,
    /// Level α.
    pub alpha: f64,
    /// Family size m behind `t_family`.
    pub family_size: u64,
    /// Target power.
    pub power: f64,
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
    /// True when any of T, WR or the flip direction has a Benjamini–Hochberg q-value below α
    /// (screening; weaker than `significant`).
    #[serde(default)]
    pub screening_significant: bool,
    /// Stuart–Maxwell test on the before/after outcome table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuart_maxwell: Option<StuartMaxwellResult>,
    /// Soft shift from label probabilities: mean change in P(perturbed answer wins) against the
    /// baseline call in the same order (exact sign test on per-pair mean changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_shift: Option<Estimate>,
    /// Minimum detectable effects at this n.
    #[serde(default)]
    pub mde: Mde,
    /// How many of the artifact's perturbed answers measure anything (absent for `position`,
    /// which changes no text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbation: Option<PerturbationCounts>,
    /// For a composed artifact: its effect minus the sum of its components' effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
    /// For an injection probe: the attack success rate, the share of before/after comparisons
    /// (shift design, both verdicts valid) in which adding the injection moved the verdict
    /// toward the injected answer (Wilson interval). Run-to-run noise alone gives about half
    /// the judge's noise flip rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_success_rate: Option<Estimate>,
}

/// Effect of a stack of artifacts against the sum of its parts (point estimates; the
/// components' own intervals are in their rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Component artifact ids, in application order.
    pub components: Vec<String>,
    /// T(stack) − Σ T(component).
    pub tie_detection: Option<f64>,
    /// WR(stack) − Σ WR(component).
    pub winrate_shift: Option<f64>,
}

/// Share of targets an artifact must change (and not find already present) below which it gets
/// a warning: its estimates then rest on a minority of the items.
pub const MIN_EFFECTIVE_SHARE: f64 = 0.5;

/// What an artifact did to the answers it was applied to (both answers of every pair). An
/// answer the artifact left byte-identical, or that already carried it, measures nothing: its
/// calls are excluded from the artifact's estimates and counted here instead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerturbationCounts {
    /// Answers the artifact was applied to.
    pub targets: u64,
    /// Left byte-identical (e.g. a reorder of a one-sentence answer).
    pub unchanged: u64,
    /// Changed, but the original already carried the artifact (its text or its detector).
    pub already_present: u64,
    /// LLM rewrites that failed their meaning check (or were never made): excluded, counted
    /// by reason in `rejected_reasons`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// `rejected / targets`, shown next to a rewrite artifact's numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_share: Option<f64>,
    /// Rejections by reason (e.g. `new number 7`), for rewrite artifacts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Counted in the estimates: `targets − unchanged − already_present − rejected`.
    pub effective: u64,
    /// `effective / targets` (0 when there are no targets).
    pub effective_share: f64,
    /// Set when `effective_share` is below [`MIN_EFFECTIVE_SHARE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl PerturbationCounts {
    /// Count the perturbations of `artifact` over `pairs` pairs.
    pub fn of(artifact: &str, pairs: usize, perturbed: &PerturbedAnswers) -> Option<Self> {
        let mut c = PerturbationCounts::default();
        for i in 0..pairs {
            for side in [Side::A, Side::B] {
                let Some(p) = perturbed.get(artifact, i, side) else {
                    continue;
                };
                c.targets += 1;
                if let Some(reason) = &p.rejected {
                    c.rejected += 1;
                    *c.rejected_reasons.entry(reason.clone()).or_insert(0) += 1;
                } else if !p.changed {
                    c.unchanged += 1;
                } else if p.already_present {
                    c.already_present += 1;
                } else {
                    c.effective += 1;
                }
            }
        }
        if c.targets == 0 {
            return None;
        }
        c.effective_share = c.effective as f64 / c.targets as f64;
        if c.rejected > 0 {
            c.rejected_share = Some(c.rejected as f64 / c.targets as f64);
        }
        if c.effective_share < MIN_EFFECTIVE_SHARE && c.rejected > 0 {
            c.warning = Some(format!(
                "`{artifact}`: only {} of {} rewrites passed the meaning check ({:.0}%; {} \
                 rejected, {} unchanged): its estimates rest on the passing ones only",
                c.effective,
                c.targets,
                100.0 * c.effective_share,
                c.rejected,
                c.unchanged
            ));
        } else if c.effective_share < MIN_EFFECTIVE_SHARE {
            c.warning = Some(format!(
                "`{artifact}` changed only {} of {} answers ({:.0}%; {} unchanged, {} already \
                 carried it): its estimates rest on the changed ones only",
                c.effective,
                c.targets,
                100.0 * c.effective_share,
                c.unchanged,
                c.already_present
            ));
        }
        Some(c)
    }
}

/// A simulated judge's planted effect and whether the audit recovered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planted {
    /// The declared value, in T units.
    pub value: f64,
    /// True when T's 95% interval contains it.
    pub recovered: bool,
}

/// MT-Bench position-consistency outcomes as shares of all pairs (including errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyShares {
    /// Same winner (or tie) in both orders.
    pub consistent: f64,
    /// The first slot won both times (MT-Bench "biased toward first").
    pub prefers_first: f64,
    /// The second slot won both times.
    pub prefers_second: f64,
    /// A win in one order and a tie in the other.
    pub other: f64,
    /// An invalid or failed verdict in either order (MT-Bench "error").
    pub error: f64,
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
    /// The outcomes as shares of `n + error` (MT-Bench Table 2 units).
    #[serde(default)]
    pub shares: ConsistencyShares,
}

/// Run-to-run self-consistency in the literature's units (Chen §2.2.3, CALM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfConsistency {
    /// Chen's sample-level self-consistency SSC = 1 − noise flip rate.
    pub ssc: Option<f64>,
    /// CALM's consistency rate CR: the share of verdicts unchanged on a plain re-run (equal to
    /// SSC in this design).
    pub consistency_rate: Option<f64>,
    /// Chen's model-level self-consistency MSC = |wr − wr′| between baseline repeats 0 and 1
    /// (wr: answer a's net preference over both orders); percentile interval of |wr − wr′|.
    pub msc: Estimate,
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
    /// SSC, CR and MSC.
    #[serde(default)]
    pub self_consistency: SelfConsistency,
    /// Chen's human agreement HA (Eq. 6) against the gold labels: share of first-repeat
    /// baseline verdicts equal to the gold label (a / b / tie), averaged over both orders.
    #[serde(default)]
    pub gold_agreement: Estimate,
    /// Cohen's κ between the judge's baseline verdicts and the gold labels (categories a / b /
    /// tie, every repeat and order), cluster bootstrap by pair.
    #[serde(default)]
    pub gold_kappa: Estimate,
    /// Scott's π on the same table.
    #[serde(default)]
    pub gold_scott_pi: Estimate,
}

/// Call counts of one judge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Calls in the plan.
    pub planned: u64,
    /// Calls with a verdict (including invalid ones).
    pub completed: u64,
    /// Calls that failed after retries, or were recorded as not sent (cost budget, judge
    /// stopped).
    pub failed: u64,
    /// Planned calls with no committed record: the run stopped before sending them (killed,
    /// interrupted, or not resumed yet). Never counted as failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: u64,
    /// Completed calls whose verdict was unparseable.
    pub invalid: u64,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens reported.
    pub output_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How much of the plan a run has committed. Present in a summary only when calls are pending
/// (a finished run's summary is unchanged), so its verdicts are provisional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// Calls in the plan, over every judge.
    pub planned: u64,
    /// Calls with a committed record (answered or failed).
    pub committed: u64,
    /// Committed calls that failed (no verdict).
    pub failed: u64,
    /// Planned calls not yet sent.
    pub pending: u64,
}

impl Completeness {
    /// The completeness of a run from its judges' call counts; `None` when nothing is pending.
    pub fn of(judges: &[JudgeResult]) -> Option<Completeness> {
        let mut c = Completeness::default();
        for j in judges.iter().filter(|j| j.kind == JudgeKind::Judge) {
            c.planned += j.calls.planned;
            c.pending += j.calls.pending;
            c.failed += j.calls.failed;
        }
        c.committed = c.planned - c.pending;
        (c.pending > 0).then_some(c)
    }
}

/// Whether a result is a configured judge or a jury aggregated post hoc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    /// A configured judge.
    #[default]
    Judge,
    /// A jury: verdicts aggregated from its members' verdicts on the same calls.
    Jury,
}

/// Length sensitivity (AlpacaEval length control, method.md §C10): logistic regression of the
/// per-pair baseline preference for answer a (ties as ½) on tanh of the standardized length
/// difference len(a) − len(b) in characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthSensitivity {
    /// Pairs with at least one valid baseline verdict.
    pub pairs: u64,
    /// Raw mean preference for answer a.
    pub raw_preference: f64,
    /// Length-controlled preference σ(β₀): predicted preference for a at equal length.
    pub controlled_preference: f64,
    /// Slope β₁ on tanh(Δlen / sd): positive = longer answers win more; Wald interval and
    /// two-sided Wald p-value.
    pub slope: Estimate,
    /// Whether the fit converged (false under separation).
    pub converged: bool,
}

/// Mean label probabilities over the baseline calls that report them, in identity terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftSummary {
    /// Baseline calls with probabilities.
    pub calls: u64,
    /// Mean P(answer a wins).
    pub mean_p_a: f64,
    /// Mean P(answer b wins).
    pub mean_p_b: f64,
    /// Mean P(tie).
    pub mean_p_tie: f64,
    /// Mean next-token mass the three labels cover, P(a) + P(b) + P(tie) (at most 1; the rest
    /// went to tokens that are no label). Low coverage means the soft verdict rests on a
    /// minority of what the model would say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_mass: Option<f64>,
}

/// Below this mean covered mass the report warns that the soft verdict rests on little of the
/// model's next-token distribution.
pub const LOW_LABEL_MASS: f64 = 0.8;

/// Everything about one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeResult {
    /// Judge name.
    pub name: String,
    /// True for simulated judges (for a jury: when every member is simulated).
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
    /// `judge` or `jury`.
    #[serde(default)]
    pub kind: JudgeKind,
    /// Jury members (juries only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Aggregation rule (juries only), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Length sensitivity of the baseline verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<LengthSensitivity>,
    /// Label-probability summary, when the backend reports probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<SoftSummary>,
    /// Present when the judge's intervals rest on fewer than
    /// [`power::MIN_PAIRS_FOR_INTERVALS`] pairs: the warning and the pairs its rejection sizes
    /// need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_audit: Option<power::SmallAudit>,
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
    /// Flip rate against the baseline pooled over every text artifact's shift calls (Wilson;
    /// exact McNemar on flips toward vs away from the perturbed answer, Holm/BH over the
    /// judge × category family).
    pub flip_rate: Estimate,
    /// Flips toward the perturbed answer.
    #[serde(default)]
    pub flip_toward: u64,
    /// Flips away from it.
    #[serde(default)]
    pub flip_away: u64,
    /// Chen's HA (Eq. 6) in this category: first-repeat baseline verdicts equal to the gold
    /// label (a / b / tie), averaged over both orders (Wilson, calls treated as independent).
    #[serde(default)]
    pub gold_agreement: Estimate,
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

/// How the analysis was run: everything a reader needs to interpret intervals and p-values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisInfo {
    /// Bootstrap interval method.
    pub bootstrap_method: BootstrapMethod,
    /// Bootstrap resamples.
    pub bootstrap_resamples: usize,
    /// Resampling unit.
    pub cluster: String,
    /// Confidence level.
    pub confidence: f64,
    /// Significance level α of every flag.
    pub alpha: f64,
    /// Target power of the minimum detectable effects.
    pub power: f64,
    /// Every multiplicity family used, with its size.
    pub families: Vec<FamilyInfo>,
}

/// The complete analysis of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Configured judges, in plan order.
    pub judges: Vec<JudgeResult>,
    /// Juries aggregated post hoc, analysed like judges.
    pub juries: Vec<JudgeResult>,
    /// Agreement between judges (two or more judges).
    pub agreement: Option<AgreementResult>,
    /// Jury design: rules, weights, juror error correlation, effective size, composer.
    pub jury: Option<JuryAnalysis>,
    /// How the analysis was run.
    pub info: AnalysisInfo,
    /// Post-hoc mitigations per judge, measured on the same calls (`None` when
    /// [`AnalysisOptions::mitigations`] is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigations: Option<mitigation::MitigationSection>,
    /// Judge-prompt sensitivity of the judges with template variants (`None` without any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<templates::TemplateSection>,
}

/// Analyse every judge of the plan (the judges part of [`analyze_full`]).
pub fn analyze(input: &AnalysisInput<'_>, options: &AnalysisOptions) -> Vec<JudgeResult> {
    analyze_full(input, options).judges
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

/// Analyse every judge, then the juries, agreement between judges, multiplicity, trust and
/// findings.
pub fn analyze_full(input: &AnalysisInput<'_>, options: &AnalysisOptions) -> Analysis {
    analyze_extended(input, options, &Extensions::default())
}

/// [`analyze_full`] over a run's committed calls in column form, read from its store
/// (`input.records` is not read): the same analysis without a record per call in memory.
pub fn analyze_full_columns(
    input: &AnalysisInput<'_>,
    columns: &crate::run::columns::CallColumns,
    options: &AnalysisOptions,
) -> Analysis {
    analyze_extended_columns(input, columns, options, &Extensions::default())
}

/// What an audit with derived judges adds to the analysis: template variants and new-call
/// mitigations (issue 14). The default (nothing) is exactly [`analyze_full`].
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    /// Judges with their template variants.
    pub templates: Vec<templates::TemplateGroup>,
    /// `baseline` or `all` (`design.templates`).
    pub template_design: String,
    /// Judge-layer mitigations audited as derived judges.
    pub new_call: Vec<mitigation::NewCall>,
}

/// [`analyze_full`], plus the template sensitivity of the template groups and the new-call
/// mitigations of `extensions`.
pub fn analyze_extended(
    input: &AnalysisInput<'_>,
    options: &AnalysisOptions,
    extensions: &Extensions,
) -> Analysis {
    analyze_indexed(input, &records_index(input), options, extensions)
}

/// [`analyze_extended`] over a run's committed calls in column form (see
/// [`analyze_full_columns`]).
pub fn analyze_extended_columns(
    input: &AnalysisInput<'_>,
    columns: &crate::run::columns::CallColumns,
    options: &AnalysisOptions,
    extensions: &Extensions,
) -> Analysis {
    let index = index::Index::from_columns(input.plan, input.dataset.pairs.len(), columns);
    analyze_indexed(input, &index, options, extensions)
}

fn records_index(input: &AnalysisInput<'_>) -> index::Index {
    let pair_ids: Vec<String> = input.dataset.pairs.iter().map(|p| p.id.clone()).collect();
    index::Index::build(input.plan, &pair_ids, input.records)
}

fn analyze_indexed(
    input: &AnalysisInput<'_>,
    index: &index::Index,
    options: &AnalysisOptions,
    extensions: &Extensions,
) -> Analysis {
    let groups = &extensions.templates;
    let design = extensions.template_design.as_str();
    let pairs = &input.dataset.pairs;
    let mut ctx = judge::Ctx::new(&index.layout, pairs, options);
    ctx.excluded = index
        .layout
        .artifacts
        .iter()
        .flat_map(|artifact| {
            (0..pairs.len()).flat_map(move |i| {
                [Side::A, Side::B].map(|side| {
                    input
                        .perturbed
                        .get(artifact, i, side)
                        .is_some_and(|p| !p.effective())
                })
            })
        })
        .collect();
    let counts: HashMap<&str, PerturbationCounts> = index
        .layout
        .artifacts
        .iter()
        .filter_map(|a| {
            PerturbationCounts::of(a, pairs.len(), input.perturbed).map(|c| (a.as_str(), c))
        })
        .collect();
    let names = &input.plan.judges;
    let family_size = options
        .multiplicity
        .grid_family_size(names.len(), index.layout.artifacts.len());
    let mut judges: Vec<JudgeResult> = names
        .par_iter()
        .enumerate()
        .map(|(j, name)| {
            ctx.analyze(
                judge::Subject {
                    name: name.clone(),
                    kind: JudgeKind::Judge,
                    members: Vec::new(),
                    rule: None,
                    simulated: input.simulated.get(name).copied().unwrap_or(false),
                    verdicts: &index.judges[j],
                    faults: input.faults.get(name).cloned().unwrap_or_default(),
                    stopped: input.stopped.get(name).cloned(),
                    planted: input.planted.get(name),
                },
                family_size,
            )
        })
        .collect();

    let (mut juries, jury) = jury::analyze_juries(&ctx, index, &judges, options);
    let agreement = agreement::analyze(&ctx, index, names, &options.jury, options);

    let families = multiplicity::adjust(&mut judges, &mut juries, options.multiplicity);
    for result in judges.iter_mut().chain(juries.iter_mut()) {
        for artifact in &mut result.artifacts {
            let tests = [
                &artifact.tie_detection.score,
                &artifact.winrate_shift.shift,
                &artifact.flip_rate.rate,
            ];
            artifact.significant = tests.iter().any(|e| e.significant());
            artifact.screening_significant = tests.iter().any(|e| e.screening_significant());
        }
        for artifact in &mut result.artifacts {
            artifact.perturbation = counts.get(artifact.artifact.as_str()).cloned();
            if input.perturbed.injections.contains(&artifact.artifact) {
                let f = &artifact.flip_rate;
                artifact.attack_success_rate =
                    Some(judge::rate_estimate(f.toward, f.rate.n, options.confidence));
            }
        }
        let interactions: Vec<(usize, Interaction)> = result
            .artifacts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let parts = input.perturbed.components.get(&a.artifact)?;
                let sum = |f: &dyn Fn(&ArtifactResult) -> Option<f64>| -> Option<f64> {
                    let mut total = f(a)?;
                    for id in parts {
                        total -= f(result.artifacts.iter().find(|c| &c.artifact == id)?)?;
                    }
                    Some(total)
                };
                Some((
                    i,
                    Interaction {
                        components: parts.clone(),
                        tie_detection: sum(&|r| r.tie_detection.score.estimate),
                        winrate_shift: sum(&|r| r.winrate_shift.shift.estimate),
                    },
                ))
            })
            .collect();
        for (i, interaction) in interactions {
            result.artifacts[i].interaction = Some(interaction);
        }
        result.trust = trust::verdict(result, &options.trust);
        result.small_audit = power::small_audit(result, &options.trust, options.power);
        result.findings = findings::findings(result);
    }
    let mitigations = options.mitigations.then(|| {
        mitigation::analyze(
            &ctx,
            &index.judges,
            &judges,
            &juries,
            family_size,
            &extensions.new_call,
            groups,
        )
    });
    let templates = (!groups.is_empty()).then(|| {
        templates::analyze(
            &index.layout,
            pairs.len(),
            &index.judges,
            &judges,
            groups,
            design,
            options.confidence,
        )
    });
    // The template finding is also the judge's own, so every verdict listing shows it.
    for t in templates.iter().flat_map(|t| &t.judges) {
        if let (Some(f), Some(j)) = (&t.finding, judges.iter_mut().find(|j| j.name == t.judge)) {
            j.findings.push(f.clone());
        }
    }
    Analysis {
        templates,
        mitigations,
        judges,
        juries,
        agreement,
        jury,
        info: AnalysisInfo {
            bootstrap_method: options.bootstrap_method,
            bootstrap_resamples: options.bootstrap_resamples,
            cluster: "pair (every call on one pair is resampled together)".into(),
            confidence: options.confidence,
            alpha: ALPHA,
            power: options.power,
            families,
        },
    }
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
    flipped_from(input, &records_index(input))
}

/// [`flipped_examples`] over a run's committed calls in column form (as
/// [`analyze_full_columns`]); the texts shown come from the dataset and the perturbed answers.
pub fn flipped_examples_columns(
    input: &AnalysisInput<'_>,
    columns: &crate::run::columns::CallColumns,
) -> Vec<FlipExample> {
    let index = index::Index::from_columns(input.plan, input.dataset.pairs.len(), columns);
    flipped_from(input, &index)
}

fn flipped_from(input: &AnalysisInput<'_>, index: &index::Index) -> Vec<FlipExample> {
    let pairs = &input.dataset.pairs;
    let l = &index.layout;
    let mut kept: HashMap<(usize, usize), usize> = HashMap::new();
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
        let (Some(a), Some(v)) = (
            l.artifact_index(artifact),
            index.judges.get(spec.judge_index),
        ) else {
            continue;
        };
        if spec.pair_index >= pairs.len() {
            continue;
        }
        let count = kept.entry((spec.judge_index, a)).or_default();
        if *count >= EXAMPLES_PER_CELL {
            continue;
        }
        let side_first = (spec.order == Order::Ab) == (side == Side::A);
        let after = index::obs(
            v.code(l, spec.pair_index, l.shift(a, side, spec.order)),
            side_first,
        );
        let before = index::obs(
            v.code(l, spec.pair_index, l.baseline(spec.order, 0)),
            side_first,
        );
        let (Some(x), Some(y)) = (before.val(), after.val()) else {
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
        if !perturbation.effective() {
            // Excluded from the estimates, so not an example of the artifact's effect either.
            continue;
        }
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
