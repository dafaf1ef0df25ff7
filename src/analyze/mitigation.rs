//! Post-hoc mitigations: what a cheap change to *how a judge is asked* would have done, measured
//! on the calls the audit already made (no new calls).
//!
//! Each mitigation rewrites a judge's verdict matrix into the verdicts the mitigated judge would
//! have returned, and the rewritten matrix is analysed by the same code as every judge (`Ctx`
//! with the judge's own bootstrap seed, so the resampled pairs are the unmitigated judge's): the
//! residual T, WR and flip rate have exactly the definitions and pair-clustered intervals of the
//! unmitigated ones.
//!
//! - **swap-and-confirm**: both orders of a comparison; a verdict counts only when the two agree
//!   on the same answer, otherwise it is a tie. For the position artifact (the same answer in both
//!   slots, asked in one order), the swapped call is the next repeat of the identical request.
//! - **order-averaged label probabilities**: P(answer wins) averaged over both orders, the
//!   verdict is the label with the highest average (a tie when the two answers' averages are
//!   equal). Only when the records carry label probabilities.
//! - **majority over repeats**: the strict majority of a condition's `k` repeats (a tie when none
//!   has one). Only conditions the design repeats (the baseline and the position artifact's
//!   calls) can be measured; the text artifacts' calls are made once and are reported as not
//!   measured.
//! - **majority over templates**: for a judge with template variants (`templates = [...]`),
//!   every call is asked with each of the judge's templates on identical inputs (same pair,
//!   order and repeat), so the mitigated verdict of a call is the strict majority of its
//!   templates' valid verdicts; no strict majority (e.g. one template each for A, B and tie, or
//!   two against two) is a tie; a call no template answered validly is unparseable (failed when
//!   every template's call failed), never coerced. With `design.templates = "baseline"` the
//!   variants make the baseline calls only, so gold accuracy is measured and the artifacts'
//!   residual effects are not (`"all"` measures them). Costs one call per template.
//! - **juries**: the juries the analysis already aggregated, referenced by name with their own
//!   estimates (not recomputed).
//!
//! Every mitigation here is chosen on the data it is measured on, so its apparent benefit is
//! optimistic: the section says so and every entry is marked `post_hoc`.
//!
//! New-call mitigations (`[mitigations]` in audit.toml: `bias_instruction`, `normalise`) are
//! audited as derived judges on the full design; their entries ([`NewCall`]) carry the derived
//! judge's own estimates against the unmitigated judge's, the same paired flip test, and
//! `post_hoc = false`: they were measured on calls of their own, not rewritten from the judge's.

use super::index::{FAILED, FIRST, INVALID, Layout, NOT_PLANNED, Obs, SECOND, TIE, Verdicts, obs};
use super::judge::{Ctx, Subject, rate_estimate};
use super::{ArtifactResult, Estimate, JudgeKind, JudgeResult};
use crate::design::{Order, Side};
use crate::stats;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Gold accuracy a mitigation may lose (absolute) and still be recommended.
pub const GOLD_MARGIN: f64 = 0.05;

/// The sentence every output carries with the section.
pub const POST_HOC_NOTE: &str = "Post hoc: every mitigation is measured on the same calls it \
would be chosen on, so its apparent benefit is optimistic; confirm the chosen mitigation on \
held-out pairs before relying on it.";

/// How costs are counted, in words (shown with the section).
pub const COST_RULE: &str = "Cost multiplier = judge calls per mitigated verdict ÷ calls per \
verdict of the judge asked once in one order (swap-and-confirm and order averaging: 2, both \
orders; majority over k repeats: k; majority over m templates: m; a jury: one call per \
juror). Tokens = calls × the recorded \
mean tokens (input + output) per call of each judge involved, over this judge's mean tokens per \
call: the same as the call multiplier for the judge's own mitigations (both orders and every \
repeat send the same texts), the jurors' summed tokens per call for a jury, the templates' \
summed tokens per call for a majority over templates.";

/// The mitigations section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MitigationSection {
    /// Always true: every mitigation here is post hoc (measured on the data it is chosen on).
    pub post_hoc: bool,
    /// The warning that goes with it ([`POST_HOC_NOTE`]).
    pub note: String,
    /// How costs are counted ([`COST_RULE`]).
    pub cost_rule: String,
    /// Gold accuracy a recommended mitigation may lose ([`GOLD_MARGIN`]).
    pub gold_margin: f64,
    /// One entry per pairwise judge, in plan order.
    pub judges: Vec<JudgeMitigations>,
}

/// The mitigations of one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeMitigations {
    /// Judge name.
    pub judge: String,
    /// True for a simulated judge.
    pub simulated: bool,
    /// Artifacts with a Holm-significant effect on the unmitigated judge: what a mitigation has
    /// to remove.
    pub targets: Vec<String>,
    /// Every mitigation, in ranking order (measured ones first, by `rank`).
    pub mitigations: Vec<Mitigation>,
    /// The id of the recommended mitigation (post hoc), if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<String>,
    /// Why that one, or why none, in words.
    pub recommendation: String,
}

/// A judge-layer mitigation audited with new calls: `derived` (an index into the plan's judges)
/// is `base` with the mitigation `id` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// The unmitigated judge.
    pub base: usize,
    /// The derived judge that ran the mitigation.
    pub derived: usize,
    /// `bias-instruction`, `normalise` or `reference`.
    pub id: String,
}

