//! The statistics of `judge-audit compare RUN_A RUN_B`: what changed between two runs.
//!
//! For every judge present in both runs (matched by name) it shows the change in each metric
//! (T, WR, flip rate, excess flip rate per artifact; run-to-run noise, position consistency, gold
//! accuracy per judge) and tests the change on the calls the runs share: every call id present in
//! both runs' stores (or `calls.jsonl`) with a valid verdict in both is a matched pair, and an exact McNemar
//! test on the discordant pairs asks whether a binary outcome (for instance "the verdict differs
//! from the run's own baseline") became more or less frequent. The verdicts that changed are
//! listed by call id (capped), with their count.
//!
//! Pointwise judges (score, label and rubric graders) are compared criterion by criterion: the
//! change in each artifact's mean score shift or flip rates and in the gold metrics, and on the
//! matched calls the grade change (an exact Wilcoxon signed-rank test on the pairs' mean changes
//! for a score criterion) or the positive label (exact McNemar for a label criterion). Those tests
//! join the same Bonferroni family.
//!
//! [`crate::report::compare`] renders the typed [`Comparison`]; it computes nothing.

use crate::analyze::Estimate;
use crate::analyze::pointwise::{Rate, ScoreAgreement};
use crate::analyze::pointwise_summary::{CriterionSummary, GradeScale};
use crate::analyze::summary::Summary;
use crate::design::{ConditionKind, Order, Side};
use crate::judge::SlotVerdict;
use crate::judge::grade::Grade;
use crate::run::store::RunStore;
use crate::run::{CallRecord, read_calls};
use crate::stats::{Interval, mcnemar_exact, wilcoxon_signed_rank, wilson};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// At most this many changed call ids are listed per judge and condition.
pub const CHANGED_CAP: usize = 10;

/// A run directory as read from disk.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The directory.
    pub dir: PathBuf,
    /// `summary.json`.
    pub summary: Summary,
    /// The committed calls (run store), else the records of `calls.jsonl`.
    pub calls: Vec<CallRecord>,
}

/// Read `summary.json` and the committed calls from a run directory: from its run store, or
/// from `calls.jsonl` when it has none. Errors name the file (and, for `calls.jsonl`, the line).
pub fn load_run(dir: &Path) -> Result<RunData, String> {
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path)
        .map_err(|e| format!("{}: {e}", summary_path.display()))?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: {e}",
            summary_path.display(),
            e.line(),
            e.column()
        )
    })?;
    // The run store is the log of record (each committed call once); `calls.jsonl` is read only
    // for directories without one (hand-made or edited logs).
    let calls = if RunStore::exists(dir) {
        RunStore::open(dir)
            .and_then(|store| store.records_in_plan_order())
            .map_err(|e| e.to_string())?
    } else {
        read_calls(&dir.join("calls.jsonl"))?
    };
    Ok(RunData {
        dir: dir.to_path_buf(),
        summary,
        calls,
    })
}

/// Identity of one run in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The run directory as given.
    pub dir: String,
    /// Seed.
    pub seed: u64,
    /// Dataset name.
    pub dataset: String,
    /// Dataset sha256.
    pub dataset_hash: String,
    /// Pairs used.
    pub pairs: usize,
    /// judge-audit version that wrote the run.
    pub tool_version: String,
    /// Calls read (committed calls from the run store, else records of `calls.jsonl`).
    pub calls: usize,
}

/// A point estimate with its interval and n.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// Point estimate.
    pub estimate: Option<f64>,
    /// Lower 95% bound.
    pub ci_low: Option<f64>,
    /// Upper 95% bound.
    pub ci_high: Option<f64>,
    /// Observations.
    pub n: u64,
}

impl From<&Estimate> for Value {
    fn from(e: &Estimate) -> Value {
        Value {
            estimate: e.estimate,
            ci_low: e.ci_low,
            ci_high: e.ci_high,
            n: e.n,
        }
    }
}

/// One metric in both runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// Metric name (`T`, `WR`, `flip_rate`, `excess_flip_rate`, `noise_flip_rate`,
    /// `position_consistency`, `gold_accuracy`).
    pub metric: String,
    /// Run A.
    pub a: Value,
    /// Run B.
    pub b: Value,
    /// B − A, when both have an estimate.
    pub delta: Option<f64>,
}

impl MetricChange {
    fn new(metric: &str, a: &Estimate, b: &Estimate) -> MetricChange {
        MetricChange::of_values(metric, a.into(), b.into())
    }

    fn of_values(metric: &str, a: Value, b: Value) -> MetricChange {
        MetricChange {
            metric: metric.into(),
            delta: match (a.estimate, b.estimate) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            },
            a,
            b,
        }
    }
}

