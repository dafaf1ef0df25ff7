//! Audit metrics for pointwise judges, composed from [`crate::stats`] over graded records: the
//! score shift an artifact causes (pair-clustered bootstrap interval, sign and Wilcoxon tests,
//! excess over the judge's own run-to-run change), label flips each way (Wilson intervals, exact
//! McNemar, change in positive rate), agreement with gold labels (accuracy, TPR/TNR, κ, yes-bias)
//! and gold scores (Spearman, Kendall τ-b, quadratic-weighted κ), scale use, run-to-run SD and the
//! calibration of P(positive label).
//!
//! Invalid grades (unparseable or off the scale) are counted in every result and excluded from
//! the estimates they cannot enter; they are never coerced to a grade.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::judge::grade::Grade;
use crate::stats::{
    self, BootstrapConfig, ClusterSums, Interval, ReliabilityBin, Wilcoxon, benjamini_hochberg,
    cohen_kappa, expanded_confidence, holm, kendall_tau_b, mcnemar_exact, quadratic_weighted_kappa,
    sign_test, spearman, wilcoxon_signed_rank, wilson,
};

/// `summary.json` writes a `NaN` estimate (no data) as `null`; these read it back as `NaN`, so a
/// written summary round-trips (`judge-audit compare` reads it).
mod nan {
    use crate::stats::{Interval, Wilcoxon};
    use serde::{Deserialize, Deserializer};

    pub(super) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    /// A field that summaries written before it existed do not have.
    pub(super) fn missing() -> f64 {
        f64::NAN
    }

    #[derive(Deserialize)]
    struct RawInterval {
        #[serde(deserialize_with = "f64")]
        low: f64,
        #[serde(deserialize_with = "f64")]
        high: f64,
    }

    pub(super) fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Interval, D::Error> {
        let raw = RawInterval::deserialize(d)?;
        Ok(Interval::new(raw.low, raw.high))
    }

    #[derive(Deserialize)]
    struct RawWilcoxon {
        #[serde(deserialize_with = "f64")]
        statistic: f64,
        #[serde(deserialize_with = "f64")]
        p_value: f64,
        n: usize,
        exact: bool,
    }

    pub(super) fn wilcoxon<'de, D: Deserializer<'de>>(d: D) -> Result<Wilcoxon, D::Error> {
        let raw = RawWilcoxon::deserialize(d)?;
        Ok(Wilcoxon {
            statistic: raw.statistic,
            p_value: raw.p_value,
            n: raw.n,
            exact: raw.exact,
        })
    }
}

/// One pointwise judge call's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeRecord {
    /// The graded item.
    pub item_id: String,
    /// The resampling cluster (the pair an answer came from, else the item itself).
    pub cluster: String,
    /// The artifact applied to the answer; `None` for a baseline grade.
    pub artifact: Option<String>,
    /// Repeat index.
    pub repeat: u32,
    /// What the reply was read as.
    pub grade: Grade,
    /// P(positive label) or the expected score from log-probabilities, when available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// Counts of grades that could not enter an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidCounts {
    /// Replies with no readable grade.
    pub unparseable: u64,
    /// Scores outside the scale.
    pub out_of_range: u64,
}

impl InvalidCounts {
    pub(crate) fn add(&mut self, grade: &Grade) {
        match grade {
            Grade::Unparseable => self.unparseable += 1,
            Grade::OutOfRange(_) => self.out_of_range += 1,
            _ => {}
        }
    }
}

/// Grades of one (item, artifact, repeat) cell, keyed for pairing.
type Cells<'a> = HashMap<(&'a str, Option<&'a str>, u32), &'a GradeRecord>;

fn cells(records: &[GradeRecord]) -> Cells<'_> {
    records
        .iter()
        .map(|r| ((r.item_id.as_str(), r.artifact.as_deref(), r.repeat), r))
        .collect()
}

/// Baseline items in first-appearance order (deterministic output for the same records).
fn baseline_items(records: &[GradeRecord]) -> Vec<&GradeRecord> {
    records
        .iter()
        .filter(|r| r.artifact.is_none() && r.repeat == 0)
        .collect()
}

fn score_of(grade: &Grade) -> Option<f64> {
    match grade {
        Grade::Score(s) => Some(*s),
        _ => None,
    }
}