/// One mitigation of one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    /// `swap-and-confirm`, `order-averaged-probabilities`, `majority-of-repeats`,
    /// `majority-of-templates` or `jury:<name>`.
    pub id: String,
    /// Name in words.
    pub label: String,
    /// True for a mitigation measured on the judge's own calls (see
    /// [`MitigationSection::post_hoc`]); false for a new-call mitigation ([`NewCall`]).
    pub post_hoc: bool,
    /// False when the run's records cannot measure it (the reason is in `note`).
    pub available: bool,
    /// Why it is unavailable, or a remark on what it could measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Calls per mitigated verdict over calls per single-order verdict ([`COST_RULE`]).
    pub cost_calls: f64,
    /// Tokens per mitigated verdict over the judge's tokens per call; absent when no tokens were
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_tokens: Option<f64>,
    /// Gold accuracy of the mitigated verdicts (baseline, ties count as wrong; Wilson).
    pub gold_accuracy: Estimate,
    /// Mitigated minus unmitigated gold accuracy (point estimates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_accuracy_change: Option<f64>,
    /// Per artifact, in plan order.
    pub artifacts: Vec<MitigatedArtifact>,
    /// Mean |T| of the mitigated judge over the artifacts it measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_bias: Option<f64>,
    /// Mean |T| of the unmitigated judge over the same artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmitigated_bias: Option<f64>,
    /// `(unmitigated_bias − residual_bias) / (cost_calls − 1)`: bias removed per extra call per
    /// verdict (the ranking key; absent for a mitigation that costs nothing extra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_removed_per_extra_call: Option<f64>,
    /// Position in the judge's ranking (1 = most bias removed per extra call), measured
    /// mitigations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// True when every target artifact's residual T interval covers 0 (false with no targets).
    pub removes_targets: bool,
    /// True when gold accuracy drops by at most [`GOLD_MARGIN`] (or the pairs have no gold).
    pub keeps_gold: bool,
}

/// One artifact under one mitigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MitigatedArtifact {
    /// Artifact id.
    pub artifact: String,
    /// Residual T (same definition and interval as the judge's T; `n` counts mitigated
    /// verdicts).
    pub t: Estimate,
    /// Residual WR.
    pub wr: Estimate,
    /// Residual flip rate (Wilson, as the judge's).
    pub flip_rate: Estimate,
    /// The unmitigated judge's T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmitigated_t: Option<f64>,
    /// The unmitigated judge's WR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmitigated_wr: Option<f64>,
    /// The unmitigated judge's flip rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmitigated_flip_rate: Option<f64>,
    /// Mitigated against unmitigated flips, pair by pair (absent for a jury).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_test: Option<PairedFlipTest>,
}

/// An exact paired test of the mitigated against the unmitigated judge's flips.
///
/// Per pair, `d = f₀ − f₁`: the share of the pair's flip comparisons (the artifact's
/// before/after comparisons, position: the baseline's two orders) that flipped without the
/// mitigation, minus the share with it. The test is the exact two-sided sign test of
/// H0: P(d > 0) = P(d < 0) on the pairs with d ≠ 0, p = 2·min(½, BinomCDF(min(b, c); b + c, ½)).
/// Why this test: the pair is the independent unit (the bootstrap resamples pairs for the same
/// reason; the up to four comparisons of one pair share its texts, so a McNemar test on
/// comparisons would count dependent observations as independent), the sign test is exact and
/// distribution-free at any number of pairs, and when every pair has one comparison it is
/// exactly McNemar's exact test on the discordant pairs (flipped only unmitigated vs only
/// mitigated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedFlipTest {
    /// Pairs with flip comparisons under both.
    pub pairs: u64,
    /// Pairs with fewer flips under the mitigation (d > 0).
    pub fewer: u64,
    /// Pairs with more flips under the mitigation (d < 0).
    pub more: u64,
    /// Mean of d over `pairs` (positive = the mitigation flips less).
    pub mean_reduction: Option<f64>,
    /// Raw two-sided p-value (not adjusted: a post-hoc comparison, not a finding).
    pub p_value: f64,
    /// The test, in words.
    pub test: String,
}

const SWAP: &str = "swap-and-confirm";
const AVERAGED: &str = "order-averaged-probabilities";
const MAJORITY: &str = "majority-of-repeats";
/// The id of the majority over a judge's templates (declarable: `majority_of_templates`).
pub const TEMPLATE_MAJORITY: &str = "majority-of-templates";
const TEST_NAME: &str = "exact sign test on per-pair flip shares (unmitigated − mitigated)";

/// How a group of cells is combined into one mitigated verdict.
#[derive(Clone, Copy)]
enum Rule {
    Swap,
    Averaged,
    Majority,
}

/// Slots of one mitigated decision and, per slot, whether the decision's first answer (its
/// "role 1") sits in the first slot.
type Group = Vec<(usize, bool)>;