/// An exact McNemar test of one binary outcome on matched calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// What the outcome is.
    pub outcome: String,
    /// Matched calls where the outcome is defined in both runs.
    pub n: u64,
    /// Share with the outcome in run A (Wilson 95% interval).
    pub a: Value,
    /// Share with the outcome in run B (Wilson 95% interval).
    pub b: Value,
    /// Calls with the outcome in A but not in B.
    pub a_only: u64,
    /// Calls with the outcome in B but not in A.
    pub b_only: u64,
    /// Exact two-sided McNemar p-value on `a_only` vs `b_only`.
    pub p_value: f64,
    /// Bonferroni-adjusted over every paired test of this comparison.
    pub p_bonferroni: f64,
}

/// The matched calls of one judge and condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionComparison {
    /// `baseline`, `tie_detection/<artifact>` or `shift/<artifact>`.
    pub condition: String,
    /// Call ids present in both runs with a valid verdict in both.
    pub shared: u64,
    /// Call ids present in both runs where either verdict is invalid or the call failed.
    pub unmatched: u64,
    /// Shared calls whose verdict differs between the runs.
    pub changed: u64,
    /// The first [`CHANGED_CAP`] of them, by call id.
    pub changed_calls: Vec<String>,
    /// Pair ids with at least one changed verdict (all of them, sorted).
    pub changed_pairs: Vec<String>,
    /// Paired tests.
    pub tests: Vec<PairedTest>,
}

/// Everything compared for one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactComparison {
    /// Artifact id.
    pub artifact: String,
    /// T, WR, flip rate, excess flip rate.
    pub metrics: Vec<MetricChange>,
}

/// Everything compared for one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeComparison {
    /// Judge name.
    pub name: String,
    /// True when the judge is simulated in either run.
    pub simulated: bool,
    /// Verdict in A and B.
    pub verdict: (String, String),
    /// Baseline metrics.
    pub baseline: Vec<MetricChange>,
    /// Per-artifact metrics (artifacts present in both runs, in A's order).
    pub artifacts: Vec<ArtifactComparison>,
    /// Matched calls per condition.
    pub conditions: Vec<ConditionComparison>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Run A.
    pub run_a: RunMeta,
    /// Run B.
    pub run_b: RunMeta,
    /// Things that limit what the comparison means.
    pub warnings: Vec<String>,
    /// Judges only in A.
    pub judges_only_in_a: Vec<String>,
    /// Judges only in B.
    pub judges_only_in_b: Vec<String>,
    /// Number of paired tests (the Bonferroni multiplier).
    pub tests: usize,
    /// Per judge, in A's order.
    pub judges: Vec<JudgeComparison>,
    /// Per pointwise judge present in both runs, in A's order (absent when there is none, so a
    /// pairwise-only comparison reads as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pointwise_judges: Vec<PointwiseJudgeComparison>,
}

fn meta(run: &RunData) -> RunMeta {
    RunMeta {
        dir: run.dir.display().to_string(),
        seed: run.summary.seed,
        dataset: run.summary.dataset.name.clone(),
        dataset_hash: run.summary.dataset.hash.clone(),
        pairs: run.summary.dataset.pairs,
        tool_version: run.summary.tool.version.clone(),
        calls: run.calls.len(),
    }
}

fn valid(v: Option<SlotVerdict>) -> Option<SlotVerdict> {
    v.filter(|v| *v != SlotVerdict::Invalid)
}

/// Baseline verdicts of one run: (judge, pair, order) → first repeat's verdict.
type BaselineIndex<'a> = HashMap<(&'a str, &'a str, Order), Option<SlotVerdict>>;

fn baseline_index(calls: &[CallRecord]) -> BaselineIndex<'_> {
    calls
        .iter()
        .filter(|c| c.kind == ConditionKind::Baseline && c.repeat == 0)
        .map(|c| ((c.judge.as_str(), c.pair_id.as_str(), c.order), c.verdict))
        .collect()
}

/// The binary outcomes tested for a call of this condition: (description, outcome in one run).
fn outcomes(kind: ConditionKind, artifact: Option<&str>) -> Vec<&'static str> {
    match kind {
        ConditionKind::Baseline => vec!["the first slot wins"],
        ConditionKind::TieDetection if artifact == Some("position") => {
            vec!["the first slot wins (identical answers)"]
        }
        ConditionKind::TieDetection => vec!["the copy with the artifact wins"],
        ConditionKind::Shift => vec![
            "the verdict differs from the run's own baseline (a flip)",
            "the perturbed answer wins",
        ],
    }
}