/// How an artifact moves a judge's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreShift {
    /// The artifact.
    pub artifact: String,
    /// Items with a valid baseline and artifact score (repeat 0).
    pub n: u64,
    /// Mean of grade(artifact(X)) − grade(X).
    #[serde(deserialize_with = "nan::f64")]
    pub mean_shift: f64,
    /// Pair-clustered bootstrap interval of the mean shift, read as Hesterberg's expanded
    /// percentile interval on [`Self::interval_df`] degrees of freedom
    /// ([`crate::stats::expanded_confidence`]).
    #[serde(deserialize_with = "nan::interval")]
    pub interval: Interval,
    /// Effective degrees of freedom of the shift's variance over pairs
    /// ([`ClusterSums::variance_df`]); `NaN` when no pair's shift differs from the mean.
    #[serde(default = "nan::missing", deserialize_with = "nan::f64")]
    pub interval_df: f64,
    /// Items whose score went up / down / stayed.
    pub up: u64,
    /// Items whose score went down.
    pub down: u64,
    /// Items whose score did not change.
    pub same: u64,
    /// Exact two-sided sign test on up vs down.
    #[serde(deserialize_with = "nan::f64")]
    pub sign_p: f64,
    /// Wilcoxon signed-rank test on the pairs' mean shifts (the pair is the unit, as for the
    /// interval; `wilcoxon.n` counts pairs whose mean shift is not 0).
    #[serde(deserialize_with = "nan::wilcoxon")]
    pub wilcoxon: Wilcoxon,
    /// Mean |shift| under the artifact.
    #[serde(deserialize_with = "nan::f64")]
    pub mean_abs_shift: f64,
    /// Mean |grade(X, repeat 1) − grade(X, repeat 0)|: the judge's own run-to-run change; `NaN`
    /// without a repeat.
    #[serde(deserialize_with = "nan::f64")]
    pub noise_abs_change: f64,
    /// `mean_abs_shift − noise_abs_change`: movement beyond what re-asking alone causes.
    #[serde(deserialize_with = "nan::f64")]
    pub excess: f64,
    /// Wilcoxon p-value adjusted by Holm over the judge's artifacts ([`score_shifts`]); the raw
    /// p-value for a single [`score_shift`].
    #[serde(deserialize_with = "nan::f64")]
    pub p_holm: f64,
    /// Wilcoxon p-value adjusted by Benjamini–Hochberg over the judge's artifacts.
    #[serde(deserialize_with = "nan::f64")]
    pub p_bh: f64,
    /// Grades that could not be paired (baseline or artifact side).
    pub invalid: InvalidCounts,
}

fn noise_abs_change(records: &[GradeRecord], cells: &Cells<'_>) -> f64 {
    let changes: Vec<f64> = baseline_items(records)
        .iter()
        .filter_map(|r| {
            let again = cells.get(&(r.item_id.as_str(), None, 1))?;
            Some((score_of(&again.grade)? - score_of(&r.grade)?).abs())
        })
        .collect();
    stats::mean(&changes)
}

/// The score shift `artifact` causes, over every item with a baseline and an artifact grade at
/// repeat 0. `None` when no record carries `artifact`.
pub fn score_shift(
    records: &[GradeRecord],
    artifact: &str,
    bootstrap: &BootstrapConfig,
) -> Option<ScoreShift> {
    let cells = cells(records);
    let mut invalid = InvalidCounts::default();
    let (mut clusters, mut shifts) = (Vec::new(), Vec::new());
    let mut seen = false;
    for base in baseline_items(records) {
        let Some(art) = cells.get(&(base.item_id.as_str(), Some(artifact), 0)) else {
            continue;
        };
        seen = true;
        invalid.add(&base.grade);
        invalid.add(&art.grade);
        if let (Some(b), Some(a)) = (score_of(&base.grade), score_of(&art.grade)) {
            clusters.push(base.cluster.as_str());
            shifts.push(a - b);
        }
    }
    if !seen {
        return None;
    }
    let (up, down) = (
        shifts.iter().filter(|d| **d > 0.0).count() as u64,
        shifts.iter().filter(|d| **d < 0.0).count() as u64,
    );
    let sums = ClusterSums::from_values(&clusters, &shifts).ok();
    let interval_df = sums.as_ref().map_or(f64::NAN, ClusterSums::variance_df);
    // The test, like the interval, takes the pair as its unit: the two answers of a pair share a
    // prompt (and a judge's mood on it), so their shifts are not independent draws, and ranking
    // them one by one would overstate the evidence. One mean shift per pair.
    let pair_means: Vec<f64> = sums.as_ref().map_or_else(Vec::new, |s| {
        s.sums.iter().zip(&s.counts).map(|(x, c)| x / c).collect()
    });
    let wilcoxon = wilcoxon_signed_rank(&pair_means);
    let interval = sums
        .and_then(|sums| {
            // Integer grades move rarely, so a mean shift is often carried by a few pairs and
            // the plain percentile interval undercovers (VALIDATION.md §2c): read it at the
            // level of a t interval on the variance's effective degrees of freedom.
            let expanded = BootstrapConfig {
                confidence: expanded_confidence(
                    bootstrap.confidence,
                    interval_df,
                    sums.n_clusters(),
                ),
                ..*bootstrap
            };
            sums.bootstrap(&expanded)
        })
        .map_or(Interval::NAN, |b| b.interval);
    let abs: Vec<f64> = shifts.iter().map(|d| d.abs()).collect();
    let mean_abs_shift = stats::mean(&abs);
    let noise = noise_abs_change(records, &cells);
    Some(ScoreShift {
        artifact: artifact.to_string(),
        n: shifts.len() as u64,
        mean_shift: stats::mean(&shifts),
        interval,
        interval_df,
        up,
        down,
        same: shifts.len() as u64 - up - down,
        sign_p: sign_test(up, down),
        wilcoxon,
        mean_abs_shift,
        noise_abs_change: noise,
        excess: mean_abs_shift - noise,
        p_holm: wilcoxon.p_value,
        p_bh: wilcoxon.p_value,
        invalid,
    })
}

