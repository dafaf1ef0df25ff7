//! Judge-prompt sensitivity: how much a judge's verdicts depend on the wording of its template.
//!
//! A judge file may list template variants (`templates = [...]`); the audit runs each as a
//! derived judge `<judge>@<variant>` on the same pairs. The baseline calls of every template are
//! identical inputs (same prompt, same answers, same order, same repeat index), so each baseline
//! cell (pair × order × repeat) is one *item* rated by every template:
//!
//! - **Fleiss' κ** over the items every template rated validly (categories: answer A wins,
//!   answer B wins, tie; in answer terms, so the two orders of a pair are comparable), and
//!   **Krippendorff's α** (nominal) over every item with at least two valid ratings (α's own
//!   treatment of missing values). An invalid or failed verdict is never coerced into a
//!   category: it is counted per template and left out.
//! - **Flip rate of each template pair**: the share of items both rated validly on which they
//!   disagree, with a pair-clustered interval (every item of one pair is resampled with it:
//!   the effective-n Clopper–Pearson interval of [`stats::effective_clopper_pearson`] on the
//!   linearised cluster variance of the ratio `Σ flips / Σ comparisons`). The *worst* pair is
//!   the one with the highest rate.
//! - **Noise floor**: the primary template's flip rate between repeats of the identical call
//!   (repeat 0 against each later repeat), the same way: what re-asking alone changes.
//! - **Template share of verdict variance**: `1 − ICC(1)` of the verdict scores (+1 A wins,
//!   0 tie, −1 B wins) over the complete items, i.e. the random-effects share of the verdict
//!   variance that lies *within* an item (across templates on identical inputs) rather than
//!   between items.
//! - **Spread** of gold accuracy and of every artifact's T across the templates that measured
//!   it (max − min), and whether the trust verdict changes with the template (only when every
//!   template measured the same artifacts, `design.templates = "all"`).
//!
//! The judge "depends on the template" when the worst pair's flip-rate interval lies above the
//! noise floor's point estimate (0 without repeats), or when the trust verdict changes.

use super::index::{Layout, Obs, Verdicts, obs};
use super::{Estimate, JudgeResult};
use crate::design::Order;
use crate::stats;
use serde::{Deserialize, Serialize};

/// How the section is computed, in words (shown with it).
pub const METHOD_NOTE: &str = "Items are the baseline calls (pair × order × repeat), identical \
inputs for every template. Fleiss' κ over the items every template rated validly, \
Krippendorff's α (nominal) over the items with at least two valid ratings; categories: answer A \
wins, answer B wins, tie. Invalid and failed verdicts are counted, never coerced. Template-pair \
flip rates with pair-clustered effective-n Clopper–Pearson intervals; the noise floor is the \
primary template's flip rate between repeats of the identical call. Template share of verdict \
variance = 1 − ICC(1) of the verdict scores (+1, 0, −1) over the complete items.";

/// The template-sensitivity section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateSection {
    /// `baseline` (variants make the baseline calls only) or `all` (the full design).
    pub design: String,
    /// How it is computed ([`METHOD_NOTE`]).
    pub note: String,
    /// One entry per judge with template variants, in plan order.
    pub judges: Vec<JudgeTemplates>,
}

/// The template sensitivity of one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeTemplates {
    /// The judge (its primary template's name in the audit).
    pub judge: String,
    /// True for a simulated judge.
    pub simulated: bool,
    /// Primary template first, then the variants in `templates` order.
    pub templates: Vec<TemplateEntry>,
    /// Agreement across all templates on the identical baseline inputs.
    pub agreement: TemplateAgreement,
    /// The primary template's flip rate between repeats of the identical call (absent with one
    /// repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_floor: Option<Estimate>,
    /// Max − min of the templates' gold accuracy (absent without gold or with one estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_accuracy_range: Option<f64>,
    /// Per artifact, T per template and its range (only artifacts two or more templates
    /// measured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactSpread>,
    /// Whether the trust verdict differs between templates (absent when the variants did not
    /// measure the same artifacts as the primary, `design.templates = "baseline"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_changes: Option<bool>,
    /// True when the verdict depends on the template (see the module rule).
    pub depends_on_template: bool,
    /// The finding, in words, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