/// Value of outcome `index` for `record` with verdict `v` (valid), or `None` when undefined.
fn outcome_value(
    record: &CallRecord,
    v: SlotVerdict,
    index: usize,
    baselines: &BaselineIndex<'_>,
) -> Option<bool> {
    match (record.kind, index) {
        (ConditionKind::Baseline, _) => Some(v == SlotVerdict::First),
        // Tie detection: `Ab` shows the artifact copy (or, for position, the same answer) first.
        (ConditionKind::TieDetection, _) => Some(match record.order {
            Order::Ab => v == SlotVerdict::First,
            Order::Ba => v == SlotVerdict::Second,
        }),
        (ConditionKind::Shift, 0) => {
            let base = baselines
                .get(&(record.judge.as_str(), record.pair_id.as_str(), record.order))
                .copied()
                .flatten();
            valid(base).map(|b| b != v)
        }
        (ConditionKind::Shift, _) => {
            let side = record.side?;
            let perturbed_first = (record.order == Order::Ab) == (side == Side::A);
            Some(if perturbed_first {
                v == SlotVerdict::First
            } else {
                v == SlotVerdict::Second
            })
        }
    }
}

fn condition_key(record: &CallRecord) -> String {
    match &record.artifact {
        Some(a) => format!("{}/{a}", record.kind.name()),
        None => record.kind.name().to_string(),
    }
}

fn wilson_value(successes: u64, n: u64) -> Value {
    if n == 0 {
        return Value {
            estimate: None,
            ci_low: None,
            ci_high: None,
            n,
        };
    }
    let ci = wilson(successes, n, 0.95);
    Value {
        estimate: Some(successes as f64 / n as f64),
        ci_low: Some(ci.low),
        ci_high: Some(ci.high),
        n,
    }
}

