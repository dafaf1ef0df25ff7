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
//! [`crate::report::compare`] renders the typed [`Comparison`]; it computes nothing.

use crate::analyze::Estimate;
use crate::analyze::summary::Summary;
use crate::design::{ConditionKind, Order, Side};
use crate::judge::SlotVerdict;
use crate::run::store::RunStore;
use crate::run::{CallRecord, read_calls};
use crate::stats::{mcnemar_exact, wilson};
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
        MetricChange {
            metric: metric.into(),
            a: a.into(),
            b: b.into(),
            delta: match (a.estimate, b.estimate) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            },
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
    // Pointwise grades are not verdicts: saying so beats a comparison that silently leaves
    // those judges out.
    let pointwise: std::collections::BTreeSet<&str> = [sa, sb]
        .into_iter()
        .flat_map(|s| s.pointwise.iter().flat_map(|p| &p.judges))
        .map(|j| j.judge.as_str())
        .collect();
    if !pointwise.is_empty() {
        warnings.push(format!(
            "Pointwise judges are not compared ({}): `compare` pairs pairwise verdicts only; read each run's pointwise section for their score shifts and label flips.",
            pointwise.into_iter().collect::<Vec<_>>().join(", ")
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
    let tests: usize = judges
        .iter()
        .flat_map(|j| j.conditions.iter())
        .map(|c| c.tests.len())
        .sum();
    for judge in &mut judges {
        for condition in &mut judge.conditions {
            for test in &mut condition.tests {
                test.p_bonferroni = (test.p_value * tests as f64).min(1.0);
            }
        }
    }
    let names = |s: &Summary, other: &Summary| -> Vec<String> {
        s.judges
            .iter()
            .filter(|j| !other.judges.iter().any(|o| o.name == j.name))
            .map(|j| j.name.clone())
            .collect()
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
    }
}

/// A sha256 shortened to its first 12 hex digits (other text unchanged), for messages.
pub fn short(s: &str) -> String {
    if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        s[..12].to_string()
    } else {
        s.to_string()
    }
}