/// One template of a judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateEntry {
    /// Template name.
    pub template: String,
    /// The (derived) judge that ran it.
    pub judge: String,
    /// True for the judge's own `template`.
    pub primary: bool,
    /// Baseline calls with a valid verdict.
    pub valid: u64,
    /// Baseline calls with an unparseable verdict.
    pub invalid: u64,
    /// Baseline calls that failed or are missing.
    pub failed: u64,
    /// Gold accuracy of this template's baseline verdicts (the judge's own estimate).
    pub gold_accuracy: Estimate,
    /// Its trust verdict (`ADOPT`, `CAUTION`, `REJECT`, `COULD_NOT_AUDIT`).
    pub trust: String,
    /// Artifacts it measured.
    pub artifacts_measured: usize,
}

/// Agreement across templates on identical inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateAgreement {
    /// Items (baseline cells planned for every template).
    pub items: u64,
    /// Items every template rated validly (Fleiss' κ and the variance share use these).
    pub complete_items: u64,
    /// Fleiss' κ (absent with fewer than two templates, no complete item, or one category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleiss_kappa: Option<f64>,
    /// Krippendorff's α, nominal (absent when undefined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krippendorff_alpha: Option<f64>,
    /// `1 − ICC(1)` of the verdict scores over the complete items (absent when undefined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variance_share: Option<f64>,
    /// Every template pair, in template order.
    pub pairs: Vec<TemplatePairFlip>,
    /// Index into `pairs` of the worst pair (highest flip rate; the first on ties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_pair: Option<usize>,
}

/// Disagreement of two templates on identical inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplatePairFlip {
    /// First template.
    pub a: String,
    /// Second template.
    pub b: String,
    /// Items both rated validly on which they disagree.
    pub flips: u64,
    /// Items both rated validly.
    pub comparisons: u64,
    /// Pairs (clusters) with at least one comparison.
    pub pairs: u64,
    /// `flips / comparisons` with its pair-clustered interval (`n` = comparisons).
    pub rate: Estimate,
}

/// T of one artifact per template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactSpread {
    /// Artifact id.
    pub artifact: String,
    /// T per template, in template order (absent where not measured).
    pub t: Vec<Option<f64>>,
    /// Max − min over the measured values.
    pub range: f64,
}

/// One template's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    /// Not part of this template's plan.
    NotPlanned,
    /// Planned; the call failed or is missing.
    Failed,
    /// Unparseable.
    Invalid,
    /// Answer A won.
    A,
    /// Answer B won.
    B,
    /// A tie.
    Tie,
}

impl Rating {
    fn category(self) -> Option<usize> {
        match self {
            Rating::A => Some(0),
            Rating::B => Some(1),
            Rating::Tie => Some(2),
            _ => None,
        }
    }

    fn score(self) -> Option<f64> {
        match self {
            Rating::A => Some(1.0),
            Rating::B => Some(-1.0),
            Rating::Tie => Some(0.0),
            _ => None,
        }
    }

    fn of(o: Obs) -> Rating {
        match o {
            Obs::NotPlanned => Rating::NotPlanned,
            Obs::Failed => Rating::Failed,
            Obs::Invalid => Rating::Invalid,
            Obs::Val(1) => Rating::A,
            Obs::Val(-1) => Rating::B,
            Obs::Val(_) => Rating::Tie,
        }
    }
}

/// One item: its pair (the resampling cluster) and every template's rating, in template order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Pair index.
    pub pair: usize,
    /// Ratings, one per template.
    pub ratings: Vec<Rating>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `Σ flips / Σ comparisons` over clusters, with the pair-clustered effective-n Clopper–Pearson