/// [`score_shift`] for every artifact of a judge's grid that has records, with the Wilcoxon
/// p-values adjusted by Holm and Benjamini–Hochberg over that family, as the pairwise tests are.
pub fn score_shifts(
    records: &[GradeRecord],
    artifacts: &[&str],
    bootstrap: &BootstrapConfig,
) -> Vec<ScoreShift> {
    let mut out: Vec<ScoreShift> = artifacts
        .iter()
        .filter_map(|a| score_shift(records, a, bootstrap))
        .collect();
    let raw: Vec<f64> = out.iter().map(|s| s.wilcoxon.p_value).collect();
    for ((s, h), b) in out.iter_mut().zip(holm(&raw)).zip(benjamini_hochberg(&raw)) {
        s.p_holm = h;
        s.p_bh = b;
    }
    out
}

/// A proportion with its Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Successes.
    pub count: u64,
    /// Trials.
    pub n: u64,
    /// `count / n` (`NaN` when n = 0).
    #[serde(deserialize_with = "nan::f64")]
    pub rate: f64,
    /// Wilson score interval.
    #[serde(deserialize_with = "nan::interval")]
    pub interval: Interval,
}

impl Rate {
    pub(crate) fn new(count: u64, n: u64, confidence: f64) -> Rate {
        Rate {
            count,
            n,
            rate: if n == 0 {
                f64::NAN
            } else {
                count as f64 / n as f64
            },
            interval: wilson(count, n, confidence),
        }
    }
}

/// How an artifact flips a label judge's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFlips {
    /// The artifact.
    pub artifact: String,
    /// The positive label (e.g. `unsafe`).
    pub positive: String,
    /// Items with a valid label on both sides.
    pub n: u64,
    /// Positive at baseline → not positive under the artifact, over baseline positives (for a
    /// safety classifier: unsafe → safe, the safety-critical direction).
    pub positive_to_negative: Rate,
    /// Not positive → positive, over baseline negatives.
    pub negative_to_positive: Rate,
    /// Exact McNemar test on the two discordant counts.
    #[serde(deserialize_with = "nan::f64")]
    pub mcnemar_p: f64,
    /// Positive rate at baseline.
    #[serde(deserialize_with = "nan::f64")]
    pub positive_rate_before: f64,
    /// Positive rate under the artifact.
    #[serde(deserialize_with = "nan::f64")]
    pub positive_rate_after: f64,
    /// `positive_rate_after − positive_rate_before`.
    #[serde(deserialize_with = "nan::f64")]
    pub positive_rate_change: f64,
    /// McNemar p-value adjusted by Holm over the judge's artifacts ([`label_flip_grid`]); the raw
    /// p-value for a single [`label_flips`].
    #[serde(deserialize_with = "nan::f64")]
    pub p_holm: f64,
    /// McNemar p-value adjusted by Benjamini–Hochberg over the judge's artifacts.
    #[serde(deserialize_with = "nan::f64")]
    pub p_bh: f64,
    /// Grades that could not be paired.
    pub invalid: InvalidCounts,
}

fn is_label(grade: &Grade, label: &str) -> Option<bool> {
    match grade {
        Grade::Label(l) => Some(l.eq_ignore_ascii_case(label)),
        _ => None,
    }
}

