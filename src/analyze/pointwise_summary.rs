//! The pointwise part of an audit's summary: per pointwise judge (score, label or rubric), per
//! criterion, the metrics of [`super::pointwise`] over its graded records, plus juries of
//! pointwise judges that share a scale.
//!
//! This is the seam between the runner (which turns stored calls into [`PointwiseInputs`]) and
//! the reports (which render [`PointwiseSection`]); neither side needs the other's types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::pointwise::{
    Calibration, GradeRecord, InvalidCounts, JuryGrade, LabelAccuracy, LabelFlips, Rate, ScaleUse,
    ScoreAgreement, ScoreComparisonConsistency, ScoreShift, calibration, jury_grade,
    label_accuracy, label_flip_grid, scale_use, score_agreement, score_comparison_consistency,
    score_shifts,
};
use super::trust::{TrustThresholds, TrustVerdict, pointwise_verdict};
use crate::dataset::single::Gold;
use crate::judge::grade::Grade;
use crate::stats::{BootstrapConfig, BootstrapMethod};

/// What a pointwise judge (or one rubric criterion) answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum GradeScale {
    /// An integer scale `min..=max` (e.g. 1–10).
    Score {
        /// Lowest score on the scale.
        min: i64,
        /// Highest score on the scale.
        max: i64,
    },
    /// A closed label set with one label marked positive (e.g. `unsafe`, `pass`, `yes`).
    Label {
        /// Every label, canonical spelling.
        labels: Vec<String>,
        /// The label whose rate the flip and accuracy metrics count.
        positive: String,
    },
}

/// The verdict kind a judge file declares (pairwise judges never reach this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointwiseKind {
    /// One numeric score per answer.
    Score,
    /// One label per answer.
    Label,
    /// Several named criteria, each a score or a label.
    Rubric,
}

impl PointwiseKind {
    /// The kind as a judge file spells it (`score`, `label`, `rubric`).
    pub fn label(self) -> &'static str {
        match self {
            PointwiseKind::Score => "score",
            PointwiseKind::Label => "label",
            PointwiseKind::Rubric => "rubric",
        }
    }
}

/// The grades one criterion received. Score and label judges have exactly one criterion, named
/// after their kind (`score` / `label`); a rubric judge has one per declared criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionInput {
    /// Criterion name (`score`, `label`, or the rubric's criterion name).
    pub name: String,
    /// How its grades are read.
    pub scale: GradeScale,
    /// Every graded call of this criterion: baselines (`artifact: None`, repeats 0..) and artifact
    /// grades, invalid grades included.
    pub records: Vec<GradeRecord>,
}

/// The pairwise verdicts of a judge graded both ways, for the score–comparison consistency.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyInput {
    /// The pairwise judge whose verdicts are compared.
    pub pairwise_judge: String,
    /// Per pair: the pointwise score of answer a, of answer b, and whether the pairwise verdict
    /// chose a (`Some(true)`), b (`Some(false)`) or neither (`None`).
    pub pairs: Vec<(f64, f64, Option<bool>)>,
}

/// One pointwise judge's graded calls.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseJudgeInput {
    /// Judge name.
    pub judge: String,
    /// Declared kind.
    pub kind: PointwiseKind,
    /// Whether the judge is a simulated reference judge (shown in every output).
    pub simulated: bool,
    /// The artifacts of the judge's grid, in catalog order (the multiplicity family).
    pub artifacts: Vec<String>,
    /// Per criterion, its grades.
    pub criteria: Vec<CriterionInput>,
    /// Score–comparison consistency input, when the judge names a pairwise counterpart.
    pub consistency: Option<ConsistencyInput>,
}

/// A jury of pointwise judges (members must share kind and scale; rubric juries are not formed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointwiseJuryInput {
    /// Jury name.
    pub name: String,
    /// Member judge names.
    pub members: Vec<String>,
}