/// interval: the variance of the ratio is the linearised cluster variance
/// `k/(k−1) · Σ_i (f_i − p̂·c_i)² / (Σ c)²` over the k clusters with comparisons.
pub fn clustered_rate(per_pair: &[(u64, u64)], confidence: f64) -> Estimate {
    const METHOD: &str = "pair-clustered effective-n Clopper-Pearson";
    let used: Vec<(f64, f64)> = per_pair
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|&(f, c)| (f as f64, c as f64))
        .collect();
    let total: f64 = used.iter().map(|x| x.1).sum();
    let mut e = Estimate::empty(METHOD);
    if used.is_empty() {
        return e;
    }
    let flips: f64 = used.iter().map(|x| x.0).sum();
    let p = flips / total;
    let k = used.len() as f64;
    let variance = if used.len() >= 2 {
        k / (k - 1.0) * used.iter().map(|(f, c)| (f - p * c).powi(2)).sum::<f64>() / total.powi(2)
    } else {
        0.0
    };
    e.estimate = Some(p);
    e.n = total as u64;
    if let Some(i) =
        stats::effective_clopper_pearson(p, variance, used.len() as u64, total, confidence)
    {
        e.ci_low = Some(i.interval.low);
        e.ci_high = Some(i.interval.high);
    }
    e
}

/// Agreement of the templates named in `names` over `items` (each item rated by every
/// template, in the order of `names`). Pure; the reference values are in
/// `tests/template_sensitivity.rs`.
pub fn agreement(
    items: &[Item],
    names: &[String],
    pairs: usize,
    confidence: f64,
) -> TemplateAgreement {
    let m = names.len();
    let planned: Vec<&Item> = items
        .iter()
        .filter(|i| i.ratings.iter().all(|r| *r != Rating::NotPlanned))
        .collect();
    let complete: Vec<&Item> = planned
        .iter()
        .copied()
        .filter(|i| i.ratings.iter().all(|r| r.category().is_some()))
        .collect();
    let mut out = TemplateAgreement {
        items: planned.len() as u64,
        complete_items: complete.len() as u64,
        ..TemplateAgreement::default()
    };
    if m < 2 {
        return out;
    }
    let counts: Vec<[u64; 3]> = complete
        .iter()
        .map(|i| {
            let mut c = [0u64; 3];
            for r in &i.ratings {
                if let Some(k) = r.category() {
                    c[k] += 1;
                }
            }
            c
        })
        .collect();
    out.fleiss_kappa = stats::fleiss_kappa(&counts).ok().and_then(finite);
    let units: Vec<Vec<Option<usize>>> = planned
        .iter()
        .map(|i| i.ratings.iter().map(|r| r.category()).collect())
        .collect();
    out.krippendorff_alpha = finite(stats::krippendorff_alpha_nominal(&units));
    let scores: Vec<Vec<f64>> = complete
        .iter()
        .map(|i| i.ratings.iter().filter_map(|r| r.score()).collect())
        .collect();
    out.template_variance_share =
        finite(stats::icc1(&scores)).map(|icc| (1.0 - icc).clamp(0.0, 1.0));
    for a in 0..m {
        for b in a + 1..m {
            let mut per_pair = vec![(0u64, 0u64); pairs];
            for i in &planned {
                if let (Some(x), Some(y)) = (i.ratings[a].category(), i.ratings[b].category()) {
                    let cell = &mut per_pair[i.pair];
                    cell.1 += 1;
                    cell.0 += u64::from(x != y);
                }
            }
            let flips = per_pair.iter().map(|x| x.0).sum();
            let comparisons = per_pair.iter().map(|x| x.1).sum();
            out.pairs.push(TemplatePairFlip {
                a: names[a].clone(),
                b: names[b].clone(),
                flips,
                comparisons,
                pairs: per_pair.iter().filter(|x| x.1 > 0).count() as u64,
                rate: clustered_rate(&per_pair, confidence),
            });
        }
    }
    out.worst_pair = out
        .pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.rate.estimate.map(|r| (i, r)))
        .fold(None, |best: Option<(usize, f64)>, (i, r)| match best {
            Some((_, b)) if b >= r => best,
            _ => Some((i, r)),
        })
        .map(|(i, _)| i);
    out
}