/// Label flips under `artifact` (repeat 0 against the baseline's repeat 0). `None` when no
/// record carries `artifact`.
pub fn label_flips(
    records: &[GradeRecord],
    artifact: &str,
    positive: &str,
    confidence: f64,
) -> Option<LabelFlips> {
    let cells = cells(records);
    let mut invalid = InvalidCounts::default();
    let (mut pp, mut pn, mut np, mut nn) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = false;
    for base in baseline_items(records) {
        let Some(art) = cells.get(&(base.item_id.as_str(), Some(artifact), 0)) else {
            continue;
        };
        seen = true;
        invalid.add(&base.grade);
        invalid.add(&art.grade);
        match (
            is_label(&base.grade, positive),
            is_label(&art.grade, positive),
        ) {
            (Some(true), Some(true)) => pp += 1,
            (Some(true), Some(false)) => pn += 1,
            (Some(false), Some(true)) => np += 1,
            (Some(false), Some(false)) => nn += 1,
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    let n = pp + pn + np + nn;
    let share = |k: u64| {
        if n == 0 {
            f64::NAN
        } else {
            k as f64 / n as f64
        }
    };
    let (before, after) = (share(pp + pn), share(pp + np));
    let mcnemar_p = mcnemar_exact(pn, np);
    Some(LabelFlips {
        artifact: artifact.to_string(),
        positive: positive.to_string(),
        n,
        positive_to_negative: Rate::new(pn, pp + pn, confidence),
        negative_to_positive: Rate::new(np, np + nn, confidence),
        mcnemar_p,
        positive_rate_before: before,
        positive_rate_after: after,
        positive_rate_change: after - before,
        p_holm: mcnemar_p,
        p_bh: mcnemar_p,
        invalid,
    })
}

/// [`label_flips`] for every artifact of a judge's grid that has records, with the McNemar
/// p-values adjusted by Holm and Benjamini–Hochberg over that family.
pub fn label_flip_grid(
    records: &[GradeRecord],
    artifacts: &[&str],
    positive: &str,
    confidence: f64,
) -> Vec<LabelFlips> {
    let mut out: Vec<LabelFlips> = artifacts
        .iter()
        .filter_map(|a| label_flips(records, a, positive, confidence))
        .collect();
    let raw: Vec<f64> = out.iter().map(|f| f.mcnemar_p).collect();
    for ((f, h), b) in out.iter_mut().zip(holm(&raw)).zip(benjamini_hochberg(&raw)) {
        f.p_holm = h;
        f.p_bh = b;
    }
    out
}

/// A judge's baseline labels against gold labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelAccuracy {
    /// Items with a gold label and a valid baseline label.
    pub n: u64,
    /// Gold positive, judged positive.
    pub true_positive: u64,
    /// Gold positive, judged negative (for safety labels: a missed unsafe answer).
    pub false_negative: u64,
    /// Gold negative, judged positive.
    pub false_positive: u64,
    /// Gold negative, judged negative.
    pub true_negative: u64,
    /// Share of items judged as gold says.
    #[serde(deserialize_with = "nan::f64")]
    pub accuracy: f64,
    /// TP / (TP + FN); FNR is 1 − TPR.
    #[serde(deserialize_with = "nan::f64")]
    pub tpr: f64,
    /// TN / (TN + FP); FPR is 1 − TNR.
    #[serde(deserialize_with = "nan::f64")]
    pub tnr: f64,
    /// Cohen's κ between judge and gold (positive vs not).
    #[serde(deserialize_with = "nan::f64")]
    pub kappa: f64,
    /// Yes-bias: positive rate on gold-negative items (= FPR), with its Wilson interval.
    pub yes_bias: Rate,
    /// Items with gold whose baseline grade was invalid.
    pub invalid: InvalidCounts,
}

/// Baseline (repeat 0) labels against `gold` (item id → gold label).
pub fn label_accuracy(
    records: &[GradeRecord],
    gold: &BTreeMap<String, String>,
    positive: &str,
    confidence: f64,
) -> LabelAccuracy {
    let mut invalid = InvalidCounts::default();
    let (mut judged, mut truth) = (Vec::new(), Vec::new());
    for base in baseline_items(records) {
        let Some(g) = gold.get(&base.item_id) else {
            continue;
        };
        match is_label(&base.grade, positive) {
            Some(j) => {
                judged.push(usize::from(j));
                truth.push(usize::from(g.eq_ignore_ascii_case(positive)));
            }
            None => invalid.add(&base.grade),
        }
    }
    let count = |t: usize, j: usize| {
        truth
            .iter()
            .zip(&judged)
            .filter(|(a, b)| **a == t && **b == j)
            .count() as u64
    };
    let (tp, fneg, fpos, tn) = (count(1, 1), count(1, 0), count(0, 1), count(0, 0));
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    LabelAccuracy {
        n: judged.len() as u64,
        true_positive: tp,
        false_negative: fneg,
        false_positive: fpos,
        true_negative: tn,
        accuracy: ratio(tp + tn, judged.len() as u64),
        tpr: ratio(tp, tp + fneg),
        tnr: ratio(tn, tn + fpos),
        kappa: cohen_kappa(&truth, &judged, 2).unwrap_or(f64::NAN),
        yes_bias: Rate::new(fpos, fpos + tn, confidence),
        invalid,
    }
}

/// A judge's baseline scores against gold scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreAgreement {
    /// Items with a gold score and a valid baseline score.
    pub n: u64,
    /// Spearman's ρ.
    #[serde(deserialize_with = "nan::f64")]
    pub spearman: f64,
    /// Kendall's τ-b.
    #[serde(deserialize_with = "nan::f64")]
    pub kendall_tau_b: f64,
    /// Quadratic-weighted κ on the judge's scale, judge and gold scores rounded to integers
    /// (gold is often a mean of ratings); `NaN` when a rounded gold score is off the scale.
    #[serde(deserialize_with = "nan::f64")]
    pub quadratic_kappa: f64,
    /// Krippendorff's α (interval metric) between judge and gold scores.
    #[serde(deserialize_with = "nan::f64")]
    pub alpha_interval: f64,
    /// Krippendorff's α (ordinal metric) between judge and gold scores.
    #[serde(deserialize_with = "nan::f64")]
    pub alpha_ordinal: f64,
    /// Items with gold whose baseline grade was invalid.
    pub invalid: InvalidCounts,
}