/// The decision groups of a rule: every slot of the layout belongs to at most one group; a slot
/// in no group is not measured by the mitigation (left out of the rewritten matrix).
fn groups(l: &Layout, position: Option<usize>, rule: Rule) -> Vec<Group> {
    let r = l.repeats;
    let mut out = Vec::new();
    match rule {
        Rule::Swap | Rule::Averaged => {
            for repeat in 0..r {
                out.push(vec![
                    (l.baseline(Order::Ab, repeat), true),
                    (l.baseline(Order::Ba, repeat), false),
                ]);
            }
            for a in 0..l.artifacts.len() {
                for side in [Side::A, Side::B] {
                    if Some(a) == position {
                        // Identical texts, one order: the next repeat is the swapped call.
                        for j in 0..r / 2 {
                            out.push(vec![
                                (l.tie(a, side, Order::Ab, 2 * j), true),
                                (l.tie(a, side, Order::Ab, 2 * j + 1), false),
                            ]);
                        }
                    } else {
                        out.push(vec![
                            (l.tie(a, side, Order::Ab, 0), true),
                            (l.tie(a, side, Order::Ba, 0), false),
                        ]);
                        out.push(vec![
                            (l.shift(a, side, Order::Ab), true),
                            (l.shift(a, side, Order::Ba), false),
                        ]);
                    }
                }
            }
        }
        Rule::Majority => {
            for order in Order::BOTH {
                out.push((0..r).map(|k| (l.baseline(order, k), true)).collect());
            }
            if let Some(a) = position {
                for side in [Side::A, Side::B] {
                    out.push(
                        (0..r)
                            .map(|k| (l.tie(a, side, Order::Ab, k), true))
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

/// Role 1's score in a cell (+1 wins, 0 tie, −1 loses).
fn role_obs(code: u8, role_first: bool) -> Obs {
    obs(code, role_first)
}

/// The slot code that gives role 1 the score `v`.
fn code_for(v: i8, role_first: bool) -> u8 {
    match (v, role_first) {
        (0, _) => TIE,
        (1, true) | (-1, false) => FIRST,
        _ => SECOND,
    }
}

/// P(role 1 wins), P(role 2 wins), P(tie) from a cell's slot probabilities.
fn role_probs(p: [f64; 3], role_first: bool) -> [f64; 3] {
    if role_first { p } else { [p[1], p[0], p[2]] }
}

/// The same probabilities in slot terms.
fn slot_probs(p: [f64; 3], role_first: bool) -> [f32; 3] {
    let p = role_probs(p, role_first);
    [p[0] as f32, p[1] as f32, p[2] as f32]
}

/// One group's mitigated verdict: a code for role 1's score (or a non-verdict code), and for the
/// averaged rule the averaged probabilities in role terms.
fn decide(v: &Verdicts, l: &Layout, pair: usize, g: &Group, rule: Rule) -> (u8, Option<[f64; 3]>) {
    let codes: Vec<u8> = g.iter().map(|&(s, _)| v.code(l, pair, s)).collect();
    if codes.contains(&NOT_PLANNED) {
        return (NOT_PLANNED, None);
    }
    match rule {
        Rule::Swap => {
            let mut vals = Vec::with_capacity(2);
            for (&code, &(_, first)) in codes.iter().zip(g) {
                match role_obs(code, first) {
                    Obs::Val(x) => vals.push(x),
                    Obs::Invalid => return (INVALID, None),
                    _ => return (FAILED, None),
                }
            }
            let agreed = if vals[0] == vals[1] { vals[0] } else { 0 };
            (code_for(agreed, true), None)
        }
        Rule::Averaged => {
            let mut sum = [0.0; 3];
            for (&code, &(s, first)) in codes.iter().zip(g) {
                match v.probs(l, pair, s) {
                    Some(p) => {
                        let p = role_probs(p, first);
                        (0..3).for_each(|k| sum[k] += p[k] / g.len() as f64);
                    }
                    None if code == FAILED => return (FAILED, None),
                    None => return (INVALID, None),
                }
            }
            let [p1, p2, pt] = sum;
            let v = if p1 > p2 && p1 > pt {
                1
            } else if p2 > p1 && p2 > pt {
                -1
            } else {
                0
            };
            (code_for(v, true), Some(sum))
        }
        Rule::Majority => {
            // Every cell of a majority group has the same orientation: count slot codes.
            let mut votes = [0usize; 3];
            for &c in &codes {
                match c {
                    FIRST => votes[0] += 1,
                    SECOND => votes[1] += 1,
                    TIE => votes[2] += 1,
                    _ => {}
                }
            }
            let valid: usize = votes.iter().sum();
            if valid == 0 {
                return (
                    if codes.contains(&INVALID) {
                        INVALID
                    } else {
                        FAILED
                    },
                    None,
                );
            }
            let winner = (0..3).find(|&k| 2 * votes[k] > valid);
            let code = match winner {
                Some(0) => FIRST,
                Some(1) => SECOND,
                _ => TIE,
            };
            (code, None)
        }
    }
}

/// The verdict matrix of the mitigated judge: each group's decision written into its slots
/// (swap and averaging: into both orders, mirrored, so the decision is order-free; majority:
/// into the first repeat only, the other repeats are consumed by it). Slots in no group are
/// not planned.
fn mitigate(v: &Verdicts, l: &Layout, n: usize, groups: &[Group], rule: Rule) -> Verdicts {
    let mut codes = vec![NOT_PLANNED; v.codes.len()];
    let mut probs = matches!(rule, Rule::Averaged).then(|| vec![[f32::NAN; 3]; v.codes.len()]);
    for pair in 0..n {
        for g in groups {
            let (code, p) = decide(v, l, pair, g, rule);
            let targets: &[(usize, bool)] = match rule {
                Rule::Majority => &g[..1],
                _ => g,
            };
            for &(s, first) in targets {
                let cell = pair * l.slots + s;
                // Decisions are in role terms with role 1 first; mirror them into each slot.
                codes[cell] = match code {
                    FIRST => code_for(1, first),
                    SECOND => code_for(-1, first),
                    other => other,
                };
                if let (Some(all), Some(p)) = (probs.as_mut(), p) {
                    all[cell] = slot_probs(p, first);
                }
            }
        }
    }
    Verdicts {
        codes,
        probs,
        counts: v.counts.clone(),
    }
}

/// Per pair, the share of the artifact's flip comparisons that flipped (the judge's flip-rate
/// comparisons: shift against the first baseline repeat in the same order, excluded answers
/// left out; position: the baseline's two orders); `None` for a pair with none.
fn pair_flip_shares(ctx: &Ctx<'_>, v: &Verdicts, a: usize) -> Vec<Option<f64>> {
    let l = ctx.layout;
    (0..ctx.pairs.len())
        .map(|i| {
            let mut comparisons: Vec<(Obs, Obs)> = Vec::new();
            if ctx.position == Some(a) {
                comparisons.push((
                    obs(v.code(l, i, l.baseline(Order::Ba, 0)), false),
                    obs(v.code(l, i, l.baseline(Order::Ab, 0)), true),
                ));
            } else {
                for side in [Side::A, Side::B] {
                    let k = (a * ctx.pairs.len() + i) * 2 + usize::from(side == Side::B);
                    if ctx.excluded.get(k).copied().unwrap_or(false) {
                        continue;
                    }
                    for order in Order::BOTH {
                        let first = (order == Order::Ab) == (side == Side::A);
                        comparisons.push((
                            obs(v.code(l, i, l.baseline(order, 0)), first),
                            obs(v.code(l, i, l.shift(a, side, order)), first),
                        ));
                    }
                }
            }
            let (mut flipped, mut total) = (0u32, 0u32);
            for (before, after) in comparisons {
                if let (Some(x), Some(y)) = (before.val(), after.val()) {
                    total += 1;
                    flipped += u32::from(x != y);
                }
            }
            (total > 0).then(|| f64::from(flipped) / f64::from(total))
        })
        .collect()
}

/// The paired sign test of `before` (unmitigated) against `after` (mitigated) flip shares.
pub fn paired_flip_test(before: &[Option<f64>], after: &[Option<f64>]) -> PairedFlipTest {
    let diffs: Vec<f64> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some((*b)? - (*a)?))
        .collect();
    let fewer = diffs.iter().filter(|d| **d > 0.0).count() as u64;
    let more = diffs.iter().filter(|d| **d < 0.0).count() as u64;
    PairedFlipTest {
        pairs: diffs.len() as u64,
        fewer,
        more,
        mean_reduction: (!diffs.is_empty()).then(|| diffs.iter().sum::<f64>() / diffs.len() as f64),
        p_value: stats::sign_test(fewer, more),
        test: TEST_NAME.into(),
    }
}

/// `e` with its observation count divided by `by` (an order-free decision written into both
/// orders counts once). The point estimate and the pair-bootstrap interval are unchanged by the
/// duplication; a Wilson rate is recomputed on the halved counts.
fn per_decision(e: &Estimate, by: u64, rate: bool, confidence: f64) -> Estimate {
    if by <= 1 || e.n == 0 {
        return e.clone();
    }
    if rate {
        let n = e.n / by;
        let k = e.estimate.map_or(0, |p| (p * e.n as f64).round() as u64) / by;
        return rate_estimate(k, n, confidence);
    }
    let mut out = e.clone();
    out.n /= by;
    out
}

/// Mean tokens per completed call of a judge, when it recorded any.
fn tokens_per_call(j: &JudgeResult) -> Option<f64> {
    let t = j.calls.input_tokens + j.calls.output_tokens;
    (j.calls.completed > 0 && t > 0).then(|| t as f64 / j.calls.completed as f64)
}

fn mean_abs(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().map(|v| v.abs()).sum::<f64>() / values.len() as f64)
}

/// Fill the bias summary of a mitigation from its artifacts and `base` (the unmitigated judge).
fn summarize(m: &mut Mitigation, base: &JudgeResult, targets: &[String]) {
    let measured: Vec<&MitigatedArtifact> = m
        .artifacts
        .iter()
        .filter(|a| a.t.estimate.is_some() && a.unmitigated_t.is_some())
        .collect();
    m.residual_bias = mean_abs(
        &measured
            .iter()
            .filter_map(|a| a.t.estimate)
            .collect::<Vec<_>>(),
    );
    m.unmitigated_bias = mean_abs(
        &measured
            .iter()
            .filter_map(|a| a.unmitigated_t)
            .collect::<Vec<_>>(),
    );
    if let (Some(r), Some(u)) = (m.residual_bias, m.unmitigated_bias)
        && m.cost_calls > 1.0
    {
        m.bias_removed_per_extra_call = Some((u - r) / (m.cost_calls - 1.0));
    }
    m.gold_accuracy_change = m
        .gold_accuracy
        .estimate
        .zip(base.baseline.gold_accuracy.estimate)
        .map(|(x, y)| x - y);
    // A small tolerance: a change of exactly the margin passes despite rounding.
    m.keeps_gold = m
        .gold_accuracy_change
        .is_none_or(|d| d >= -GOLD_MARGIN - 1e-12);
    m.removes_targets = m.available
        && !targets.is_empty()
        && targets.iter().all(|t| {
            m.artifacts
                .iter()
                .find(|a| &a.artifact == t)
                .is_some_and(|a| a.t.estimate.is_some() && a.t.covers(0.0))
        });
}

/// One of the judge's own mitigations, measured.
fn own(
    ctx: &Ctx<'_>,
    v: &Verdicts,
    base: &JudgeResult,
    rule: Rule,
    family_size: u64,
) -> Mitigation {
    own_against(ctx, v, v, base, rule, family_size)
}

/// `rule` applied to the verdicts `v`, compared with the unmitigated judge `base` whose verdicts
/// are `unmitigated` (the same matrix for a judge's own mitigation; the base judge's for a stack
/// on a new-call mitigation's derived judge).
fn own_against(
    ctx: &Ctx<'_>,
    v: &Verdicts,
    unmitigated: &Verdicts,
    base: &JudgeResult,
    rule: Rule,
    family_size: u64,
) -> Mitigation {
    let l = ctx.layout;
    let conf = ctx.options.confidence;
    let (id, label, calls, dup) = match rule {
        Rule::Swap => (
            SWAP,
            "swap-and-confirm (both orders must agree, else tie)",
            2.0,
            2,
        ),
        Rule::Averaged => (
            AVERAGED,
            "order-averaged label probabilities (P(win) averaged over both orders)",
            2.0,
            2,
        ),
        Rule::Majority => (
            MAJORITY,
            "majority over the baseline's repeats (no strict majority: tie)",
            l.repeats as f64,
            1,
        ),
    };
    let mut m = Mitigation {
        id: id.into(),
        label: label.into(),
        post_hoc: true,
        available: true,
        note: None,
        cost_calls: calls,
        cost_tokens: tokens_per_call(base).map(|_| calls),
        gold_accuracy: Estimate::empty("wilson"),
        gold_accuracy_change: None,
        artifacts: Vec::new(),
        residual_bias: None,
        unmitigated_bias: None,
        bias_removed_per_extra_call: None,
        rank: None,
        removes_targets: false,
        keeps_gold: false,
    };
    let unavailable = match rule {
        Rule::Averaged if v.probs.is_none() => {
            Some("the judge's records carry no label probabilities".to_string())
        }
        Rule::Majority if l.repeats < 2 => {
            Some("the design has one repeat (`design.repeats` ≥ 2 measures it)".to_string())
        }
        _ => None,
    };
    if let Some(note) = unavailable {
        m.available = false;
        m.note = Some(note);
        return m;
    }
    match rule {
        Rule::Majority => {
            m.note = Some(format!(
                "measured where the design repeats a call ({} times): the baseline and the \
                 position artifact; the text artifacts' calls are made once, so their residual \
                 effects are not measured",
                l.repeats
            ));
        }
        Rule::Swap if l.repeats < 2 && ctx.position.is_some() => {
            m.note = Some(
                "T(position) needs two repeats of the identical request; the baseline's two \
                 orders still measure position"
                    .into(),
            );
        }
        _ => {}
    }
    let mitigated = mitigate(v, l, ctx.pairs.len(), &groups(l, ctx.position, rule), rule);
    let result = ctx.analyze(
        Subject {
            // The judge's own name: the same bootstrap seed, so the same resampled pairs.
            name: base.name.clone(),
            kind: JudgeKind::Judge,
            members: Vec::new(),
            rule: None,
            simulated: base.simulated,
            verdicts: &mitigated,
            faults: BTreeMap::new(),
            stopped: None,
            planted: None,
        },
        family_size,
    );
    m.gold_accuracy = per_decision(&result.baseline.gold_accuracy, dup, true, conf);
    m.artifacts = result
        .artifacts
        .iter()
        .enumerate()
        .map(|(a, r)| {
            let u = base.artifacts.iter().find(|x| x.artifact == r.artifact);
            let is_position = ctx.position == Some(a);
            let flip_dup = if is_position { 1 } else { dup };
            let measured_flips = r.flip_rate.rate.n > 0;
            let flip_test = measured_flips.then(|| {
                paired_flip_test(
                    &pair_flip_shares(ctx, unmitigated, a),
                    &pair_flip_shares(ctx, &mitigated, a),
                )
            });
            artifact_entry(
                r,
                u,
                per_decision(&r.tie_detection.score, dup, false, conf),
                per_decision(&r.winrate_shift.shift, dup, false, conf),
                per_decision(&r.flip_rate.rate, flip_dup, true, conf),
                flip_test,
            )
        })
        .collect();
    m
}

fn artifact_entry(
    r: &ArtifactResult,
    u: Option<&ArtifactResult>,
    t: Estimate,
    wr: Estimate,
    flip_rate: Estimate,
    flip_test: Option<PairedFlipTest>,
) -> MitigatedArtifact {
    MitigatedArtifact {
        artifact: r.artifact.clone(),
        t,
        wr,
        flip_rate,
        unmitigated_t: u.and_then(|u| u.tie_detection.score.estimate),
        unmitigated_wr: u.and_then(|u| u.winrate_shift.shift.estimate),
        unmitigated_flip_rate: u.and_then(|u| u.flip_rate.rate.estimate),
        flip_test,
    }
}

/// A new-call mitigation: the derived judge's own estimates against the unmitigated judge's,
/// with the paired flip test on the same pairs.
fn new_call_entry(
    ctx: &Ctx<'_>,
    base_v: &Verdicts,
    derived_v: &Verdicts,
    base: &JudgeResult,
    derived: &JudgeResult,
    id: &str,
) -> Mitigation {
    let label = match id {
        "bias-instruction" => "an instruction against the biases in the system prompt (new calls)",
        "normalise" => {
            "answers normalised before judging: artifact phrases and formatting stripped (new calls)"
        }
        "reference" => {
            "reference-guided judging: the pair's reference answer shown, each answer judged against it (new calls)"
        }
        other => other,
    };
    let cost_tokens = tokens_per_call(base)
        .zip(tokens_per_call(derived))
        .map(|(b, d)| d / b);
    Mitigation {
        id: id.to_string(),
        label: label.to_string(),
        post_hoc: false,
        available: true,
        note: Some(format!(
            "audited with new calls as the derived judge `{}` on the full design",
            derived.name
        )),
        cost_calls: 1.0,
        cost_tokens,
        gold_accuracy: derived.baseline.gold_accuracy.clone(),
        gold_accuracy_change: None,
        artifacts: derived
            .artifacts
            .iter()
            .enumerate()
            .map(|(a, r)| {
                let u = base.artifacts.iter().find(|x| x.artifact == r.artifact);
                let flip_test = (r.flip_rate.rate.n > 0).then(|| {
                    paired_flip_test(
                        &pair_flip_shares(ctx, base_v, a),
                        &pair_flip_shares(ctx, derived_v, a),
                    )
                });
                artifact_entry(
                    r,
                    u,
                    r.tie_detection.score.clone(),
                    r.winrate_shift.shift.clone(),
                    r.flip_rate.rate.clone(),
                    flip_test,
                )
            })
            .collect(),
        residual_bias: None,
        unmitigated_bias: None,
        bias_removed_per_extra_call: None,
        rank: None,
        removes_targets: false,
        keeps_gold: false,
    }
}

/// The code of one call under the majority over templates: the strict majority of the
/// templates' valid verdicts (slot codes: every template saw the same order), a tie without
/// one, unparseable when no template answered validly (failed when every call failed), not
/// planned when a template did not make the call.
fn template_majority_code(codes: &[u8]) -> u8 {
    if codes.contains(&NOT_PLANNED) {
        return NOT_PLANNED;
    }
    let mut votes = [0usize; 3];
    for &c in codes {
        match c {
            FIRST => votes[0] += 1,
            SECOND => votes[1] += 1,
            TIE => votes[2] += 1,
            _ => {}
        }
    }
    let valid: usize = votes.iter().sum();
    if valid == 0 {
        return if codes.contains(&INVALID) {
            INVALID
        } else {
            FAILED
        };
    }
    match (0..3).find(|&k| 2 * votes[k] > valid) {
        Some(0) => FIRST,
        Some(1) => SECOND,
        _ => TIE,
    }
}

/// The verdict matrix of the majority over `members` (the templates' verdict matrices, the
/// primary first), cell by cell.
fn template_majority(members: &[&Verdicts]) -> Verdicts {
    let cells = members.first().map_or(0, |v| v.codes.len());
    let codes = (0..cells)
        .map(|c| {
            let column: Vec<u8> = members.iter().map(|v| v.codes[c]).collect();
            template_majority_code(&column)
        })
        .collect();
    Verdicts {
        codes,
        probs: None,
        counts: members
            .first()
            .map(|v| v.counts.clone())
            .unwrap_or_default(),
    }
}

/// The majority over the judge's templates (`group`: the primary first), measured like the
/// judge's own mitigations: the same analysis with the judge's bootstrap seed, residual effects
/// against the unmitigated judge, the paired flip test on the same pairs.
fn template_majority_entry(
    ctx: &Ctx<'_>,
    verdicts: &[Verdicts],
    judges: &[JudgeResult],
    group: &super::templates::TemplateGroup,
    family_size: u64,
) -> Mitigation {
    let base_index = group.members[0].0;
    let base = &judges[base_index];
    let members: Vec<&Verdicts> = group.members.iter().map(|&(j, _)| &verdicts[j]).collect();
    let m_count = group.members.len();
    let cost_tokens = tokens_per_call(base).and_then(|own| {
        let sum: Option<f64> = group
            .members
            .iter()
            .map(|&(j, _)| tokens_per_call(&judges[j]))
            .sum();
        sum.map(|s| s / own)
    });
    let mitigated = template_majority(&members);
    let result = ctx.analyze(
        Subject {
            // The judge's own name: the same bootstrap seed, so the same resampled pairs.
            name: base.name.clone(),
            kind: JudgeKind::Judge,
            members: Vec::new(),
            rule: None,
            simulated: base.simulated,
            verdicts: &mitigated,
            faults: BTreeMap::new(),
            stopped: None,
            planted: None,
        },
        family_size,
    );
    let templates: Vec<&str> = group.members.iter().map(|(_, t)| t.as_str()).collect();
    let measured_artifacts = result.artifacts.iter().any(|r| r.tie_detection.score.n > 0);
    let unmitigated = &verdicts[base_index];
    Mitigation {
        id: TEMPLATE_MAJORITY.into(),
        label: format!(
            "majority over the judge's {m_count} templates ({}; no strict majority: tie)",
            templates.join(", ")
        ),
        post_hoc: true,
        available: true,
        note: (!measured_artifacts).then(|| {
            "the template variants made the baseline calls only (design.templates = \
             \"baseline\"): gold accuracy is measured, the artifacts' residual effects need \
             design.templates = \"all\""
                .to_string()
        }),
        cost_calls: m_count as f64,
        cost_tokens,
        gold_accuracy: result.baseline.gold_accuracy.clone(),
        gold_accuracy_change: None,
        artifacts: result
            .artifacts
            .iter()
            .enumerate()
            .map(|(a, r)| {
                let u = base.artifacts.iter().find(|x| x.artifact == r.artifact);
                let flip_test = (r.flip_rate.rate.n > 0).then(|| {
                    paired_flip_test(
                        &pair_flip_shares(ctx, unmitigated, a),
                        &pair_flip_shares(ctx, &mitigated, a),
                    )
                });
                artifact_entry(
                    r,
                    u,
                    r.tie_detection.score.clone(),
                    r.winrate_shift.shift.clone(),
                    r.flip_rate.rate.clone(),
                    flip_test,
                )
            })
            .collect(),
        residual_bias: None,
        unmitigated_bias: None,
        bias_removed_per_extra_call: None,
        rank: None,
        removes_targets: false,
        keeps_gold: false,
    }
}

/// A jury the judge sits on, referenced with the jury's own estimates.
fn jury_entry(jury: &JudgeResult, base: &JudgeResult, judges: &[JudgeResult]) -> Mitigation {
    let members: Vec<&JudgeResult> = jury
        .members
        .iter()
        .filter_map(|m| judges.iter().find(|j| &j.name == m))
        .collect();
    let cost_tokens = tokens_per_call(base).and_then(|own| {
        let sum: Option<f64> = members.iter().map(|j| tokens_per_call(j)).sum();
        sum.map(|s| s / own)
    });
    Mitigation {
        id: format!("jury:{}", jury.name),
        label: format!(
            "jury {} ({}; {} jurors)",
            jury.name,
            jury.rule.as_deref().unwrap_or("majority"),
            jury.members.len()
        ),
        post_hoc: true,
        available: true,
        note: Some(
            "the jury's own estimates, referenced from its section (not recomputed; no paired \
             flip test)"
                .into(),
        ),
        cost_calls: jury.members.len() as f64,
        cost_tokens,
        gold_accuracy: jury.baseline.gold_accuracy.clone(),
        gold_accuracy_change: None,
        artifacts: jury
            .artifacts
            .iter()
            .map(|r| {
                let u = base.artifacts.iter().find(|x| x.artifact == r.artifact);
                artifact_entry(
                    r,
                    u,
                    r.tie_detection.score.clone(),
                    r.winrate_shift.shift.clone(),
                    r.flip_rate.rate.clone(),
                    None,
                )
            })
            .collect(),
        residual_bias: None,
        unmitigated_bias: None,
        bias_removed_per_extra_call: None,
        rank: None,
        removes_targets: false,
        keeps_gold: false,
    }
}

/// Rank the measured mitigations (most bias removed per extra call first; then lower residual
/// bias, then cheaper, then id) and pick the recommendation: the cheapest mitigation that removes
/// every target, none when the judge has no target.
fn rank_and_recommend(j: &mut JudgeMitigations) {
    let key = |m: &Mitigation| {
        (
            m.bias_removed_per_extra_call.unwrap_or(f64::NEG_INFINITY),
            m.residual_bias.unwrap_or(f64::INFINITY),
        )
    };
    j.mitigations.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        b.available
            .cmp(&a.available)
            .then(kb.0.total_cmp(&ka.0))
            .then(ka.1.total_cmp(&kb.1))
            .then(a.cost_calls.total_cmp(&b.cost_calls))
            .then(a.id.cmp(&b.id))
    });
    let mut rank = 0;
    for m in j.mitigations.iter_mut() {
        if m.available && m.residual_bias.is_some() {
            rank += 1;
            m.rank = Some(rank);
        }
    }
    if j.targets.is_empty() {
        j.recommendation = "none: no artifact effect is significant (Holm) for this judge, so \
                            there is nothing to mitigate"
            .into();
        return;
    }
    let best = j
        .mitigations
        .iter()
        .filter(|m| m.removes_targets && m.keeps_gold)
        .min_by(|a, b| {
            a.cost_calls
                .total_cmp(&b.cost_calls)
                .then(
                    a.residual_bias
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.residual_bias.unwrap_or(f64::INFINITY)),
                )
                .then(a.id.cmp(&b.id))
        });
    match best {
        Some(m) => {
            j.recommended = Some(m.id.clone());
            j.recommendation = format!(
                "{} (post hoc, {}× calls): the residual T interval of every significant artifact \
                 ({}) covers 0 and gold accuracy drops by at most {:.0} points; confirm on \
                 held-out pairs",
                m.id,
                m.cost_calls,
                j.targets.join(", "),
                100.0 * GOLD_MARGIN
            );
        }
        None => {
            let costly: Vec<String> = j
                .mitigations
                .iter()
                .filter(|m| m.removes_targets)
                .map(|m| {
                    format!(
                        "{} removes it but changes gold accuracy by {:+.1} points",
                        m.id,
                        100.0 * m.gold_accuracy_change.unwrap_or(0.0)
                    )
                })
                .collect();
            j.recommendation = format!(
                "none: no measured mitigation brings every significant artifact ({}) to a \
                 residual T interval that covers 0 without losing more than {:.0} points of gold \
                 accuracy (ties count as wrong){}",
                j.targets.join(", "),
                100.0 * GOLD_MARGIN,
                if costly.is_empty() {
                    String::new()
                } else {
                    format!("; {}", costly.join("; "))
                }
            );
        }
    }
}

/// The mitigations of every judge: `judges` are the finished results (after multiplicity), in
/// the order of `verdicts`; `juries` are referenced; `templates` are the judges with template
/// variants (for the majority over templates).
pub(crate) fn analyze(
    ctx: &Ctx<'_>,
    verdicts: &[Verdicts],
    judges: &[JudgeResult],
    juries: &[JudgeResult],
    family_size: u64,
    new_call: &[NewCall],
    templates: &[super::templates::TemplateGroup],
) -> MitigationSection {
    let per_judge: Vec<JudgeMitigations> = judges
        .par_iter()
        .zip(verdicts)
        .enumerate()
        // A derived mitigated judge is an entry of its base judge, not a judge to mitigate.
        .filter(|(j, _)| !new_call.iter().any(|n| n.derived == *j))
        .map(|(j, (base, v))| {
            let targets: Vec<String> = base
                .artifacts
                .iter()
                .filter(|a| a.significant)
                .map(|a| a.artifact.clone())
                .collect();
            let mut mitigations: Vec<Mitigation> = [Rule::Swap, Rule::Averaged, Rule::Majority]
                .into_iter()
                .map(|rule| own(ctx, v, base, rule, family_size))
                .chain(
                    templates
                        .iter()
                        .filter(|g| g.members.len() >= 2 && g.members[0].0 == j)
                        .map(|g| template_majority_entry(ctx, verdicts, judges, g, family_size)),
                )
                .chain(
                    juries
                        .iter()
                        .filter(|j| j.members.contains(&base.name))
                        .map(|jury| jury_entry(jury, base, judges)),
                )
                .chain(new_call.iter().filter(|n| n.base == j).flat_map(|n| {
                    let derived = &judges[n.derived];
                    let entry = new_call_entry(ctx, v, &verdicts[n.derived], base, derived, &n.id);
                    // The stack: swap-and-confirm on the mitigated judge's own calls.
                    let mut stack =
                        own_against(ctx, &verdicts[n.derived], v, base, Rule::Swap, family_size);
                    stack.id = format!("{}+{SWAP}", n.id);
                    stack.label = format!("{} and swap-and-confirm on its calls", entry.label);
                    stack.cost_tokens = entry.cost_tokens.map(|t| 2.0 * t);
                    stack.note = Some(format!(
                        "a stack: swap-and-confirm (post hoc) on the calls of `{}`",
                        derived.name
                    ));
                    [entry, stack]
                }))
                .collect();
            for m in &mut mitigations {
                summarize(m, base, &targets);
            }
            let mut j = JudgeMitigations {
                judge: base.name.clone(),
                simulated: base.simulated,
                targets,
                mitigations,
                recommended: None,
                recommendation: String::new(),
            };
            rank_and_recommend(&mut j);
            j
        })
        .collect();
    MitigationSection {
        post_hoc: true,
        note: POST_HOC_NOTE.into(),
        cost_rule: COST_RULE.into(),
        gold_margin: GOLD_MARGIN,
        judges: per_judge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_flip_test_counts_pairs_not_comparisons() {
        // Four pairs: two flip less with the mitigation (1 → 0, 0.5 → 0), one more (0 → 0.25),
        // one the same; a pair missing on one side is left out.
        let before = [Some(1.0), Some(0.5), Some(0.0), Some(0.5), None];
        let after = [Some(0.0), Some(0.0), Some(0.25), Some(0.5), Some(1.0)];
        let t = paired_flip_test(&before, &after);
        assert_eq!((t.pairs, t.fewer, t.more), (4, 2, 1));
        // scipy.stats.binomtest(1, 3, 0.5).pvalue == 1.0
        assert_eq!(t.p_value, 1.0);
        assert!((t.mean_reduction.unwrap() - (1.0 + 0.5 - 0.25) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn template_majority_is_strict_and_never_coerces() {
        // Two of three agree: that verdict; one each: tie; two of two valid disagree: tie.
        assert_eq!(template_majority_code(&[FIRST, FIRST, SECOND]), FIRST);
        assert_eq!(template_majority_code(&[FIRST, SECOND, TIE]), TIE);
        assert_eq!(template_majority_code(&[FIRST, SECOND, INVALID]), TIE);
        // Majority of the valid verdicts: one valid verdict decides.
        assert_eq!(template_majority_code(&[INVALID, SECOND, FAILED]), SECOND);
        assert_eq!(template_majority_code(&[TIE, TIE, FIRST]), TIE);
        // No valid verdict: unparseable (failed only when every call failed).
        assert_eq!(template_majority_code(&[INVALID, FAILED, FAILED]), INVALID);
        assert_eq!(template_majority_code(&[FAILED, FAILED]), FAILED);
        // A template that did not make the call (baseline-only variants): not planned.
        assert_eq!(template_majority_code(&[FIRST, NOT_PLANNED]), NOT_PLANNED);
    }

    #[test]
    fn swap_rule_keeps_agreement_and_ties_disagreement() {
        assert_eq!(code_for(1, true), FIRST);
        assert_eq!(code_for(1, false), SECOND);
        assert_eq!(code_for(-1, false), FIRST);
        assert_eq!(code_for(0, false), TIE);
        assert_eq!(role_probs([0.7, 0.2, 0.1], false), [0.2, 0.7, 0.1]);
    }
}