/// A judge and its template variants: `(index into the plan's judges, template name)`, the
/// primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateGroup {
    /// The judge's name.
    pub judge: String,
    /// Its templates, the primary first.
    pub members: Vec<(usize, String)>,
}

/// The baseline items of `members` (pair × order × repeat), rated in answer terms.
fn baseline_items(l: &Layout, pairs: usize, verdicts: &[&Verdicts]) -> Vec<Item> {
    let mut out = Vec::with_capacity(pairs * 2 * l.repeats);
    for pair in 0..pairs {
        for order in Order::BOTH {
            for repeat in 0..l.repeats {
                let slot = l.baseline(order, repeat);
                out.push(Item {
                    pair,
                    ratings: verdicts
                        .iter()
                        .map(|v| Rating::of(obs(v.code(l, pair, slot), order == Order::Ab)))
                        .collect(),
                });
            }
        }
    }
    out
}

/// The primary template's flip rate between repeat 0 and every later repeat of the identical
/// call.
fn noise_floor(l: &Layout, pairs: usize, v: &Verdicts, confidence: f64) -> Option<Estimate> {
    if l.repeats < 2 {
        return None;
    }
    let per_pair: Vec<(u64, u64)> = (0..pairs)
        .map(|pair| {
            let mut cell = (0, 0);
            for order in Order::BOTH {
                let first = obs(v.code(l, pair, l.baseline(order, 0)), true).val();
                for repeat in 1..l.repeats {
                    let later = obs(v.code(l, pair, l.baseline(order, repeat)), true).val();
                    if let (Some(x), Some(y)) = (first, later) {
                        cell.1 += 1;
                        cell.0 += u64::from(x != y);
                    }
                }
            }
            cell
        })
        .collect();
    Some(clustered_rate(&per_pair, confidence))
}

