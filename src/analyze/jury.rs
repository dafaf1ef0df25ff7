//! Juries computed post hoc from the jurors' verdicts on the same calls (no extra judge calls),
//! analysed exactly like a judge, plus what a jury designer needs: juror error correlation, the
//! effective jury size, and a composer that searches for the least artifact-sensitive jury.
//!
//! Aggregation rules (per call, on the slot verdicts the members gave to the same request):
//! - **majority**: a verdict (first / second / tie) wins when it has more than half of the
//!   counted votes; otherwise the jury says tie (Chen & Goldfarb-Tarrant 2025 §4 take "the
//!   majority vote" and leave ties unspecified; this makes the rule explicit).
//! - **unanimity**: the counted votes all agree, otherwise tie.
//! - **weighted**: as majority, on weights instead of counts. Weights from gold accuracy are the
//!   log-odds `ln(p/(1−p))` of each juror's accuracy p (Laplace-smoothed `(correct+1)/(n+2)`,
//!   floored at 0 so a juror no better than chance has no say): the optimal weights for
//!   independent binary experts (Nitzan & Paroush 1982; Shapley & Grofman 1984). Weights from κ
//!   are `max(κ_gold, 0)`. Without gold labels every weight is 1. The weights are estimated on
//!   the same gold labels the jury's accuracy is then measured on, so that accuracy is
//!   optimistic.
//!
//! Votes that count: first and second, and tie votes when `tie_rule = "tie"`; with
//! `tie_rule = "abstain"` a tie vote abstains. Unparseable or failed votes always abstain. With no
//! counted vote the jury says tie if some member said tie, is unparseable if some member was, and
//! failed otherwise.
//!
//! Effective jury size: with mean pairwise error correlation ρ̄ between m jurors, a jury behaves
//! like `n_eff = m / (1 + (m − 1)·ρ̄)` independent jurors (Kish's design effect for equally
//! correlated units, Kish 1965 "Survey Sampling" §5.4), so correlated jurors add little.

use super::index::{FAILED, FIRST, INVALID, Index, NOT_PLANNED, SECOND, TIE, Verdicts, obs};
use super::judge::{Ctx, Subject};
use super::{AnalysisOptions, JudgeKind, JudgeResult, Trust};
use crate::dataset::Preference;
use crate::design::{Order, Side};
use crate::judge::FaultKind;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An aggregation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JuryRule {
    /// More than half of the counted votes, else tie.
    Majority,
    /// All counted votes agree, else tie.
    Unanimity,
    /// More than half of the counted weight, else tie (weights from `weights`).
    Weighted,
}

impl JuryRule {
    /// Name used in jury names (`jury-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            JuryRule::Majority => "majority",
            JuryRule::Unanimity => "unanimity",
            JuryRule::Weighted => "weighted",
        }
    }
}

/// What a juror's tie vote does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TieRule {
    /// A tie vote is a vote for "tie".
    #[default]
    Tie,
    /// A tie vote abstains.
    Abstain,
}

/// Where the weights of the weighted rule come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSource {
    /// Log-odds of gold accuracy (module docs).
    #[default]
    GoldAccuracy,
    /// max(Cohen's κ against gold, 0).
    Kappa,
    /// All 1.
    Equal,
}

fn default_rules() -> Vec<JuryRule> {
    vec![JuryRule::Majority, JuryRule::Unanimity, JuryRule::Weighted]
}

/// `[jury]` in `audit.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JuryOptions {
    /// Analyse juries at all (they need two or more judges).
    pub enabled: bool,
    /// Jury members by judge name; empty = every judge.
    pub members: Vec<String>,
    /// Aggregation rules, one jury each.
    pub rules: Vec<JuryRule>,
    /// What a tie vote does.
    pub tie_rule: TieRule,
    /// Weights of the weighted rule.
    pub weights: WeightSource,
    /// Size of the jury the composer suggests (0 disables the composer).
    pub compose_size: usize,
    /// The composer searches exhaustively when there are at most this many subsets, and
    /// reports that it did not otherwise.
    pub compose_max_subsets: usize,
}

impl Default for JuryOptions {
    fn default() -> Self {
        JuryOptions {
            enabled: true,
            members: Vec::new(),
            rules: default_rules(),
            tie_rule: TieRule::Tie,
            weights: WeightSource::GoldAccuracy,
            compose_size: 3,
            compose_max_subsets: 2000,
        }
    }
}