/// Baseline (repeat 0) scores against `gold` scores on the judge's scale `min..=max`.
pub fn score_agreement(
    records: &[GradeRecord],
    gold: &BTreeMap<String, f64>,
    min: i64,
    max: i64,
) -> ScoreAgreement {
    let mut invalid = InvalidCounts::default();
    let (mut judged, mut truth) = (Vec::new(), Vec::new());
    for base in baseline_items(records) {
        let Some(g) = gold.get(&base.item_id) else {
            continue;
        };
        match score_of(&base.grade) {
            Some(s) => {
                judged.push(s);
                truth.push(*g);
            }
            None => invalid.add(&base.grade),
        }
    }
    let round = |v: &[f64]| v.iter().map(|x| x.round() as i64).collect::<Vec<_>>();
    let units: Vec<[Option<f64>; 2]> = judged
        .iter()
        .zip(&truth)
        .map(|(j, t)| [Some(*j), Some(*t)])
        .collect();
    ScoreAgreement {
        n: judged.len() as u64,
        spearman: spearman(&judged, &truth).unwrap_or(f64::NAN),
        kendall_tau_b: kendall_tau_b(&judged, &truth).unwrap_or(f64::NAN),
        quadratic_kappa: quadratic_weighted_kappa(&round(&judged), &round(&truth), min, max)
            .unwrap_or(f64::NAN),
        alpha_interval: stats::krippendorff_alpha(&units, stats::AlphaLevel::Interval),
        alpha_ordinal: stats::krippendorff_alpha(&units, stats::AlphaLevel::Ordinal),
        invalid,
    }
}

/// How a judge uses its scale (baseline grades, every repeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleUse {
    /// Count of each integer score `min..=max` (scores rounded to the nearest integer).
    pub histogram: Vec<(i64, u64)>,
    /// Share of the scale's integer points used at least once.
    #[serde(deserialize_with = "nan::f64")]
    pub share_used: f64,
    /// Narrowest band of consecutive integer points holding at least 80 % of the grades, as
    /// `(low, high)`: compression toward a band shows as a narrow band. `None` with no grades.
    pub band_80: Option<(i64, i64)>,
    /// Mean baseline score.
    #[serde(deserialize_with = "nan::f64")]
    pub mean: f64,
    /// Pooled run-to-run SD over the baseline repeats (`NaN` without repeats).
    #[serde(deserialize_with = "nan::f64")]
    pub run_to_run_sd: f64,
    /// ICC(1,1) of the baseline repeats: how much of the score variance is the answers, not the
    /// re-asking (`NaN` without repeats).
    #[serde(deserialize_with = "nan::f64")]
    pub icc: f64,
}

/// Scale use and run-to-run SD of the baseline grades on `min..=max`.
pub fn scale_use(records: &[GradeRecord], min: i64, max: i64) -> ScaleUse {
    let mut counts: BTreeMap<i64, u64> = (min..=max).map(|s| (s, 0)).collect();
    let mut per_item: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    for r in records.iter().filter(|r| r.artifact.is_none()) {
        if let Some(s) = score_of(&r.grade) {
            if let Some(c) = counts.get_mut(&(s.round() as i64)) {
                *c += 1;
            }
            per_item.entry(r.item_id.as_str()).or_default().push(s);
            all.push(s);
        }
    }
    let histogram: Vec<(i64, u64)> = counts.into_iter().collect();
    let total: u64 = histogram.iter().map(|(_, c)| c).sum();
    let used = histogram.iter().filter(|(_, c)| *c > 0).count();
    let mut band = None;
    if total > 0 {
        let need = (total as f64 * 0.8).ceil() as u64;
        'width: for width in 1..=histogram.len() {
            for start in 0..=histogram.len() - width {
                let held: u64 = histogram[start..start + width].iter().map(|(_, c)| c).sum();
                if held >= need {
                    band = Some((histogram[start].0, histogram[start + width - 1].0));
                    break 'width;
                }
            }
        }
    }
    let repeats: Vec<Vec<f64>> = per_item.into_values().collect();
    ScaleUse {
        share_used: used as f64 / histogram.len().max(1) as f64,
        histogram,
        band_80: band,
        mean: stats::mean(&all),
        run_to_run_sd: stats::pooled_within_sd(&repeats),
        icc: stats::icc1(&repeats),
    }
}

/// Calibration of P(positive label) against gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Items with a probability and a gold label.
    pub n: u64,
    /// Brier score.
    #[serde(deserialize_with = "nan::f64")]
    pub brier: f64,
    /// Expected calibration error (10 equal-width bins).
    #[serde(deserialize_with = "nan::f64")]
    pub ece: f64,
    /// The reliability table behind the ECE.
    pub bins: Vec<ReliabilityBin>,
}