/// Everything the pointwise analysis reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointwiseInputs {
    /// Pointwise judges, in the audit's judge order.
    pub judges: Vec<PointwiseJudgeInput>,
    /// Gold per item id (labels, scores, or the pair preference of items graded from pairs).
    pub gold: BTreeMap<String, Gold>,
    /// For items graded from pairs: item id → pair id (pairs the gold-order metric).
    pub pair_of: BTreeMap<String, String>,
    /// Juries to form.
    pub juries: Vec<PointwiseJuryInput>,
}

/// Options of the pointwise analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseOptions {
    /// Bootstrap resamples of the score-shift intervals.
    pub bootstrap_resamples: usize,
    /// Run seed (mixed with the judge name so each judge's resampling is its own).
    pub seed: u64,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Bootstrap interval method.
    pub bootstrap_method: BootstrapMethod,
    /// The `[trust]` thresholds of the audit: the pointwise rules of
    /// [`super::trust::pointwise_verdict`] read theirs from here.
    pub trust: TrustThresholds,
}

impl Default for PointwiseOptions {
    fn default() -> Self {
        PointwiseOptions {
            bootstrap_resamples: 2000,
            seed: 0,
            confidence: 0.95,
            bootstrap_method: BootstrapMethod::Percentile,
            trust: TrustThresholds::default(),
        }
    }
}

/// The metrics of one criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionSummary {
    /// Criterion name.
    pub name: String,
    /// How its grades are read.
    pub scale: GradeScale,
    /// Graded calls (every record, invalid ones included).
    pub calls: u64,
    /// Invalid grades among them (counted, never coerced).
    pub invalid: InvalidCounts,
    /// Score shift per artifact (score criteria).
    pub score_shifts: Vec<ScoreShift>,
    /// Label flips per artifact (label criteria).
    pub label_flips: Vec<LabelFlips>,
    /// Baseline labels against gold labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_accuracy: Option<LabelAccuracy>,
    /// Baseline scores against gold scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_agreement: Option<ScoreAgreement>,
    /// For answers graded from pairs with a gold preference: the share of pairs (with unequal
    /// scores) where the dispreferred answer scored higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_order_inversions: Option<Rate>,
    /// Score distribution, share of the scale used, run-to-run SD and ICC (score criteria).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_use: Option<ScaleUse>,
    /// Calibration of P(positive label) against gold labels, where probabilities exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// One pointwise judge's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseJudgeSummary {
    /// Judge name.
    pub judge: String,
    /// Declared kind.
    pub kind: PointwiseKind,
    /// Simulated reference judge.
    pub simulated: bool,
    /// Per criterion.
    pub criteria: Vec<CriterionSummary>,
    /// Score–comparison consistency with its pairwise counterpart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<NamedConsistency>,
    /// The trust verdict with its reasons (pointwise rules of [`super::trust`]).
    pub trust: TrustVerdict,
}

/// [`ScoreComparisonConsistency`] with the pairwise judge it compares against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedConsistency {
    /// The pairwise judge.
    pub pairwise_judge: String,
    /// The consistency figures.
    #[serde(flatten)]
    pub consistency: ScoreComparisonConsistency,
}

/// A pointwise jury's results: the members' grades combined per answer (mean score, or the
/// majority label; a tie between labels counts as unparseable) and analysed like one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseJurySummary {
    /// Jury name.
    pub jury: String,
    /// Members.
    pub members: Vec<String>,
    /// The combined criterion (`score` or `label`).
    pub criterion: CriterionSummary,
    /// Whether any member is simulated.
    pub simulated: bool,
    /// The trust verdict on the combined grades (same pointwise rules as a judge).
    pub trust: TrustVerdict,
}

/// The pointwise section of a summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PointwiseSection {
    /// Per pointwise judge.
    pub judges: Vec<PointwiseJudgeSummary>,
    /// Per pointwise jury.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub juries: Vec<PointwiseJurySummary>,
    /// Juries that could not be formed, with the reason (members of different kinds or scales,
    /// rubric members, unknown members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_juries: Vec<SkippedJury>,
}

/// A jury left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedJury {
    /// Jury name.
    pub jury: String,
    /// Why it was not formed.
    pub reason: String,
}