/// A juror's weight in the weighted rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JurorWeight {
    /// Juror.
    pub judge: String,
    /// Weight.
    pub weight: f64,
    /// What it was computed from.
    pub basis: String,
}

/// Pairwise correlation between jurors of an error indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationMatrix {
    /// What is correlated.
    pub indicator: String,
    /// Jurors (rows and columns).
    pub judges: Vec<String>,
    /// Pearson (phi) correlation; `None` where undefined (no variation or no common item).
    pub values: Vec<Vec<Option<f64>>>,
    /// Items both jurors have a valid indicator on.
    pub n: Vec<Vec<u64>>,
    /// Mean of the defined off-diagonal correlations ρ̄.
    pub mean: Option<f64>,
    /// Effective jury size m / (1 + (m − 1)·ρ̄).
    pub effective_size: Option<f64>,
}

/// One jury the composer evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposerCandidate {
    /// Members.
    pub members: Vec<String>,
    /// max over artifacts of max(|T|, |WR|) of the majority-vote jury (the objective).
    pub max_abs_effect: f64,
    /// max |T| over artifacts.
    pub max_abs_t: f64,
    /// max |WR| over artifacts.
    pub max_abs_wr: f64,
    /// T per artifact (plan order; `None` when not estimable).
    pub t: Vec<Option<f64>>,
    /// WR per artifact.
    pub wr: Vec<Option<f64>>,
}

/// The jury composer's suggestion (Chen & Goldfarb-Tarrant 2025 §4: pair jurors whose artifact
/// biases have opposite signs so they cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposerResult {
    /// Jury size searched.
    pub size: usize,
    /// Subsets evaluated.
    pub evaluated: usize,
    /// How candidates are ranked.
    pub objective: String,
    /// Artifacts, in the order of the per-artifact vectors.
    pub artifacts: Vec<String>,
    /// The best jury.
    pub suggestion: ComposerCandidate,
    /// Each suggested member's own T per artifact, to show which biases cancel.
    pub member_t: BTreeMap<String, Vec<Option<f64>>>,
    /// The best few juries, best first.
    pub candidates: Vec<ComposerCandidate>,
    /// Caveat: selected on the same data it is scored on.
    pub note: String,
}

/// Jury design results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JuryAnalysis {
    /// Members of the configured juries.
    pub members: Vec<String>,
    /// What a tie vote does.
    pub tie_rule: TieRule,
    /// Weights of the weighted rule.
    pub weight_source: WeightSource,
    /// The weights.
    pub weights: Vec<JurorWeight>,
    /// Names of the juries analysed (in `juries`).
    pub juries: Vec<String>,
    /// Correlation of "the verdict flipped under the artifact" (text artifacts' shift
    /// comparisons) between jurors.
    pub flip_correlation: CorrelationMatrix,
    /// Correlation of "the baseline verdict disagrees with gold" (pairs with a non-tie gold
    /// label) between jurors.
    pub error_correlation: CorrelationMatrix,
    /// Composer suggestion (when enough judges).
    pub composer: Option<ComposerResult>,
    /// Notes (unknown members, skipped composer, ...).
    pub notes: Vec<String>,
}

/// Aggregate one call's member votes `(code, weight)`.
pub(crate) fn aggregate(
    votes: impl Iterator<Item = (u8, f64)>,
    rule: JuryRule,
    tie_rule: TieRule,
) -> u8 {
    let mut weight = [0.0f64; 3];
    let mut count = [0u32; 3];
    let (mut planned, mut tie_abstained, mut invalid) = (false, false, false);
    for (code, w) in votes {
        let k = match code {
            NOT_PLANNED => continue,
            FAILED => {
                planned = true;
                continue;
            }
            INVALID => {
                planned = true;
                invalid = true;
                continue;
            }
            FIRST => 0,
            SECOND => 1,
            _ if tie_rule == TieRule::Abstain => {
                planned = true;
                tie_abstained = true;
                continue;
            }
            _ => 2,
        };
        planned = true;
        count[k] += 1;
        weight[k] += if rule == JuryRule::Weighted { w } else { 1.0 };
    }
    const CODES: [u8; 3] = [FIRST, SECOND, TIE];
    if !planned {
        return NOT_PLANNED;
    }
    if count.iter().all(|&c| c == 0) {
        return if tie_abstained {
            TIE
        } else if invalid {
            INVALID
        } else {
            FAILED
        };
    }
    match rule {
        JuryRule::Unanimity => {
            let used: Vec<usize> = (0..3).filter(|&k| count[k] > 0).collect();
            if used.len() == 1 { CODES[used[0]] } else { TIE }
        }
        JuryRule::Majority | JuryRule::Weighted => {
            let total: f64 = weight.iter().sum();
            (0..3)
                .find(|&k| weight[k] > total / 2.0)
                .map_or(TIE, |k| CODES[k])
        }
    }
}