/// Compare two loaded runs.
pub fn compare(a: &RunData, b: &RunData) -> Comparison {
    let mut warnings = Vec::new();
    let (sa, sb) = (&a.summary, &b.summary);
    if sa.dataset.hash != sb.dataset.hash {
        warnings.push(format!(
            "The dataset hashes differ (A: {} `{}`, B: {} `{}`): only call ids present in both runs are paired, and metric changes compare different pairs.",
            sa.dataset.name,
            short(&sa.dataset.hash),
            sb.dataset.name,
            short(&sb.dataset.hash)
        ));
    }
    if sa.schema_version != sb.schema_version {
        warnings.push(format!(
            "The summaries have different schema versions (A: {}, B: {}).",
            sa.schema_version, sb.schema_version
        ));
    }
    if sa.seed != sb.seed {
        warnings.push(format!(
            "The seeds differ (A: {}, B: {}): perturbation texts and simulated judges differ, so a shared call id may carry a different perturbed answer.",
            sa.seed, sb.seed
        ));
    }
    // Pointwise juries aggregate their members' grades; the members are compared one by one.
    let juries: std::collections::BTreeSet<&str> = [sa, sb]
        .into_iter()
        .flat_map(|s| s.pointwise.iter().flat_map(|p| &p.juries))
        .map(|j| j.jury.as_str())
        .collect();
    if !juries.is_empty() {
        warnings.push(format!(
            "Pointwise juries are not compared ({}): their members are, one by one.",
            juries.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if sa.plan.artifacts != sb.plan.artifacts {
        warnings.push(
            "The runs audit different artifact lists; only shared artifacts are compared.".into(),
        );
    }
    for ca in &sa.judge_configs {
        if let Some(cb) = sb.judge_configs.iter().find(|c| c.name == ca.name) {
            for (what, x, y) in [
                ("model", &ca.model, &cb.model),
                ("backend", &ca.backend, &cb.backend),
                ("template", &ca.template, &cb.template),
                ("template sha256", &ca.template_sha256, &cb.template_sha256),
            ] {
                if x != y {
                    warnings.push(format!(
                        "Judge {}: the {what} differs (A: `{}`, B: `{}`).",
                        ca.name,
                        short(x),
                        short(y)
                    ));
                }
            }
        }
    }

    let index_b: HashMap<&str, &CallRecord> =
        b.calls.iter().map(|c| (c.call_id.as_str(), c)).collect();
    let (base_a, base_b) = (baseline_index(&a.calls), baseline_index(&b.calls));

    let mut judges = Vec::new();
    for ja in &sa.judges {
        let Some(jb) = sb.judges.iter().find(|j| j.name == ja.name) else {
            continue;
        };
        let baseline = vec![
            MetricChange::new(
                "noise_flip_rate",
                &ja.baseline.noise_flip_rate,
                &jb.baseline.noise_flip_rate,
            ),
            MetricChange::new(
                "position_consistency",
                &ja.baseline.position_consistency.rate,
                &jb.baseline.position_consistency.rate,
            ),
            MetricChange::new(
                "gold_accuracy",
                &ja.baseline.gold_accuracy,
                &jb.baseline.gold_accuracy,
            ),
        ];
        let artifacts = ja
            .artifacts
            .iter()
            .filter_map(|x| {
                let y = jb.artifacts.iter().find(|y| y.artifact == x.artifact)?;
                Some(ArtifactComparison {
                    artifact: x.artifact.clone(),
                    metrics: vec![
                        MetricChange::new("T", &x.tie_detection.score, &y.tie_detection.score),
                        MetricChange::new("WR", &x.winrate_shift.shift, &y.winrate_shift.shift),
                        MetricChange::new("flip_rate", &x.flip_rate.rate, &y.flip_rate.rate),
                        MetricChange::new(
                            "excess_flip_rate",
                            &x.excess_flip_rate,
                            &y.excess_flip_rate,
                        ),
                    ],
                })
            })
            .collect();

        // Matched calls, grouped by condition; BTreeMaps keep the output deterministic.
        struct Acc {
            kind: ConditionKind,
            artifact: Option<String>,
            shared: u64,
            unmatched: u64,
            changed: Vec<String>,
            pairs: std::collections::BTreeSet<String>,
            // Per outcome: (n, a, b, a_only, b_only).
            counts: Vec<[u64; 5]>,
        }
        let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
        let mut calls_a: Vec<&CallRecord> = a.calls.iter().filter(|c| c.judge == ja.name).collect();
        calls_a.sort_by(|x, y| x.call_id.cmp(&y.call_id));
        for ra in calls_a {
            let Some(rb) = index_b.get(ra.call_id.as_str()) else {
                continue;
            };
            let acc = groups.entry(condition_key(ra)).or_insert_with(|| Acc {
                kind: ra.kind,
                artifact: ra.artifact.clone(),
                shared: 0,
                unmatched: 0,
                changed: Vec::new(),
                pairs: Default::default(),
                counts: vec![[0; 5]; outcomes(ra.kind, ra.artifact.as_deref()).len()],
            });
            let (Some(va), Some(vb)) = (valid(ra.verdict), valid(rb.verdict)) else {
                acc.unmatched += 1;
                continue;
            };
            acc.shared += 1;
            if va != vb {
                acc.changed.push(ra.call_id.clone());
                acc.pairs.insert(ra.pair_id.clone());
            }
            for (i, c) in acc.counts.iter_mut().enumerate() {
                let (Some(x), Some(y)) = (
                    outcome_value(ra, va, i, &base_a),
                    outcome_value(rb, vb, i, &base_b),
                ) else {
                    continue;
                };
                c[0] += 1;
                c[1] += u64::from(x);
                c[2] += u64::from(y);
                c[3] += u64::from(x && !y);
                c[4] += u64::from(y && !x);
            }
        }
        // Baseline first, then artifacts in plan order with tie detection before shift.
        let order = |key: &str, acc: &Acc| {
            let artifact_rank = acc
                .artifact
                .as_ref()
                .and_then(|x| sa.plan.artifacts.iter().position(|y| y == x))
                .unwrap_or(usize::MAX);
            (
                acc.kind != ConditionKind::Baseline,
                artifact_rank,
                acc.kind,
                key.to_string(),
            )
        };
        let mut keyed: Vec<(String, Acc)> = groups.into_iter().collect();
        keyed.sort_by_key(|(k, acc)| order(k, acc));
        let conditions = keyed
            .into_iter()
            .map(|(key, acc)| {
                let names = outcomes(acc.kind, acc.artifact.as_deref());
                let tests = names
                    .iter()
                    .zip(&acc.counts)
                    .map(|(name, c)| PairedTest {
                        outcome: name.to_string(),
                        n: c[0],
                        a: wilson_value(c[1], c[0]),
                        b: wilson_value(c[2], c[0]),
                        a_only: c[3],
                        b_only: c[4],
                        p_value: mcnemar_exact(c[3], c[4]),
                        p_bonferroni: 1.0,
                    })
                    .collect();
                ConditionComparison {
                    condition: key,
                    shared: acc.shared,
                    unmatched: acc.unmatched,
                    changed: acc.changed.len() as u64,
                    changed_calls: acc.changed.into_iter().take(CHANGED_CAP).collect(),
                    changed_pairs: acc.pairs.into_iter().collect(),
                    tests,
                }
            })
            .collect();
        judges.push(JudgeComparison {
            name: ja.name.clone(),
            simulated: ja.simulated || jb.simulated,
            verdict: (
                ja.trust.verdict.label().into(),
                jb.trust.verdict.label().into(),
            ),
            baseline,
            artifacts,
            conditions,
        });
    }
    let mut pointwise_judges = pointwise_judges(a, b, &index_b);
    let pointwise_conditions = || {
        pointwise_judges
            .iter()
            .flat_map(|j| &j.criteria)
            .flat_map(|c| &c.conditions)
    };
    let tests: usize = judges
        .iter()
        .flat_map(|j| j.conditions.iter())
        .map(|c| c.tests.len())
        .sum::<usize>()
        + pointwise_conditions()
            .map(|c| usize::from(c.score.is_some()) + usize::from(c.label.is_some()))
            .sum::<usize>();
    let adjust = |p: f64| (p * tests as f64).min(1.0);
    for judge in &mut judges {
        for condition in &mut judge.conditions {
            for test in &mut condition.tests {
                test.p_bonferroni = adjust(test.p_value);
            }
        }
    }
    for condition in pointwise_judges
        .iter_mut()
        .flat_map(|j| &mut j.criteria)
        .flat_map(|c| &mut c.conditions)
    {
        if let Some(t) = &mut condition.score {
            t.p_bonferroni = adjust(t.p_value);
        }
        if let Some(t) = &mut condition.label {
            t.p_bonferroni = adjust(t.p_value);
        }
    }
    // Pairwise and pointwise judge names, each once.
    let names = |s: &Summary, other: &Summary| -> Vec<String> {
        let all = |s: &Summary| -> Vec<String> {
            s.judges
                .iter()
                .map(|j| j.name.clone())
                .chain(
                    s.pointwise
                        .iter()
                        .flat_map(|p| &p.judges)
                        .map(|j| j.judge.clone()),
                )
                .collect()
        };
        let theirs = all(other);
        all(s).into_iter().filter(|n| !theirs.contains(n)).collect()
    };
    let judges_only_in_a = names(sa, sb);
    let judges_only_in_b = names(sb, sa);
    let shared_ids = a
        .calls
        .iter()
        .filter(|c| index_b.contains_key(c.call_id.as_str()))
        .count();
    if shared_ids < a.calls.len().max(b.calls.len()) {
        warnings.push(format!(
            "{} call ids are in both runs; A has {} calls and B {}: unmatched calls are not paired.",
            shared_ids,
            a.calls.len(),
            b.calls.len()
        ));
    }
    Comparison {
        run_a: meta(a),
        run_b: meta(b),
        warnings,
        judges_only_in_a,
        judges_only_in_b,
        tests,
        judges,
        pointwise_judges,
    }
}

/// The unit a pointwise metric is read in (it decides how reports print it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricUnit {
    /// Points on the judge's own scale (a mean score shift, a run-to-run SD).
    Points,
    /// A share in [0, 1] (accuracy, a flip rate, the invalid share).
    Share,
    /// A coefficient (Cohen's κ, Spearman's ρ, quadratic-weighted κ).
    Coefficient,
}

/// One pointwise metric in both runs: a [`MetricChange`] and the unit it reads in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseMetric {
    /// The metric (`mean_score_shift`, `positive_to_negative`, `negative_to_positive`,
    /// `gold_accuracy`, `gold_kappa`, `yes_bias`, `spearman`, `quadratic_kappa`,
    /// `run_to_run_sd`, `invalid_share`) in both runs.
    #[serde(flatten)]
    pub change: MetricChange,
    /// How the values read.
    pub unit: MetricUnit,
}

impl PointwiseMetric {
    fn new(metric: &str, unit: MetricUnit, a: Value, b: Value) -> PointwiseMetric {
        PointwiseMetric {
            change: MetricChange::of_values(metric, a, b),
            unit,
        }
    }
}

/// A value with an optional interval; `NaN`s (an undefined estimate or bound) become `None`.
fn pointwise_value(estimate: f64, interval: Option<Interval>, n: u64) -> Value {
    let finite = |x: f64| x.is_finite().then_some(x);
    let estimate = finite(estimate);
    Value {
        estimate,
        ci_low: estimate.and(interval.and_then(|i| finite(i.low))),
        ci_high: estimate.and(interval.and_then(|i| finite(i.high))),
        n,
    }
}

fn rate_value(rate: &Rate) -> Value {
    pointwise_value(rate.rate, Some(rate.interval), rate.n)
}

/// The change of a score criterion's grades on the calls both runs made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreChangeTest {
    /// Mean grade in run A over the matched calls.
    pub mean_a: f64,
    /// Mean grade in run B over the matched calls.
    pub mean_b: f64,
    /// Mean of B − A over the matched calls.
    pub mean_change: f64,
    /// Calls whose grade went up in B / down in B.
    pub up: u64,
    /// See `up`.
    pub down: u64,
    /// Pairs whose mean change is not zero (the Wilcoxon test's sample).
    pub pairs_nonzero: u64,
    /// Exact (up to 400 pairs, else normal) two-sided Wilcoxon signed-rank p-value on the pairs'
    /// mean changes: the pair is the unit, as in the audit's own score-shift test.
    pub p_value: f64,
    /// Bonferroni-adjusted over every paired test of this comparison.
    pub p_bonferroni: f64,
}