/// FNV-1a, so the bootstrap seed of a judge does not depend on the platform's hasher.
fn name_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn gold_labels(gold: &BTreeMap<String, Gold>) -> BTreeMap<String, String> {
    gold.iter()
        .filter_map(|(id, g)| match g {
            Gold::Label(l) => Some((id.clone(), l.clone())),
            _ => None,
        })
        .collect()
}

fn gold_scores(gold: &BTreeMap<String, Gold>) -> BTreeMap<String, f64> {
    gold.iter()
        .filter_map(|(id, g)| match g {
            Gold::Score(s) => Some((id.clone(), *s)),
            _ => None,
        })
        .collect()
}

/// Of the pairs whose two answers both have a valid baseline score, differ in score and carry a
/// gold preference, how many rank the dispreferred answer higher.
fn gold_order_inversions(
    records: &[GradeRecord],
    inputs: &PointwiseInputs,
    confidence: f64,
) -> Option<Rate> {
    // pair id -> (score of preferred, score of the other)
    let mut by_pair: BTreeMap<&str, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.artifact.is_none() && r.repeat == 0)
    {
        let (Some(pair), Some(Gold::Preferred(preferred))) =
            (inputs.pair_of.get(&r.item_id), inputs.gold.get(&r.item_id))
        else {
            continue;
        };
        let Grade::Score(s) = r.grade else { continue };
        let slot = by_pair.entry(pair.as_str()).or_default();
        if *preferred {
            slot.0 = Some(s);
        } else {
            slot.1 = Some(s);
        }
    }
    let (mut n, mut inverted) = (0u64, 0u64);
    let mut any = false;
    for (preferred, other) in by_pair.values() {
        if let (Some(p), Some(o)) = (preferred, other) {
            any = true;
            if p != o {
                n += 1;
                inverted += u64::from(o > p);
            }
        }
    }
    any.then(|| Rate::new(inverted, n, confidence))
}

fn criterion_summary(
    criterion: &CriterionInput,
    artifacts: &[&str],
    inputs: &PointwiseInputs,
    bootstrap: &BootstrapConfig,
    confidence: f64,
) -> CriterionSummary {
    let records = &criterion.records;
    let mut invalid = InvalidCounts::default();
    for r in records {
        invalid.add(&r.grade);
    }
    let mut summary = CriterionSummary {
        name: criterion.name.clone(),
        scale: criterion.scale.clone(),
        calls: records.len() as u64,
        invalid,
        score_shifts: Vec::new(),
        label_flips: Vec::new(),
        label_accuracy: None,
        score_agreement: None,
        gold_order_inversions: None,
        scale_use: None,
        calibration: None,
    };
    match &criterion.scale {
        GradeScale::Score { min, max } => {
            summary.score_shifts = score_shifts(records, artifacts, bootstrap);
            let scores = gold_scores(&inputs.gold);
            if records.iter().any(|r| scores.contains_key(&r.item_id)) {
                summary.score_agreement = Some(score_agreement(records, &scores, *min, *max));
            }
            summary.gold_order_inversions = gold_order_inversions(records, inputs, confidence);
            summary.scale_use = Some(scale_use(records, *min, *max));
        }
        GradeScale::Label { positive, .. } => {
            summary.label_flips = label_flip_grid(records, artifacts, positive, confidence);
            let labels = gold_labels(&inputs.gold);
            if records.iter().any(|r| labels.contains_key(&r.item_id)) {
                summary.label_accuracy =
                    Some(label_accuracy(records, &labels, positive, confidence));
                summary.calibration = calibration(records, &labels, positive);
            }
        }
    }
    summary
}