/// The jury's verdict matrix from its members' matrices.
pub(crate) fn synthesize(
    members: &[&Verdicts],
    weights: &[f64],
    rule: JuryRule,
    tie_rule: TieRule,
) -> Verdicts {
    let cells = members.first().map_or(0, |m| m.codes.len());
    let codes: Vec<u8> = (0..cells)
        .into_par_iter()
        .with_min_len(4096)
        .map(|c| {
            aggregate(
                members.iter().zip(weights).map(|(m, &w)| (m.codes[c], w)),
                rule,
                tie_rule,
            )
        })
        .collect();
    let mut counts = super::index::Counts::default();
    for &code in &codes {
        if code != NOT_PLANNED {
            // A jury has no calls of its own: every planned vote counts as recorded.
            counts.planned += 1;
            counts.recorded += 1;
        }
        if code >= INVALID {
            counts.completed += 1;
        }
        if code == INVALID {
            counts.invalid += 1;
        }
    }
    for m in members {
        counts.input_tokens += m.counts.input_tokens;
        counts.output_tokens += m.counts.output_tokens;
    }
    Verdicts {
        codes,
        probs: None,
        counts,
    }
}

/// Streaming Pearson correlation of two 0/1 indicators.
#[derive(Default, Clone, Copy)]
struct Corr {
    n: f64,
    x: f64,
    y: f64,
    xy: f64,
}

impl Corr {
    fn add(&mut self, x: bool, y: bool) {
        let (x, y) = (f64::from(u8::from(x)), f64::from(u8::from(y)));
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xy += x * y;
    }

    /// phi = (nΣxy − ΣxΣy) / √((nΣx − (Σx)²)(nΣy − (Σy)²)); `None` without variation.
    fn value(&self) -> Option<f64> {
        // For 0/1 indicators Σx² = Σx.
        let den = (self.n * self.x - self.x * self.x) * (self.n * self.y - self.y * self.y);
        (den > 0.0).then(|| (self.n * self.xy - self.x * self.y) / den.sqrt())
    }
}

fn matrix(
    indicator: &str,
    names: &[String],
    cells: &[Vec<Corr>],
    own: &[u64],
) -> CorrelationMatrix {
    let m = names.len();
    let values: Vec<Vec<Option<f64>>> = (0..m)
        .map(|i| {
            (0..m)
                .map(|j| {
                    if i == j {
                        Some(1.0)
                    } else {
                        cells[i][j].value()
                    }
                })
                .collect()
        })
        .collect();
    let off: Vec<f64> = (0..m)
        .flat_map(|i| (i + 1..m).map(move |j| (i, j)))
        .filter_map(|(i, j)| values[i][j])
        .collect();
    let mean = (!off.is_empty()).then(|| off.iter().sum::<f64>() / off.len() as f64);
    let effective_size = mean
        .map(|r| m as f64 / (1.0 + (m as f64 - 1.0) * r))
        .filter(|n| n.is_finite() && *n > 0.0);
    CorrelationMatrix {
        indicator: indicator.into(),
        judges: names.to_vec(),
        values,
        n: (0..m)
            .map(|i| {
                (0..m)
                    .map(|j| if i == j { own[i] } else { cells[i][j].n as u64 })
                    .collect()
            })
            .collect(),
        mean,
        effective_size,
    }
}