/// The matched calls of one pointwise judge, criterion and condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseConditionComparison {
    /// `baseline` or `grade/<artifact>`.
    pub condition: String,
    /// Call ids present in both runs with a valid grade of this criterion in both.
    pub shared: u64,
    /// Call ids present in both runs where either grade is unparseable, off the scale or missing
    /// (the call failed): counted here, never paired.
    pub unmatched: u64,
    /// Shared calls whose grade differs between the runs.
    pub changed: u64,
    /// The first [`CHANGED_CAP`] of them, by call id.
    pub changed_calls: Vec<String>,
    /// A score criterion: the grade change and its test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreChangeTest>,
    /// A label criterion: "the grade is the positive label" tested by exact McNemar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<PairedTest>,
}

/// One artifact's metrics for one criterion of a pointwise judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseArtifactComparison {
    /// Artifact id.
    pub artifact: String,
    /// The mean score shift, or the two flip directions of a label criterion.
    pub metrics: Vec<PointwiseMetric>,
}

/// Everything compared for one criterion of a pointwise judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseCriterionComparison {
    /// Criterion name.
    pub criterion: String,
    /// The scale in run A.
    pub scale: GradeScale,
    /// Per-criterion metrics (gold agreement, run-to-run SD, invalid share).
    pub metrics: Vec<PointwiseMetric>,
    /// Per-artifact metrics (artifacts in both runs, in A's order): the mean score shift, or the
    /// two flip directions of a label criterion.
    pub artifacts: Vec<PointwiseArtifactComparison>,
    /// Matched calls per condition: baseline first, then artifacts in A's plan order.
    pub conditions: Vec<PointwiseConditionComparison>,
}