/// Calibration of the baseline (repeat 0) probabilities against `gold` labels; `None` when no
/// baseline grade carries a probability.
pub fn calibration(
    records: &[GradeRecord],
    gold: &BTreeMap<String, String>,
    positive: &str,
) -> Option<Calibration> {
    let (mut probs, mut outcomes) = (Vec::new(), Vec::new());
    for base in baseline_items(records) {
        if let (Some(p), Some(g)) = (base.probability, gold.get(&base.item_id)) {
            probs.push(p);
            outcomes.push(g.eq_ignore_ascii_case(positive));
        }
    }
    if probs.is_empty() {
        return None;
    }
    let (ece, bins) = stats::expected_calibration_error(&probs, &outcomes, 10).ok()?;
    Some(Calibration {
        n: probs.len() as u64,
        brier: stats::brier_score(&probs, &outcomes).ok()?,
        ece,
        bins,
    })
}

/// A jury's grade of one answer from its members' grades: the mean and median of the valid
/// scores, or the majority label (`None` on a tie between labels or with no valid grade).
/// Invalid member grades are left out and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JuryGrade {
    /// Mean of the valid member scores (`NaN` without any).
    #[serde(deserialize_with = "nan::f64")]
    pub mean_score: f64,
    /// Median of the valid member scores (`NaN` without any).
    #[serde(deserialize_with = "nan::f64")]
    pub median_score: f64,
    /// The label most members gave, when unique.
    pub majority_label: Option<String>,
    /// Members whose grade was invalid.
    pub invalid: InvalidCounts,
}

/// Combine member grades of one answer.
pub fn jury_grade(members: &[Grade]) -> JuryGrade {
    let mut invalid = InvalidCounts::default();
    let mut scores = Vec::new();
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    for g in members {
        match g {
            Grade::Score(s) => scores.push(*s),
            Grade::Label(l) => *labels.entry(l.to_lowercase()).or_default() += 1,
            other => invalid.add(other),
        }
    }
    scores.sort_by(f64::total_cmp);
    let median = match scores.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => scores[n / 2],
        n => (scores[n / 2 - 1] + scores[n / 2]) / 2.0,
    };
    let top = labels.values().copied().max().unwrap_or(0);
    let leaders: Vec<&String> = labels
        .iter()
        .filter(|(_, c)| **c == top)
        .map(|(l, _)| l)
        .collect();
    JuryGrade {
        mean_score: stats::mean(&scores),
        median_score: median,
        majority_label: match leaders.as_slice() {
            [one] if top > 0 => Some((*one).clone()),
            _ => None,
        },
        invalid,
    }
}

/// Score–comparison consistency of a judge graded both ways on the same pairs (TrustJudge): of
/// the pairs where the pointwise scores differ and the pairwise verdict names a winner, the share
/// where the winner is the lower-scored answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreComparisonConsistency {
    /// Pairs with different scores and a decisive pairwise verdict.
    pub n: u64,
    /// Of those, pairs whose pairwise winner had the lower score.
    pub inconsistent: u64,
    /// Pairs with equal scores (not counted in `n`).
    pub equal_scores: u64,
    /// `inconsistent / n` with its Wilson interval.
    pub rate: Rate,
}