/// Combine the members' records of one criterion into jury records, cell by cell (item,
/// artifact, repeat); a cell every member graded enters, others are left out.
fn jury_records(members: &[&CriterionInput]) -> Vec<GradeRecord> {
    type Key = (String, Option<String>, u32);
    let mut cells: BTreeMap<Key, (String, Vec<Grade>)> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    for member in members {
        for r in &member.records {
            let key = (r.item_id.clone(), r.artifact.clone(), r.repeat);
            let entry = cells.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (r.cluster.clone(), Vec::new())
            });
            entry.1.push(r.grade.clone());
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let (cluster, grades) = cells.remove(&key)?;
            if grades.len() != members.len() {
                return None;
            }
            let combined: JuryGrade = jury_grade(&grades);
            let grade = match &members[0].scale {
                GradeScale::Score { .. } if combined.mean_score.is_finite() => {
                    Grade::Score(combined.mean_score)
                }
                GradeScale::Label { .. } => combined
                    .majority_label
                    .map_or(Grade::Unparseable, Grade::Label),
                GradeScale::Score { .. } => Grade::Unparseable,
            };
            Some(GradeRecord {
                item_id: key.0,
                cluster,
                artifact: key.1,
                repeat: key.2,
                grade,
                probability: None,
            })
        })
        .collect()
}

/// Analyse every pointwise judge and jury. Deterministic: the same inputs and options give the
/// same section.
pub fn analyze_pointwise(inputs: &PointwiseInputs, options: &PointwiseOptions) -> PointwiseSection {
    let bootstrap_for = |name: &str| BootstrapConfig {
        resamples: options.bootstrap_resamples,
        seed: name_seed(options.seed, name),
        confidence: options.confidence,
        method: options.bootstrap_method,
    };
    let judges = inputs
        .judges
        .iter()
        .map(|judge| {
            let artifacts: Vec<&str> = judge.artifacts.iter().map(String::as_str).collect();
            let bootstrap = bootstrap_for(&judge.judge);
            let criteria: Vec<CriterionSummary> = judge
                .criteria
                .iter()
                .map(|c| criterion_summary(c, &artifacts, inputs, &bootstrap, options.confidence))
                .collect();
            let consistency = judge.consistency.as_ref().map(|c| NamedConsistency {
                pairwise_judge: c.pairwise_judge.clone(),
                consistency: score_comparison_consistency(&c.pairs, options.confidence),
            });
            PointwiseJudgeSummary {
                judge: judge.judge.clone(),
                kind: judge.kind,
                simulated: judge.simulated,
                trust: pointwise_verdict(&criteria, consistency.as_ref(), &options.trust),
                criteria,
                consistency,
            }
        })
        .collect();
    let mut section = PointwiseSection {
        judges,
        ..PointwiseSection::default()
    };
    for jury in &inputs.juries {
        match jury_members(inputs, jury) {
            Ok((members, artifacts, simulated)) => {
                let records = jury_records(&members);
                let combined = CriterionInput {
                    name: members[0].name.clone(),
                    scale: members[0].scale.clone(),
                    records,
                };
                let artifacts: Vec<&str> = artifacts.iter().map(String::as_str).collect();
                let bootstrap = bootstrap_for(&jury.name);
                let criterion = criterion_summary(
                    &combined,
                    &artifacts,
                    inputs,
                    &bootstrap,
                    options.confidence,
                );
                section.juries.push(PointwiseJurySummary {
                    jury: jury.name.clone(),
                    members: jury.members.clone(),
                    trust: pointwise_verdict(
                        std::slice::from_ref(&criterion),
                        None,
                        &options.trust,
                    ),
                    criterion,
                    simulated,
                });
            }
            Err(reason) => section.skipped_juries.push(SkippedJury {
                jury: jury.name.clone(),
                reason,
            }),
        }
    }
    section
}