/// Everything compared for one pointwise judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointwiseJudgeComparison {
    /// Judge name.
    pub name: String,
    /// True when the judge is simulated in either run.
    pub simulated: bool,
    /// Trust verdict in A and B.
    pub verdict: (String, String),
    /// Criteria present in both runs with the same scale, in A's order.
    pub criteria: Vec<PointwiseCriterionComparison>,
    /// Criteria not compared, with the reason (only in one run, or the scale changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_criteria: Vec<String>,
}

/// A criterion's valid grade in a record: the score, or whether the label is the positive one.
#[derive(Clone, Copy, PartialEq)]
enum ValidGrade {
    Score(f64),
    Positive(bool),
}

fn valid_grade(record: &CallRecord, criterion: &str, scale: &GradeScale) -> Option<ValidGrade> {
    let grade = record
        .grades
        .as_ref()?
        .iter()
        .find(|g| g.name == criterion)?;
    match (&grade.grade, scale) {
        (Grade::Score(s), GradeScale::Score { .. }) => Some(ValidGrade::Score(*s)),
        (Grade::Label(l), GradeScale::Label { positive, .. }) => {
            Some(ValidGrade::Positive(l == positive))
        }
        _ => None,
    }
}

fn pointwise_condition(record: &CallRecord) -> String {
    match &record.artifact {
        Some(a) if record.kind != ConditionKind::Baseline => format!("grade/{a}"),
        _ => "baseline".into(),
    }
}