/// Flip and gold-error correlation between `members`.
fn correlations(
    ctx: &Ctx<'_>,
    members: &[&Verdicts],
    names: &[String],
) -> (CorrelationMatrix, CorrelationMatrix) {
    let l = ctx.layout;
    let m = members.len();
    let mut flips = vec![vec![Corr::default(); m]; m];
    let mut errors = vec![vec![Corr::default(); m]; m];
    let mut flip_ind: Vec<Option<bool>> = vec![None; m];
    let (mut own_flips, mut own_errors) = (vec![0u64; m], vec![0u64; m]);
    for (i, pair) in ctx.pairs.iter().enumerate() {
        for order in Order::BOTH {
            for a in (0..l.artifacts.len()).filter(|&a| Some(a) != ctx.position) {
                for side in [Side::A, Side::B] {
                    let side_first = (order == Order::Ab) == (side == Side::A);
                    for (j, v) in members.iter().enumerate() {
                        let before = obs(v.code(l, i, l.baseline(order, 0)), side_first).val();
                        let after = obs(v.code(l, i, l.shift(a, side, order)), side_first).val();
                        flip_ind[j] = before.zip(after).map(|(x, y)| x != y);
                    }
                    add_pairs(&mut flips, &mut own_flips, &flip_ind);
                }
            }
            let Some(gold) = pair.preferred.filter(|p| *p != Preference::Tie) else {
                continue;
            };
            for repeat in 0..l.repeats {
                for (j, v) in members.iter().enumerate() {
                    let score = obs(v.code(l, i, l.baseline(order, repeat)), order == Order::Ab);
                    let wanted = if gold == Preference::A { 1 } else { -1 };
                    flip_ind[j] = score.val().map(|s| s != wanted);
                }
                add_pairs(&mut errors, &mut own_errors, &flip_ind);
            }
        }
    }
    (
        matrix(
            "flipped under the artifact (shift comparisons of text artifacts)",
            names,
            &flips,
            &own_flips,
        ),
        matrix(
            "baseline verdict differs from the gold label (non-tie gold)",
            names,
            &errors,
            &own_errors,
        ),
    )
}

fn add_pairs(cells: &mut [Vec<Corr>], own: &mut [u64], ind: &[Option<bool>]) {
    for i in 0..ind.len() {
        let Some(x) = ind[i] else { continue };
        own[i] += 1;
        for j in i + 1..ind.len() {
            if let Some(y) = ind[j] {
                cells[i][j].add(x, y);
                cells[j][i].add(y, x);
            }
        }
    }
}

fn weights(
    members: &[usize],
    judges: &[JudgeResult],
    source: WeightSource,
) -> (Vec<f64>, Vec<JurorWeight>) {
    let mut basis = Vec::new();
    let mut w: Vec<f64> = members
        .iter()
        .map(|&j| {
            let b = &judges[j].baseline;
            match source {
                WeightSource::Equal => {
                    basis.push("equal".to_string());
                    1.0
                }
                WeightSource::GoldAccuracy => match b.gold_accuracy.estimate {
                    Some(acc) => {
                        let n = b.gold_accuracy.n as f64;
                        let p = (acc * n + 1.0) / (n + 2.0);
                        basis.push(format!(
                            "gold accuracy {:.3} over {} calls, log-odds of (correct+1)/(n+2)",
                            acc, b.gold_accuracy.n
                        ));
                        (p / (1.0 - p)).ln().max(0.0)
                    }
                    None => {
                        basis.push("no gold labels: 1".into());
                        1.0
                    }
                },
                WeightSource::Kappa => match b.gold_kappa.estimate {
                    Some(k) => {
                        basis.push(format!("gold κ {k:.3}, floored at 0"));
                        k.max(0.0)
                    }
                    None => {
                        basis.push("κ not estimable: 1".into());
                        1.0
                    }
                },
            }
        })
        .collect();
    if w.iter().all(|&x| x == 0.0) {
        w.iter_mut().for_each(|x| *x = 1.0);
        basis
            .iter_mut()
            .for_each(|b| b.push_str("; every weight was 0, so all are 1"));
    }
    let info = members
        .iter()
        .zip(&w)
        .zip(basis)
        .map(|((&j, &weight), basis)| JurorWeight {
            judge: judges[j].name.clone(),
            weight,
            basis,
        })
        .collect();
    (w, info)
}