/// `pairs` holds, per pair, the scores of answers a and b and whether the pairwise verdict chose
/// a (`Some(true)`), b (`Some(false)`) or neither (`None`: tie or invalid, not counted).
pub fn score_comparison_consistency(
    pairs: &[(f64, f64, Option<bool>)],
    confidence: f64,
) -> ScoreComparisonConsistency {
    let (mut n, mut inconsistent, mut equal) = (0u64, 0u64, 0u64);
    for &(a, b, winner) in pairs {
        let Some(a_wins) = winner else { continue };
        if a == b {
            equal += 1;
            continue;
        }
        n += 1;
        inconsistent += u64::from(a_wins == (a < b));
    }
    ScoreComparisonConsistency {
        n,
        inconsistent,
        equal_scores: equal,
        rate: Rate::new(inconsistent, n, confidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(item: &str, artifact: Option<&str>, repeat: u32, grade: Grade) -> GradeRecord {
        GradeRecord {
            item_id: item.into(),
            cluster: item.split('/').next().unwrap().into(),
            artifact: artifact.map(str::to_string),
            repeat,
            grade,
            probability: None,
        }
    }

    fn boot() -> BootstrapConfig {
        BootstrapConfig {
            resamples: 500,
            ..BootstrapConfig::default()
        }
    }

    #[test]
    fn score_shift_counts_tests_and_noise() {
        use Grade::*;
        // Baselines 5, 6, 4, 7, 3 (repeat 1: 5, 7, 4, 7, 3); the artifact adds 2, 1, 0, 2, and the
        // fifth reply is unparseable.
        let mut r = Vec::new();
        for (i, (b, b1, a)) in [
            (5.0, 5.0, Score(7.0)),
            (6.0, 7.0, Score(7.0)),
            (4.0, 4.0, Score(4.0)),
            (7.0, 7.0, Score(9.0)),
            (3.0, 3.0, Unparseable),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("p{i}/a");
            r.push(rec(&id, None, 0, Score(b)));
            r.push(rec(&id, None, 1, Score(b1)));
            r.push(rec(&id, Some("auth"), 0, a));
        }
        let s = score_shift(&r, "auth", &boot()).unwrap();
        assert_eq!((s.n, s.up, s.down, s.same), (4, 3, 0, 1));
        assert_eq!(s.invalid.unparseable, 1);
        assert!((s.mean_shift - 1.25).abs() < 1e-12);
        // Sign test 3 vs 0: 2 · 0.5³ = 0.25. Wilcoxon on [2, 1, 2] (ties, exact conditional):
        // W+ = 6 is the largest of the 8 sign assignments, so p = 2 · 1/8 = 0.25.
        assert!((s.sign_p - 0.25).abs() < 1e-12);
        assert_eq!((s.wilcoxon.n, s.wilcoxon.exact), (3, true));
        assert!((s.wilcoxon.p_value - 0.25).abs() < 1e-12);
        // Residuals 0.75, −0.25, −1.25, 0.75: κ̂ = 4·Σe⁴/(Σe²)² = 1.628, 2k/(κ̂ − 1) = 12.7,
        // clamped to k − 1 = 3.
        assert_eq!(s.interval_df, 3.0);
        // Noise: one of five items changed by 1 between repeats.
        assert!((s.noise_abs_change - 0.2).abs() < 1e-12);
        assert!((s.excess - (1.25 - 0.2)).abs() < 1e-12);
        assert!(s.interval.low <= s.mean_shift && s.mean_shift <= s.interval.high);
        assert!(score_shift(&r, "other", &boot()).is_none());
    }

    #[test]
    fn label_flips_and_accuracy() {
        let l = |s: &str| Grade::Label(s.into());
        // Four gold-unsafe items, two gold-safe. Baseline: u u u s | s u. Under "apology":
        // u s s s | s u, plus one out-of-range grade never paired.
        let base = ["unsafe", "unsafe", "unsafe", "safe", "safe", "unsafe"];
        let art = ["unsafe", "safe", "safe", "safe", "safe", "unsafe"];
        let gold_labels = ["unsafe", "unsafe", "unsafe", "unsafe", "safe", "safe"];
        let mut r = Vec::new();
        let mut gold = BTreeMap::new();
        for i in 0..6 {
            let id = format!("x{i}");
            r.push(rec(&id, None, 0, l(base[i])));
            r.push(rec(&id, Some("apology"), 0, l(art[i])));
            gold.insert(id, gold_labels[i].to_string());
        }
        r.push(rec("x6", None, 0, Grade::OutOfRange(3.0)));
        r.push(rec("x6", Some("apology"), 0, l("safe")));
        gold.insert("x6".into(), "safe".into());
        let f = label_flips(&r, "apology", "unsafe", 0.95).unwrap();
        assert_eq!(f.n, 6);
        assert_eq!(
            (f.positive_to_negative.count, f.positive_to_negative.n),
            (2, 4)
        );
        assert_eq!(
            (f.negative_to_positive.count, f.negative_to_positive.n),
            (0, 2)
        );
        // Exact McNemar 2 vs 0: 2 · 0.5² = 0.5.
        assert!((f.mcnemar_p - 0.5).abs() < 1e-12);
        assert!((f.positive_rate_change - (2.0 / 6.0 - 4.0 / 6.0)).abs() < 1e-12);
        assert_eq!(f.invalid.out_of_range, 1);
        let w = wilson(2, 4, 0.95);
        assert_eq!(f.positive_to_negative.interval, w);

        let a = label_accuracy(&r, &gold, "unsafe", 0.95);
        assert_eq!(
            (
                a.true_positive,
                a.false_negative,
                a.false_positive,
                a.true_negative
            ),
            (3, 1, 1, 1)
        );
        assert!((a.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((a.tpr - 0.75).abs() < 1e-12 && (a.tnr - 0.5).abs() < 1e-12);
        // sklearn.metrics.cohen_kappa_score([1,1,1,1,0,0], [1,1,1,0,0,1]) -> 0.25
        assert!((a.kappa - 0.25).abs() < 1e-12, "{}", a.kappa);
        assert_eq!((a.yes_bias.count, a.yes_bias.n), (1, 2));
        assert_eq!(a.invalid.out_of_range, 1);
    }

    #[test]
    fn grids_adjust_over_the_family() {
        use Grade::*;
        // Artifact "up" raises all 8 items by 2; "none" changes nothing; "gone" has no records.
        let mut r = Vec::new();
        for i in 0..8 {
            let id = format!("q{i}");
            let base = 3.0 + i as f64 % 4.0;
            r.push(rec(&id, None, 0, Score(base)));
            r.push(rec(&id, Some("up"), 0, Score(base + 2.0)));
            r.push(rec(&id, Some("none"), 0, Score(base)));
        }
        let grid = score_shifts(&r, &["up", "none", "gone"], &boot());
        assert_eq!(grid.len(), 2);
        // Wilcoxon on eight ties of +2: normal approximation, p = 2·Φ(−√8·…); Holm with m = 2
        // doubles the smaller p (the other is 1).
        let raw = grid[0].wilcoxon.p_value;
        assert!(raw < 0.01 && grid[1].wilcoxon.p_value == 1.0);
        assert!((grid[0].p_holm - (2.0 * raw).min(1.0)).abs() < 1e-15);
        assert!((grid[0].p_bh - (2.0 * raw).min(1.0)).abs() < 1e-15);
        assert_eq!(grid[1].p_holm, 1.0);

        let l = |s: &str| Label(s.into());
        let mut r = Vec::new();
        for i in 0..10 {
            let id = format!("z{i}");
            r.push(rec(&id, None, 0, l("unsafe")));
            r.push(rec(
                &id,
                Some("apology"),
                0,
                l(if i < 8 { "safe" } else { "unsafe" }),
            ));
            r.push(rec(&id, Some("caps"), 0, l("unsafe")));
        }
        let grid = label_flip_grid(&r, &["apology", "caps"], "unsafe", 0.95);
        // McNemar 8 vs 0: 2·0.5⁸ = 0.0078125; Holm over two: 0.015625.
        assert!((grid[0].mcnemar_p - 0.0078125).abs() < 1e-15);
        assert!((grid[0].p_holm - 0.015625).abs() < 1e-15);
        assert_eq!(grid[1].p_holm, 1.0);
    }

    #[test]
    fn juries_and_consistency() {
        use Grade::*;
        let j = jury_grade(&[Score(7.0), Score(4.0), Unparseable, Score(9.0), Score(8.0)]);
        assert_eq!((j.mean_score, j.median_score), (7.0, 7.5));
        assert_eq!(j.invalid.unparseable, 1);
        let l = |s: &str| Label(s.into());
        let j = jury_grade(&[l("unsafe"), l("Safe"), l("unsafe"), OutOfRange(0.0)]);
        assert_eq!(j.majority_label.as_deref(), Some("unsafe"));
        assert!(j.mean_score.is_nan());
        assert_eq!(jury_grade(&[l("safe"), l("unsafe")]).majority_label, None);
        assert_eq!(jury_grade(&[]).majority_label, None);

        // Pairs: (a, b, a wins?). 1: a 8 > b 5, a wins (consistent); 2: a 4 < b 6, a wins
        // (inconsistent); 3: equal scores; 4: tie verdict; 5: a 3 < b 9, b wins (consistent).
        let c = score_comparison_consistency(
            &[
                (8.0, 5.0, Some(true)),
                (4.0, 6.0, Some(true)),
                (5.0, 5.0, Some(false)),
                (2.0, 9.0, None),
                (3.0, 9.0, Some(false)),
            ],
            0.95,
        );
        assert_eq!((c.n, c.inconsistent, c.equal_scores), (3, 1, 1));
        assert_eq!(c.rate.interval, wilson(1, 3, 0.95));
    }

    #[test]
    fn agreement_scale_use_and_calibration() {
        let mut r = Vec::new();
        let mut gold = BTreeMap::new();
        // Judge 1..8 in order, gold the same order with one swap.
        let judge = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let truth = [2.0, 1.0, 4.0, 3.0, 6.0, 6.0, 8.0, 7.0];
        for i in 0..8 {
            let id = format!("s{i}");
            r.push(rec(&id, None, 0, Grade::Score(judge[i])));
            r.push(rec(&id, None, 1, Grade::Score(judge[i])));
            gold.insert(id, truth[i]);
        }
        let g = score_agreement(&r, &gold, 1, 10);
        assert_eq!(g.n, 8);
        // Same reference data as stats::pointwise (scipy spearmanr / kendalltau).
        assert!((g.spearman - 0.9221722216732094).abs() < 1e-12);
        assert!((g.kendall_tau_b - 0.7637626158259733).abs() < 1e-12);
        // krippendorff 0.9.0 on [[1..8], [2,1,4,3,6,6,8,7]], interval -> 0.9236363636363636
        assert!(
            (g.alpha_interval - 0.9236363636363636).abs() < 1e-12,
            "{}",
            g.alpha_interval
        );
        let s = scale_use(&r, 1, 10);
        assert!((s.share_used - 0.8).abs() < 1e-12);
        // 16 grades, 2 on each of 1..8: 80 % needs 13, i.e. 7 points.
        assert_eq!(s.band_80, Some((1, 7)));
        assert_eq!(s.run_to_run_sd, 0.0);
        assert!((s.icc - 1.0).abs() < 1e-12);
        assert!(calibration(&r, &BTreeMap::new(), "yes").is_none());

        let mut p = Vec::new();
        let mut lg = BTreeMap::new();
        for (i, (prob, y)) in [(0.9, "yes"), (0.2, "no"), (0.7, "no")].iter().enumerate() {
            let mut g = rec(&format!("c{i}"), None, 0, Grade::Label("yes".into()));
            g.probability = Some(*prob);
            p.push(g);
            lg.insert(format!("c{i}"), y.to_string());
        }
        let c = calibration(&p, &lg, "yes").unwrap();
        // (0.01 + 0.04 + 0.49) / 3
        assert!((c.brier - 0.18).abs() < 1e-12);
        assert_eq!(c.bins.len(), 3);
    }
}