/// The metrics of one criterion in both runs.
fn criterion_metrics(x: &CriterionSummary, y: &CriterionSummary) -> Vec<PointwiseMetric> {
    let mut out = Vec::new();
    if let (Some(p), Some(q)) = (&x.label_accuracy, &y.label_accuracy) {
        out.push(PointwiseMetric::new(
            "gold_accuracy",
            MetricUnit::Share,
            pointwise_value(p.accuracy, None, p.n),
            pointwise_value(q.accuracy, None, q.n),
        ));
        out.push(PointwiseMetric::new(
            "gold_kappa",
            MetricUnit::Coefficient,
            pointwise_value(p.kappa, None, p.n),
            pointwise_value(q.kappa, None, q.n),
        ));
        out.push(PointwiseMetric::new(
            "yes_bias",
            MetricUnit::Share,
            rate_value(&p.yes_bias),
            rate_value(&q.yes_bias),
        ));
    }
    if let (Some(p), Some(q)) = (&x.score_agreement, &y.score_agreement) {
        for (name, f) in [
            (
                "spearman",
                (|s: &ScoreAgreement| s.spearman) as fn(&ScoreAgreement) -> f64,
            ),
            ("quadratic_kappa", |s| s.quadratic_kappa),
        ] {
            out.push(PointwiseMetric::new(
                name,
                MetricUnit::Coefficient,
                pointwise_value(f(p), None, p.n),
                pointwise_value(f(q), None, q.n),
            ));
        }
    }
    if let (Some(p), Some(q)) = (&x.scale_use, &y.scale_use) {
        out.push(PointwiseMetric::new(
            "run_to_run_sd",
            MetricUnit::Points,
            pointwise_value(p.run_to_run_sd, None, x.calls),
            pointwise_value(q.run_to_run_sd, None, y.calls),
        ));
    }
    let invalid = |c: &CriterionSummary| {
        let bad = c.invalid.unparseable + c.invalid.out_of_range;
        let share = if c.calls == 0 {
            f64::NAN
        } else {
            bad as f64 / c.calls as f64
        };
        pointwise_value(share, Some(wilson(bad, c.calls, 0.95)), c.calls)
    };
    out.push(PointwiseMetric::new(
        "invalid_share",
        MetricUnit::Share,
        invalid(x),
        invalid(y),
    ));
    out
}

/// The per-artifact metrics of one criterion in both runs.
fn artifact_metrics(
    x: &CriterionSummary,
    y: &CriterionSummary,
) -> Vec<PointwiseArtifactComparison> {
    let mut out = Vec::new();
    for s in &x.score_shifts {
        if let Some(t) = y.score_shifts.iter().find(|t| t.artifact == s.artifact) {
            out.push(PointwiseArtifactComparison {
                artifact: s.artifact.clone(),
                metrics: vec![PointwiseMetric::new(
                    "mean_score_shift",
                    MetricUnit::Points,
                    pointwise_value(s.mean_shift, Some(s.interval), s.n),
                    pointwise_value(t.mean_shift, Some(t.interval), t.n),
                )],
            });
        }
    }
    for f in &x.label_flips {
        if let Some(g) = y.label_flips.iter().find(|g| g.artifact == f.artifact) {
            out.push(PointwiseArtifactComparison {
                artifact: f.artifact.clone(),
                metrics: vec![
                    PointwiseMetric::new(
                        "positive_to_negative",
                        MetricUnit::Share,
                        rate_value(&f.positive_to_negative),
                        rate_value(&g.positive_to_negative),
                    ),
                    PointwiseMetric::new(
                        "negative_to_positive",
                        MetricUnit::Share,
                        rate_value(&f.negative_to_positive),
                        rate_value(&g.negative_to_positive),
                    ),
                ],
            });
        }
    }
    out
}