/// Point T and WR per artifact of a verdict matrix (no interval): the composer's objective.
fn point_effects(ctx: &Ctx<'_>, v: &Verdicts) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let l = ctx.layout;
    let mean = |s: f64, c: f64| (c > 0.0).then(|| s / c);
    let mut ts = Vec::new();
    let mut wrs = Vec::new();
    for a in 0..l.artifacts.len() {
        let is_position = ctx.position == Some(a);
        let (mut ts_sum, mut ts_n) = (0.0, 0.0);
        let mut side = [[0.0f64; 2]; 2];
        for i in 0..ctx.pairs.len() {
            for s in [Side::A, Side::B] {
                for order in Order::BOTH {
                    for r in 0..l.repeats {
                        let artifact_first = is_position || order == Order::Ab;
                        if let Some(x) =
                            obs(v.code(l, i, l.tie(a, s, order, r)), artifact_first).val()
                        {
                            ts_sum += f64::from(x);
                            ts_n += 1.0;
                        }
                    }
                }
            }
            if is_position {
                for r in 0..l.repeats {
                    for (k, order) in Order::BOTH.into_iter().enumerate() {
                        if let Some(x) = obs(v.code(l, i, l.baseline(order, r)), true).val() {
                            side[k][0] += f64::from(x);
                            side[k][1] += 1.0;
                        }
                    }
                }
            } else {
                for (k, s) in [Side::A, Side::B].into_iter().enumerate() {
                    for order in Order::BOTH {
                        let side_first = (order == Order::Ab) == (s == Side::A);
                        if let Some(x) = obs(v.code(l, i, l.shift(a, s, order)), side_first).val() {
                            side[k][0] += f64::from(x);
                            side[k][1] += 1.0;
                        }
                    }
                }
            }
        }
        ts.push(mean(ts_sum, ts_n));
        wrs.push(
            mean(side[0][0], side[0][1])
                .zip(mean(side[1][0], side[1][1]))
                .map(|(x, y)| 0.5 * (x + y)),
        );
    }
    (ts, wrs)
}

fn max_abs(v: &[Option<f64>]) -> f64 {
    v.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max)
}

/// All k-subsets of 0..n in lexicographic order.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = (0..k).collect();
    if k == 0 || k > n {
        return out;
    }
    loop {
        out.push(cur.clone());
        let Some(i) = (0..k).rev().find(|&i| cur[i] != i + n - k) else {
            return out;
        };
        cur[i] += 1;
        for j in i + 1..k {
            cur[j] = cur[j - 1] + 1;
        }
    }
}