/// The template sensitivity of every group. `verdicts` and `judges` are in plan order.
pub(crate) fn analyze(
    l: &Layout,
    pairs: usize,
    verdicts: &[Verdicts],
    judges: &[JudgeResult],
    groups: &[TemplateGroup],
    design: &str,
    confidence: f64,
) -> TemplateSection {
    let judges_out = groups
        .iter()
        .map(|g| {
            let vs: Vec<&Verdicts> = g.members.iter().map(|(j, _)| &verdicts[*j]).collect();
            let names: Vec<String> = g.members.iter().map(|(_, t)| t.clone()).collect();
            let items = baseline_items(l, pairs, &vs);
            let results: Vec<&JudgeResult> = g.members.iter().map(|(j, _)| &judges[*j]).collect();
            let templates: Vec<TemplateEntry> = g
                .members
                .iter()
                .enumerate()
                .map(|(t, (j, name))| {
                    let ratings = items.iter().map(|i| i.ratings[t]);
                    let count = |f: &dyn Fn(Rating) -> bool| {
                        ratings.clone().filter(|r| f(*r)).count() as u64
                    };
                    TemplateEntry {
                        template: name.clone(),
                        judge: judges[*j].name.clone(),
                        primary: t == 0,
                        valid: count(&|r| r.category().is_some()),
                        invalid: count(&|r| r == Rating::Invalid),
                        failed: count(&|r| r == Rating::Failed),
                        gold_accuracy: judges[*j].baseline.gold_accuracy.clone(),
                        trust: judges[*j].trust.verdict.label().to_string(),
                        artifacts_measured: judges[*j]
                            .artifacts
                            .iter()
                            .filter(|a| a.tie_detection.score.n > 0 || a.winrate_shift.shift.n > 0)
                            .count(),
                    }
                })
                .collect();
            let agreement = agreement(&items, &names, pairs, confidence);
            let noise = noise_floor(l, pairs, vs[0], confidence);
            let golds: Vec<f64> = results
                .iter()
                .filter_map(|r| r.baseline.gold_accuracy.estimate)
                .collect();
            let range = |xs: &[f64]| {
                (xs.len() >= 2).then(|| {
                    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        - xs.iter().copied().fold(f64::INFINITY, f64::min)
                })
            };
            let artifacts: Vec<ArtifactSpread> = l
                .artifacts
                .iter()
                .filter_map(|id| {
                    let t: Vec<Option<f64>> = results
                        .iter()
                        .map(|r| {
                            r.artifacts
                                .iter()
                                .find(|a| &a.artifact == id)
                                .and_then(|a| a.tie_detection.score.estimate)
                        })
                        .collect();
                    let measured: Vec<f64> = t.iter().flatten().copied().collect();
                    range(&measured).map(|range| ArtifactSpread {
                        artifact: id.clone(),
                        t,
                        range,
                    })
                })
                .collect();
            let same_scope = templates
                .iter()
                .all(|t| t.artifacts_measured == templates[0].artifacts_measured);
            let trust_changes =
                same_scope.then(|| templates.iter().any(|t| t.trust != templates[0].trust));
            let floor = noise.as_ref().and_then(|n| n.estimate).unwrap_or(0.0);
            let worst = agreement.worst_pair.map(|i| &agreement.pairs[i]);
            let above_noise = worst.is_some_and(|w| w.rate.ci_low.is_some_and(|lo| lo > floor));
            let depends = above_noise || trust_changes == Some(true);
            let finding = depends.then(|| {
                let mut parts = Vec::new();
                if let Some(w) = worst.filter(|_| above_noise) {
                    parts.push(format!(
                        "templates {} and {} disagree on {} of {} identical baseline calls \
                         ({:.1}%, 95% CI {:.1}% to {:.1}%), above the {:.1}% the primary \
                         template changes between repeats",
                        w.a,
                        w.b,
                        w.flips,
                        w.comparisons,
                        100.0 * w.rate.estimate.unwrap_or(0.0),
                        100.0 * w.rate.ci_low.unwrap_or(0.0),
                        100.0 * w.rate.ci_high.unwrap_or(0.0),
                        100.0 * floor
                    ));
                }
                if trust_changes == Some(true) {
                    parts.push(format!(
                        "the trust verdict changes with the template ({})",
                        templates
                            .iter()
                            .map(|t| format!("{}: {}", t.template, t.trust))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                format!(
                    "The verdict depends on the template: {}. Part of what this audit measures \
                     is the prompt, not the model.",
                    parts.join("; ")
                )
            });
            JudgeTemplates {
                judge: g.judge.clone(),
                simulated: results[0].simulated,
                templates,
                agreement,
                noise_floor: noise,
                gold_accuracy_range: range(&golds),
                artifacts,
                trust_changes,
                depends_on_template: depends,
                finding,
            }
        })
        .collect();
    TemplateSection {
        design: design.to_string(),
        note: METHOD_NOTE.into(),
        judges: judges_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pair: usize, r: &[Rating]) -> Item {
        Item {
            pair,
            ratings: r.to_vec(),
        }
    }

    #[test]
    fn invalid_ratings_are_left_out_not_coerced() {
        use Rating::*;
        let names = vec!["x".to_string(), "y".to_string()];
        let items = [
            item(0, &[A, A]),
            item(0, &[A, Invalid]),
            item(1, &[B, A]),
            item(1, &[Failed, Tie]),
        ];
        let a = agreement(&items, &names, 2, 0.95);
        assert_eq!((a.items, a.complete_items), (4, 2));
        let p = &a.pairs[0];
        assert_eq!((p.flips, p.comparisons, p.pairs), (1, 2, 2));
    }

    #[test]
    fn one_template_has_no_agreement() {
        let names = vec!["x".to_string()];
        let a = agreement(&[item(0, &[Rating::A])], &names, 1, 0.95);
        assert_eq!(a.fleiss_kappa, None);
        assert!(a.pairs.is_empty() && a.worst_pair.is_none());
    }
}