/// Matched calls of one criterion, grouped by condition.
fn pointwise_conditions(
    judge: &str,
    criterion: &str,
    scale: &GradeScale,
    a: &RunData,
    index_b: &HashMap<&str, &CallRecord>,
    artifact_order: &[String],
) -> Vec<PointwiseConditionComparison> {
    #[derive(Default)]
    struct Acc {
        shared: u64,
        unmatched: u64,
        changed: Vec<String>,
        // Score: (a, b) per matched call, and per pair the sum and count of B − A.
        scores: Vec<(f64, f64)>,
        pairs: BTreeMap<String, (f64, u64)>,
        // Label: (n, a positive, b positive, a only, b only).
        labels: [u64; 5],
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut calls: Vec<&CallRecord> = a.calls.iter().filter(|c| c.judge == judge).collect();
    calls.sort_by(|x, y| x.call_id.cmp(&y.call_id));
    for ra in calls {
        let Some(rb) = index_b.get(ra.call_id.as_str()) else {
            continue;
        };
        let acc = groups.entry(pointwise_condition(ra)).or_default();
        let (Some(ga), Some(gb)) = (
            valid_grade(ra, criterion, scale),
            valid_grade(rb, criterion, scale),
        ) else {
            acc.unmatched += 1;
            continue;
        };
        acc.shared += 1;
        if ga != gb {
            acc.changed.push(ra.call_id.clone());
        }
        match (ga, gb) {
            (ValidGrade::Score(x), ValidGrade::Score(y)) => {
                acc.scores.push((x, y));
                let pair = acc.pairs.entry(ra.pair_id.clone()).or_default();
                pair.0 += y - x;
                pair.1 += 1;
            }
            (ValidGrade::Positive(x), ValidGrade::Positive(y)) => {
                acc.labels[0] += 1;
                acc.labels[1] += u64::from(x);
                acc.labels[2] += u64::from(y);
                acc.labels[3] += u64::from(x && !y);
                acc.labels[4] += u64::from(y && !x);
            }
            _ => unreachable!("one scale gives one kind of grade"),
        }
    }
    let rank = |key: &str| {
        let artifact = key.strip_prefix("grade/");
        (
            artifact.is_some(),
            artifact
                .and_then(|x| artifact_order.iter().position(|y| y == x))
                .unwrap_or(usize::MAX),
            key.to_string(),
        )
    };
    let mut keyed: Vec<(String, Acc)> = groups.into_iter().collect();
    keyed.sort_by_key(|(k, _)| rank(k));
    keyed
        .into_iter()
        .map(|(condition, acc)| {
            let score = matches!(scale, GradeScale::Score { .. }).then(|| {
                let n = acc.scores.len().max(1) as f64;
                let mean_a = acc.scores.iter().map(|s| s.0).sum::<f64>() / n;
                let mean_b = acc.scores.iter().map(|s| s.1).sum::<f64>() / n;
                let pair_means: Vec<f64> = acc.pairs.values().map(|(s, c)| s / *c as f64).collect();
                let test = wilcoxon_signed_rank(&pair_means);
                let empty = acc.scores.is_empty();
                ScoreChangeTest {
                    mean_a: if empty { f64::NAN } else { mean_a },
                    mean_b: if empty { f64::NAN } else { mean_b },
                    mean_change: if empty { f64::NAN } else { mean_b - mean_a },
                    up: acc.scores.iter().filter(|s| s.1 > s.0).count() as u64,
                    down: acc.scores.iter().filter(|s| s.1 < s.0).count() as u64,
                    pairs_nonzero: test.n as u64,
                    p_value: test.p_value,
                    p_bonferroni: 1.0,
                }
            });
            let label = matches!(scale, GradeScale::Label { .. }).then(|| {
                let c = acc.labels;
                PairedTest {
                    outcome: "the positive label".into(),
                    n: c[0],
                    a: wilson_value(c[1], c[0]),
                    b: wilson_value(c[2], c[0]),
                    a_only: c[3],
                    b_only: c[4],
                    p_value: mcnemar_exact(c[3], c[4]),
                    p_bonferroni: 1.0,
                }
            });
            PointwiseConditionComparison {
                condition,
                shared: acc.shared,
                unmatched: acc.unmatched,
                changed: acc.changed.len() as u64,
                changed_calls: acc.changed.into_iter().take(CHANGED_CAP).collect(),
                score,
                label,
            }
        })
        .collect()
}

/// Every pointwise judge present in both runs, compared criterion by criterion.
fn pointwise_judges(
    a: &RunData,
    b: &RunData,
    index_b: &HashMap<&str, &CallRecord>,
) -> Vec<PointwiseJudgeComparison> {
    let (Some(pa), Some(pb)) = (&a.summary.pointwise, &b.summary.pointwise) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ja in &pa.judges {
        let Some(jb) = pb.judges.iter().find(|j| j.judge == ja.judge) else {
            continue;
        };
        let mut criteria = Vec::new();
        let mut skipped = Vec::new();
        for x in &ja.criteria {
            let Some(y) = jb.criteria.iter().find(|y| y.name == x.name) else {
                skipped.push(format!("{}: only in A", x.name));
                continue;
            };
            if x.scale != y.scale {
                skipped.push(format!("{}: the scale differs between the runs", x.name));
                continue;
            }
            criteria.push(PointwiseCriterionComparison {
                criterion: x.name.clone(),
                scale: x.scale.clone(),
                metrics: criterion_metrics(x, y),
                artifacts: artifact_metrics(x, y),
                conditions: pointwise_conditions(
                    &ja.judge,
                    &x.name,
                    &x.scale,
                    a,
                    index_b,
                    &a.summary.plan.artifacts,
                ),
            });
        }
        for y in &jb.criteria {
            if !ja.criteria.iter().any(|x| x.name == y.name) {
                skipped.push(format!("{}: only in B", y.name));
            }
        }
        out.push(PointwiseJudgeComparison {
            name: ja.judge.clone(),
            simulated: ja.simulated || jb.simulated,
            verdict: (
                ja.trust.verdict.label().into(),
                jb.trust.verdict.label().into(),
            ),
            criteria,
            skipped_criteria: skipped,
        });
    }
    out
}

/// A sha256 shortened to its first 12 hex digits (other text unchanged), for messages.
pub fn short(s: &str) -> String {
    if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        s[..12].to_string()
    } else {
        s.to_string()
    }
}