fn binomial(n: usize, k: usize) -> u128 {
    (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
}

/// The judges the composer may suggest: never one the audit REJECTs or could not audit, nor one
/// without votes on every artifact the composer ranks (a scoped judge outside its
/// `audit_artifacts`): a jury is only as good as the evidence on each member. Verdicts here are
/// computed on the judges' own multiplicity family (the final ones add the juries' tests under
/// `multiplicity = "run"`, which can only make fewer effects significant).
fn composer_pool(
    judges: &[JudgeResult],
    options: &AnalysisOptions,
    notes: &mut Vec<String>,
) -> Vec<usize> {
    if options.jury.compose_size < 2 {
        return (0..judges.len()).collect();
    }
    let mut provisional = judges.to_vec();
    super::multiplicity::adjust(&mut provisional, &mut [], options.multiplicity);
    let mut pool = Vec::new();
    for (j, result) in provisional.iter_mut().enumerate() {
        for a in &mut result.artifacts {
            let tests = [
                &a.tie_detection.score,
                &a.winrate_shift.shift,
                &a.flip_rate.rate,
            ];
            a.significant = tests.iter().any(|e| e.significant());
        }
        let verdict = super::trust::verdict(result, &options.trust).verdict;
        let missing: Vec<&str> = result
            .artifacts
            .iter()
            .filter(|a| {
                let t = &a.tie_detection;
                t.prefers_artifact + t.prefers_original + t.ties == 0 && a.winrate_shift.pairs == 0
            })
            .map(|a| a.artifact.as_str())
            .collect();
        if matches!(verdict, Trust::Reject | Trust::CouldNotAudit) {
            notes.push(format!(
                "composer: `{}` is not suggested as a juror ({})",
                result.name,
                verdict.label()
            ));
        } else if !missing.is_empty() {
            notes.push(format!(
                "composer: `{}` is not suggested as a juror (no votes for {})",
                result.name,
                missing.join(", ")
            ));
        } else {
            pool.push(j);
        }
    }
    pool
}

fn compose(
    ctx: &Ctx<'_>,
    index: &Index,
    judges: &[JudgeResult],
    pool: &[usize],
    options: &super::jury::JuryOptions,
    notes: &mut Vec<String>,
) -> Option<ComposerResult> {
    let (m, k) = (pool.len(), options.compose_size);
    if k < 2 || m < k {
        if k >= 2 {
            notes.push(format!(
                "composer skipped: {m} eligible judges, fewer than the jury size {k}"
            ));
        }
        return None;
    }
    let count = binomial(m, k);
    if count > options.compose_max_subsets as u128 {
        notes.push(format!(
            "composer skipped: {count} subsets of size {k} exceed compose_max_subsets = {}",
            options.compose_max_subsets
        ));
        return None;
    }
    let mut candidates: Vec<ComposerCandidate> = subsets(m, k)
        .par_iter()
        .map(|set| {
            let set: Vec<usize> = set.iter().map(|&i| pool[i]).collect();
            let members: Vec<&Verdicts> = set.iter().map(|&j| &index.judges[j]).collect();
            let v = synthesize(
                &members,
                &vec![1.0; k],
                JuryRule::Majority,
                options.tie_rule,
            );
            let (t, wr) = point_effects(ctx, &v);
            let (max_abs_t, max_abs_wr) = (max_abs(&t), max_abs(&wr));
            ComposerCandidate {
                members: set.iter().map(|&j| judges[j].name.clone()).collect(),
                max_abs_effect: max_abs_t.max(max_abs_wr),
                max_abs_t,
                max_abs_wr,
                t,
                wr,
            }
        })
        .collect();
    let mean_abs = |c: &ComposerCandidate| {
        let v: Vec<f64> = c.t.iter().chain(&c.wr).flatten().map(|x| x.abs()).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    candidates.sort_by(|a, b| {
        a.max_abs_effect
            .total_cmp(&b.max_abs_effect)
            .then(mean_abs(a).total_cmp(&mean_abs(b)))
            .then(a.members.cmp(&b.members))
    });
    let evaluated = candidates.len();
    let suggestion = candidates.first()?.clone();
    let member_t = suggestion
        .members
        .iter()
        .filter_map(|name| {
            let j = judges.iter().find(|j| &j.name == name)?;
            Some((
                name.clone(),
                j.artifacts
                    .iter()
                    .map(|a| a.tie_detection.score.estimate)
                    .collect(),
            ))
        })
        .collect();
    candidates.truncate(5);
    Some(ComposerResult {
        size: k,
        evaluated,
        objective: "minimise the largest |T| or |WR| over all artifacts (position included) of the majority-vote jury, computed post hoc from the jurors' verdicts; ties broken by the mean |T|, |WR|".into(),
        artifacts: ctx.layout.artifacts.clone(),
        suggestion,
        member_t,
        candidates,
        note: "Selected on the same pairs it is scored on, so its numbers are optimistic: confirm the suggestion on fresh pairs".into(),
    })
}

/// Juries (configured rules plus the composer's suggestion) analysed as judges, and the jury
/// design results. Nothing when juries are disabled or there are fewer than two judges.
pub(crate) fn analyze_juries(
    ctx: &Ctx<'_>,
    index: &Index,
    judges: &[JudgeResult],
    options: &AnalysisOptions,
) -> (Vec<JudgeResult>, Option<JuryAnalysis>) {
    let jo = &options.jury;
    if !jo.enabled || judges.len() < 2 {
        return (Vec::new(), None);
    }
    let mut notes = Vec::new();
    let mut members: Vec<usize> = if jo.members.is_empty() {
        (0..judges.len()).collect()
    } else {
        jo.members
            .iter()
            .filter_map(|name| {
                let found = judges.iter().position(|j| &j.name == name);
                if found.is_none() {
                    notes.push(format!(
                        "jury member `{name}` is not a judge of this run; ignored"
                    ));
                }
                found
            })
            .collect()
    };
    members.sort_unstable();
    members.dedup();
    if members.len() < 2 {
        notes.push("fewer than two jury members: no jury analysed".into());
        return (
            Vec::new(),
            Some(JuryAnalysis {
                members: members.iter().map(|&j| judges[j].name.clone()).collect(),
                tie_rule: jo.tie_rule,
                weight_source: jo.weights,
                weights: Vec::new(),
                juries: Vec::new(),
                flip_correlation: matrix("", &[], &[], &[]),
                error_correlation: matrix("", &[], &[], &[]),
                composer: None,
                notes,
            }),
        );
    }
    let names: Vec<String> = members.iter().map(|&j| judges[j].name.clone()).collect();
    let verdicts: Vec<&Verdicts> = members.iter().map(|&j| &index.judges[j]).collect();
    let (w, weight_info) = weights(&members, judges, jo.weights);
    let pool = composer_pool(judges, options, &mut notes);
    let composer = compose(ctx, index, judges, &pool, jo, &mut notes);

    // (name, member indices, rule, weights)
    let mut specs: Vec<(String, Vec<usize>, JuryRule, Vec<f64>)> = Vec::new();
    let mut rules = jo.rules.clone();
    rules.dedup();
    for rule in rules {
        let weights = if rule == JuryRule::Weighted {
            w.clone()
        } else {
            vec![1.0; members.len()]
        };
        specs.push((
            format!("jury-{}", rule.name()),
            members.clone(),
            rule,
            weights,
        ));
    }
    if let Some(c) = &composer {
        let mut chosen: Vec<usize> = c
            .suggestion
            .members
            .iter()
            .filter_map(|n| judges.iter().position(|j| &j.name == n))
            .collect();
        chosen.sort_unstable();
        if chosen != members {
            let k = chosen.len();
            specs.push((
                "jury-suggested".into(),
                chosen,
                JuryRule::Majority,
                vec![1.0; k],
            ));
        }
    }
    let family_size = options
        .multiplicity
        .grid_family_size(specs.len(), ctx.layout.artifacts.len());
    let tie_words = match jo.tie_rule {
        TieRule::Tie => "tie votes count as votes for tie",
        TieRule::Abstain => "tie votes abstain",
    };
    let juries: Vec<JudgeResult> = specs
        .par_iter()
        .map(|(name, set, rule, weights)| {
            let member_verdicts: Vec<&Verdicts> = set.iter().map(|&j| &index.judges[j]).collect();
            let v = synthesize(&member_verdicts, weights, *rule, jo.tie_rule);
            let member_names: Vec<String> = set.iter().map(|&j| judges[j].name.clone()).collect();
            let rule_words = match rule {
                JuryRule::Majority => "majority: more than half of the counted votes".to_string(),
                JuryRule::Unanimity => "unanimity: all counted votes agree".to_string(),
                JuryRule::Weighted => format!(
                    "weighted majority: more than half of the counted weight (weights {})",
                    set.iter()
                        .zip(weights)
                        .map(|(&j, w)| format!("{} {:.3}", judges[j].name, w))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let mut faults: BTreeMap<FaultKind, u64> = BTreeMap::new();
            for &j in set {
                for (kind, n) in &judges[j].faults {
                    *faults.entry(*kind).or_default() += n;
                }
            }
            let stopped: Vec<String> = set
                .iter()
                .filter_map(|&j| {
                    judges[j]
                        .stopped
                        .as_ref()
                        .map(|s| format!("member {} stopped: {s}", judges[j].name))
                })
                .collect();
            ctx.analyze(
                Subject {
                    name: name.clone(),
                    kind: JudgeKind::Jury,
                    members: member_names,
                    rule: Some(format!(
                        "{rule_words}, else tie; {tie_words}; unparseable or failed votes abstain"
                    )),
                    // A jury is simulated only when every member is: one with a real judge among its
                    // members is not "a jury of SIMULATED judges" (the reports name its
                    // simulated members instead).
                    simulated: set.iter().all(|&j| judges[j].simulated),
                    verdicts: &v,
                    faults,
                    stopped: (!stopped.is_empty()).then(|| stopped.join("; ")),
                    planted: None,
                },
                family_size,
            )
        })
        .collect();
    let (flip_correlation, error_correlation) = correlations(ctx, &verdicts, &names);
    let analysis = JuryAnalysis {
        members: names,
        tie_rule: jo.tie_rule,
        weight_source: jo.weights,
        weights: weight_info,
        juries: juries.iter().map(|j| j.name.clone()).collect(),
        flip_correlation,
        error_correlation,
        composer,
        notes,
    };
    (juries, Some(analysis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(codes: &[u8], rule: JuryRule, tie: TieRule) -> u8 {
        aggregate(codes.iter().map(|&c| (c, 1.0)), rule, tie)
    }

    #[test]
    fn majority_rules_by_hand() {
        use JuryRule::*;
        use TieRule::*;
        assert_eq!(agg(&[FIRST, FIRST, SECOND], Majority, Tie), FIRST);
        assert_eq!(
            agg(&[FIRST, SECOND, TIE], Majority, Tie),
            TIE,
            "no majority"
        );
        assert_eq!(agg(&[FIRST, TIE, TIE], Majority, Tie), TIE, "tie votes win");
        assert_eq!(
            agg(&[FIRST, TIE, TIE], Majority, Abstain),
            FIRST,
            "ties abstain"
        );
        assert_eq!(agg(&[FIRST, INVALID, FAILED], Majority, Tie), FIRST);
        assert_eq!(agg(&[FIRST, SECOND, INVALID], Majority, Tie), TIE);
        assert_eq!(agg(&[INVALID, FAILED, INVALID], Majority, Tie), INVALID);
        assert_eq!(agg(&[FAILED, FAILED], Majority, Tie), FAILED);
        assert_eq!(agg(&[TIE, TIE, INVALID], Majority, Abstain), TIE);
        assert_eq!(agg(&[NOT_PLANNED, NOT_PLANNED], Majority, Tie), NOT_PLANNED);
        assert_eq!(agg(&[FIRST, FIRST, SECOND], Unanimity, Tie), TIE);
        assert_eq!(agg(&[SECOND, SECOND, INVALID], Unanimity, Tie), SECOND);
        assert_eq!(agg(&[SECOND, TIE], Unanimity, Abstain), SECOND);
        assert_eq!(agg(&[SECOND, TIE], Unanimity, Tie), TIE);
    }

    #[test]
    fn weighted_majority_by_hand() {
        // Weights 3, 1, 1: the heavy juror alone outvotes the other two (3 > 5/2).
        let votes = [(FIRST, 3.0), (SECOND, 1.0), (SECOND, 1.0)];
        assert_eq!(
            aggregate(votes.into_iter(), JuryRule::Weighted, TieRule::Tie),
            FIRST
        );
        // Weights 2, 1, 1: 2 is not more than half of 4, so no majority.
        let votes = [(FIRST, 2.0), (SECOND, 1.0), (SECOND, 1.0)];
        assert_eq!(
            aggregate(votes.into_iter(), JuryRule::Weighted, TieRule::Tie),
            TIE
        );
        // The same votes under plain majority: second wins 2 of 3.
        let votes = [(FIRST, 2.0), (SECOND, 1.0), (SECOND, 1.0)];
        assert_eq!(
            aggregate(votes.into_iter(), JuryRule::Majority, TieRule::Tie),
            SECOND
        );
    }

    #[test]
    fn phi_correlation_matches_a_hand_table() {
        // 2 x 2 table a=3 (1,1), b=1 (1,0), c=1 (0,1), d=5 (0,0): phi = (ad − bc)/√(r1 r2 c1 c2)
        // = (15 − 1)/√(4·6·4·6) = 14/24.
        let mut c = Corr::default();
        for (x, y, k) in [
            (true, true, 3),
            (true, false, 1),
            (false, true, 1),
            (false, false, 5),
        ] {
            for _ in 0..k {
                c.add(x, y);
            }
        }
        assert!((c.value().unwrap() - 14.0 / 24.0).abs() < 1e-12);
        let mut flat = Corr::default();
        flat.add(true, true);
        flat.add(true, false);
        assert_eq!(flat.value(), None, "no variation in x");
    }

    #[test]
    fn effective_size_is_kish() {
        let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut cells = vec![vec![Corr::default(); 3]; 3];
        // Identical indicators for every pair: ρ = 1, n_eff = 1.
        for (x, y) in [(true, true), (false, false), (true, true), (false, false)] {
            for (i, row) in cells.iter_mut().enumerate() {
                for (j, cell) in row.iter_mut().enumerate() {
                    if i != j {
                        cell.add(x, y);
                    }
                }
            }
        }
        let m = matrix("x", &names, &cells, &[4, 4, 4]);
        assert_eq!(m.mean, Some(1.0));
        assert!((m.effective_size.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn subsets_enumerate_in_order() {
        assert_eq!(
            subsets(4, 2),
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
        assert_eq!(subsets(3, 3), vec![vec![0, 1, 2]]);
        assert!(subsets(2, 3).is_empty());
        assert_eq!(binomial(20, 3), 1140);
    }
}