/// The members' single criterion, the artifacts all of them were graded on, and whether any is
/// simulated; an error names why the jury cannot be formed.
fn jury_members<'a>(
    inputs: &'a PointwiseInputs,
    jury: &PointwiseJuryInput,
) -> Result<(Vec<&'a CriterionInput>, Vec<String>, bool), String> {
    if jury.members.len() < 2 {
        return Err("a jury needs at least two members".into());
    }
    let mut criteria = Vec::new();
    let mut artifacts: Option<Vec<String>> = None;
    let mut simulated = false;
    for name in &jury.members {
        let judge = inputs
            .judges
            .iter()
            .find(|j| &j.judge == name)
            .ok_or_else(|| format!("member {name} is not a pointwise judge of this audit"))?;
        if judge.kind == PointwiseKind::Rubric {
            return Err(format!(
                "member {name} is a rubric judge (juries combine one grade)"
            ));
        }
        let [criterion] = judge.criteria.as_slice() else {
            return Err(format!("member {name} has no single criterion"));
        };
        if let Some(first) = criteria.first().map(|c: &&CriterionInput| &c.scale)
            && *first != criterion.scale
        {
            return Err(format!("member {name} grades on another scale"));
        }
        simulated |= judge.simulated;
        criteria.push(criterion);
        artifacts = Some(match artifacts {
            None => judge.artifacts.clone(),
            Some(shared) => shared
                .into_iter()
                .filter(|a| judge.artifacts.contains(a))
                .collect(),
        });
    }
    Ok((criteria, artifacts.unwrap_or_default(), simulated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(item: &str, artifact: Option<&str>, repeat: u32, grade: Grade) -> GradeRecord {
        GradeRecord {
            item_id: item.into(),
            cluster: item.into(),
            artifact: artifact.map(str::to_string),
            repeat,
            grade,
            probability: None,
        }
    }

    fn label_judge(name: &str, flips: &[bool]) -> PointwiseJudgeInput {
        // Items 0..n: baseline "unsafe"; under apology "safe" where flips[i].
        let mut records = Vec::new();
        for (i, flip) in flips.iter().enumerate() {
            let id = format!("i{i}");
            records.push(record(&id, None, 0, Grade::Label("unsafe".into())));
            let after = if *flip { "safe" } else { "unsafe" };
            records.push(record(&id, Some("apology"), 0, Grade::Label(after.into())));
        }
        PointwiseJudgeInput {
            judge: name.into(),
            kind: PointwiseKind::Label,
            simulated: true,
            artifacts: vec!["apology".into()],
            criteria: vec![CriterionInput {
                name: "label".into(),
                scale: GradeScale::Label {
                    labels: vec!["safe".into(), "unsafe".into()],
                    positive: "unsafe".into(),
                },
                records,
            }],
            consistency: None,
        }
    }

    #[test]
    fn label_judge_flip_counts_and_gold_accuracy() {
        let mut inputs = PointwiseInputs {
            judges: vec![label_judge("j", &[true, false, true, false])],
            ..Default::default()
        };
        inputs
            .gold
            .insert("i0".into(), Gold::Label("unsafe".into()));
        inputs.gold.insert("i1".into(), Gold::Label("safe".into()));
        let section = analyze_pointwise(&inputs, &PointwiseOptions::default());
        let c = &section.judges[0].criteria[0];
        assert_eq!(c.calls, 8);
        assert_eq!(c.label_flips.len(), 1);
        assert_eq!(c.label_flips[0].positive_to_negative.count, 2);
        assert_eq!(c.label_flips[0].negative_to_positive.count, 0);
        let acc = c.label_accuracy.as_ref().expect("gold labels present");
        // i0 unsafe/unsafe correct, i1 judged unsafe but gold safe.
        assert_eq!((acc.n, acc.true_positive, acc.false_positive), (2, 1, 1));
        assert!(c.score_shifts.is_empty() && c.scale_use.is_none());
    }

    #[test]
    fn jury_majority_and_mixed_scales_skipped() {
        // Three members: flips on items {0,1}, {0}, {1,2}; majority flips on 0 and 1 only.
        let mut inputs = PointwiseInputs {
            judges: vec![
                label_judge("a", &[true, true, false, false]),
                label_judge("b", &[true, false, false, false]),
                label_judge("c", &[false, true, true, false]),
            ],
            ..Default::default()
        };
        let mut scored = label_judge("s", &[false]);
        scored.criteria[0].scale = GradeScale::Score { min: 1, max: 10 };
        inputs.judges.push(scored);
        inputs.juries = vec![
            PointwiseJuryInput {
                name: "abc".into(),
                members: vec!["a".into(), "b".into(), "c".into()],
            },
            PointwiseJuryInput {
                name: "as".into(),
                members: vec!["a".into(), "s".into()],
            },
        ];
        let section = analyze_pointwise(&inputs, &PointwiseOptions::default());
        assert_eq!(section.juries.len(), 1);
        let flips = &section.juries[0].criterion.label_flips[0];
        assert_eq!(flips.positive_to_negative.count, 2);
        assert_eq!(flips.n, 4);
        assert_eq!(section.skipped_juries.len(), 1);
        assert!(section.skipped_juries[0].reason.contains("another scale"));
    }

    #[test]
    fn score_judge_gold_order_inversions() {
        // Pairs p0..p2: preferred answer /a; judge scores a,b = (8,3), (4,6), (5,5).
        let scores = [(8.0, 3.0), (4.0, 6.0), (5.0, 5.0)];
        let mut records = Vec::new();
        let mut inputs = PointwiseInputs::default();
        for (i, (a, b)) in scores.iter().enumerate() {
            for (side, s, preferred) in [("a", a, true), ("b", b, false)] {
                let id = format!("p{i}/{side}");
                records.push(GradeRecord {
                    cluster: format!("p{i}"),
                    ..record(&id, None, 0, Grade::Score(*s))
                });
                inputs.gold.insert(id.clone(), Gold::Preferred(preferred));
                inputs.pair_of.insert(id, format!("p{i}"));
            }
        }
        inputs.judges.push(PointwiseJudgeInput {
            judge: "g".into(),
            kind: PointwiseKind::Score,
            simulated: false,
            artifacts: vec![],
            criteria: vec![CriterionInput {
                name: "score".into(),
                scale: GradeScale::Score { min: 1, max: 10 },
                records,
            }],
            consistency: None,
        });
        let section = analyze_pointwise(&inputs, &PointwiseOptions::default());
        let inv = section.judges[0].criteria[0]
            .gold_order_inversions
            .expect("pairs with gold preference");
        assert_eq!((inv.count, inv.n), (1, 2));
    }

    #[test]
    fn verdicts_reject_safety_flips_and_round_trip_through_json() {
        use crate::analyze::Trust;
        // 8 of 10 unsafe answers read safe under apology: McNemar 8 vs 0, p = 0.0078.
        let flips: Vec<bool> = (0..10).map(|i| i < 8).collect();
        let inputs = PointwiseInputs {
            judges: vec![
                label_judge("flip", &flips),
                label_judge("steady", &[false; 10]),
            ],
            ..Default::default()
        };
        let section = analyze_pointwise(&inputs, &PointwiseOptions::default());
        let flip = &section.judges[0].trust;
        assert_eq!(flip.verdict, Trust::Reject);
        let r = &flip.reasons[0];
        assert_eq!(r.rule, "reject_safety_flip");
        assert_eq!(
            (r.artifact.as_deref(), r.criterion.as_deref()),
            (Some("apology"), Some("label"))
        );
        assert_eq!((r.value, r.threshold), (Some(0.8), Some(0.1)));
        assert_eq!(section.judges[1].trust.verdict, Trust::Adopt);
        // A stricter table moves the verdict: the options carry the thresholds.
        let mut options = PointwiseOptions::default();
        options.trust.reject_safety_flip = 0.9;
        let lenient = analyze_pointwise(&inputs, &options);
        assert_eq!(lenient.judges[0].trust.verdict, Trust::Caution);
        assert_eq!(
            lenient.judges[0].trust.reasons[0].rule,
            "significant_effect"
        );

        // No gold: accuracy and the interval-free figures are absent or NaN; the JSON
        // (NaN written as null) reads back to an equal section up to NaN.
        let text = serde_json::to_string(&section).unwrap();
        let back: PointwiseSection = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn no_grades_is_could_not_audit() {
        let mut judge = label_judge("empty", &[]);
        judge.criteria[0].records.clear();
        let inputs = PointwiseInputs {
            judges: vec![judge],
            ..Default::default()
        };
        let section = analyze_pointwise(&inputs, &PointwiseOptions::default());
        assert_eq!(
            section.judges[0].trust.verdict,
            crate::analyze::Trust::CouldNotAudit
        );
    }
}
