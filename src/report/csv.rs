//! `results.csv`: every estimate in long format, one row per judge × artifact × metric, for
//! spreadsheets and pipelines.
//!
//! Columns: `judge, simulated, artifact, condition, metric, n, estimate, ci_low, ci_high, p_value,
//! p_adjusted, kind`. Cells that do not apply are empty. Rates and effects are fractions (0.25,
//! not 25%); count metrics (`*_count`) put the count in `estimate` and its denominator in `n`.
//! Baseline rows have an empty `artifact` and condition `baseline`.
//!
//! `kind` says what the `judge` cell names: `judge`, `jury` (the same rows as a judge), `pair`
//! (two judges `a + b`, condition `agreement`: percent agreement, Cohen's κ, Scott's π), `panel`
//! (every judge, condition `agreement`: Fleiss' κ, Krippendorff's α) or `composer` (the suggested
//! jury's members `a + b + c`, condition `composer`: its T and WR per artifact), or, last,
//! `pointwise_judge` / `pointwise_jury` (a pointwise judge or jury, `judge / criterion` for a
//! rubric criterion: score shifts and label flips per artifact under condition `shift`, gold
//! agreement, scale use, calibration and invalid grades under `baseline`; see
//! [`super::pointwise::csv_rows`]), then `mitigation` (post hoc: `judge / mitigation`, condition
//! `post_hoc_mitigation`, or `new_call_mitigation` for `[mitigations]` audited with new calls: cost multipliers, gold accuracy and its change, residual bias, rank and
//! whether it is recommended, and for the judge's own mitigations the residual T, WR, flip rate
//! and the paired flip test per artifact; see [`super::mitigation::csv_rows`]), then `template`
//! (condition `template_sensitivity`: agreement across a judge's template variants, per-pair
//! flip rates, invalid counts; see [`super::templates::csv_rows`]).

use super::Summary;
use crate::analyze::{Estimate, JudgeKind, JudgeResult};
use std::path::Path;

/// The header row.
pub const COLUMNS: [&str; 12] = [
    "judge",
    "simulated",
    "artifact",
    "condition",
    "metric",
    "n",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "kind",
];

/// Metrics written per artifact (plus `planted_T` for simulated judges with a planted value, and
/// `effective_items_count` for artifacts that change text: n = answers perturbed, estimate =
/// those counted in the estimates).
pub const ARTIFACT_METRICS: [&str; 10] = [
    "T",
    "WR",
    "flip_rate",
    "flips_toward_count",
    "flips_away_count",
    "excess_flip_rate",
    "robustness_rate",
    "mde_T",
    "mde_T_family",
    "mde_excess_flip",
];

/// Metrics written per judge for the baseline.
pub const BASELINE_METRICS: [&str; 12] = [
    "position_consistency",
    "position_prefers_first_count",
    "position_prefers_second_count",
    "position_other_count",
    "position_error_count",
    "noise_flip_rate",
    "gold_accuracy",
    "baseline_invalid_count",
    "calls_failed_count",
    "consistency_rate",
    "msc",
    "gold_kappa",
];

/// One row of `results.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Judge name.
    pub judge: String,
    /// True for simulated judges.
    pub simulated: bool,
    /// Artifact id (empty for baseline rows).
    pub artifact: String,
    /// `tie_detection`, `shift` or `baseline`.
    pub condition: &'static str,
    /// Metric name.
    pub metric: &'static str,
    /// Observations (or the denominator of a count).
    pub n: Option<u64>,
    /// Point estimate (or the count).
    pub estimate: Option<f64>,
    /// Lower interval bound.
    pub ci_low: Option<f64>,
    /// Upper interval bound.
    pub ci_high: Option<f64>,
    /// Raw p-value.
    pub p_value: Option<f64>,
    /// Holm-adjusted p-value.
    pub p_adjusted: Option<f64>,
    /// What `judge` names: `judge`, `jury`, `pair`, `panel`, `composer`, `pointwise_judge`,
    /// `pointwise_jury`, `mitigation` or `template`.
    pub kind: &'static str,
}

impl Row {
    fn estimate(
        j: &JudgeResult,
        artifact: &str,
        condition: &'static str,
        metric: &'static str,
        e: &Estimate,
    ) -> Row {
        Row {
            judge: j.name.clone(),
            simulated: j.simulated,
            artifact: artifact.to_string(),
            condition,
            metric,
            n: Some(e.n),
            estimate: e.estimate,
            ci_low: e.ci_low,
            ci_high: e.ci_high,
            p_value: e.p_value,
            p_adjusted: e.p_adjusted,
            kind: kind_of(j),
        }
    }

    fn value(
        j: &JudgeResult,
        artifact: &str,
        condition: &'static str,
        metric: &'static str,
        n: Option<u64>,
        value: Option<f64>,
    ) -> Row {
        Row {
            judge: j.name.clone(),
            simulated: j.simulated,
            artifact: artifact.to_string(),
            condition,
            metric,
            n,
            estimate: value,
            ci_low: None,
            ci_high: None,
            p_value: None,
            p_adjusted: None,
            kind: kind_of(j),
        }
    }

    /// A row about something other than one judge (agreement, composer).
    fn other(
        kind: &'static str,
        simulated: bool,
        who: String,
        artifact: &str,
        condition: &'static str,
        metric: &'static str,
        e: &Estimate,
    ) -> Row {
        Row {
            judge: who,
            simulated,
            artifact: artifact.to_string(),
            condition,
            metric,
            n: Some(e.n),
            estimate: e.estimate,
            ci_low: e.ci_low,
            ci_high: e.ci_high,
            p_value: e.p_value,
            p_adjusted: e.p_adjusted,
            kind,
        }
    }
}

fn kind_of(j: &JudgeResult) -> &'static str {
    match j.kind {
        JudgeKind::Judge => "judge",
        JudgeKind::Jury => "jury",
    }
}

/// A bare value as an estimate without interval.
fn bare(n: u64, v: Option<f64>) -> Estimate {
    Estimate {
        estimate: v,
        n,
        ..Estimate::default()
    }
}

/// Every row: judges in summary order (artifacts in result order, then the judge's baseline),
/// then juries the same way, then agreement between judges, then the composer's suggestion.
pub fn rows(summary: &Summary) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in summary.judges.iter().chain(&summary.juries) {
        for a in &j.artifacts {
            let id = a.artifact.as_str();
            // Position effects are measured from the two baseline orders, not from shift calls.
            let shift = if id == "position" {
                "baseline"
            } else {
                "shift"
            };
            let flips = &a.flip_rate;
            rows.push(Row::estimate(
                j,
                id,
                "tie_detection",
                "T",
                &a.tie_detection.score,
            ));
            rows.push(Row::estimate(j, id, shift, "WR", &a.winrate_shift.shift));
            rows.push(Row::estimate(j, id, shift, "flip_rate", &flips.rate));
            rows.push(Row::value(
                j,
                id,
                shift,
                "flips_toward_count",
                Some(flips.rate.n),
                Some(flips.toward as f64),
            ));
            rows.push(Row::value(
                j,
                id,
                shift,
                "flips_away_count",
                Some(flips.rate.n),
                Some(flips.away as f64),
            ));
            rows.push(Row::estimate(
                j,
                id,
                shift,
                "excess_flip_rate",
                &a.excess_flip_rate,
            ));
            rows.push(Row::value(
                j,
                id,
                shift,
                "robustness_rate",
                Some(flips.rate.n),
                a.robustness_rate,
            ));
            for (metric, v) in [
                ("mde_T", a.mde.t),
                ("mde_T_family", a.mde.t_family),
                ("mde_excess_flip", a.mde.excess_flip),
            ] {
                let n = if metric == "mde_excess_flip" {
                    a.mde.comparisons
                } else {
                    a.mde.pairs
                };
                rows.push(Row::value(j, id, shift, metric, Some(n), v));
            }
            if let Some(c) = &a.perturbation {
                // n = answers the artifact was applied to; estimate = those counted (changed
                // and not already carrying the artifact).
                rows.push(Row::value(
                    j,
                    id,
                    "perturbation",
                    "effective_items_count",
                    Some(c.targets),
                    Some(c.effective as f64),
                ));
                if c.rejected_share.is_some() {
                    rows.push(Row::value(
                        j,
                        id,
                        "perturbation",
                        "rewrite_rejected_count",
                        Some(c.targets),
                        Some(c.rejected as f64),
                    ));
                }
            }
            if let Some(p) = &a.planted {
                rows.push(Row::value(
                    j,
                    id,
                    "tie_detection",
                    "planted_T",
                    None,
                    Some(p.value),
                ));
            }
        }
        let b = &j.baseline;
        let pc = &b.position_consistency;
        let pairs = Some(pc.n + pc.error);
        let sc = &b.self_consistency;
        // In BASELINE_METRICS order: estimates with intervals, counts with their denominators.
        rows.push(Row::estimate(
            j,
            "",
            "baseline",
            "position_consistency",
            &pc.rate,
        ));
        for (metric, n, v) in [
            ("position_prefers_first_count", pairs, pc.prefers_first),
            ("position_prefers_second_count", pairs, pc.prefers_second),
            ("position_other_count", pairs, pc.other),
            ("position_error_count", pairs, pc.error),
        ] {
            rows.push(Row::value(j, "", "baseline", metric, n, Some(v as f64)));
        }
        for (metric, e) in [
            ("noise_flip_rate", &b.noise_flip_rate),
            ("gold_accuracy", &b.gold_accuracy),
        ] {
            rows.push(Row::estimate(j, "", "baseline", metric, e));
        }
        for (metric, n, v) in [
            ("baseline_invalid_count", None, b.invalid),
            ("calls_failed_count", Some(j.calls.planned), j.calls.failed),
        ] {
            rows.push(Row::value(j, "", "baseline", metric, n, Some(v as f64)));
        }
        // Only for an incomplete run, so a finished run's file is unchanged.
        if j.calls.pending > 0 {
            rows.push(Row::value(
                j,
                "",
                "baseline",
                "calls_pending_count",
                Some(j.calls.planned),
                Some(j.calls.pending as f64),
            ));
        }
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "consistency_rate",
            Some(b.noise_flip_rate.n),
            sc.consistency_rate,
        ));
        for (metric, e) in [("msc", &sc.msc), ("gold_kappa", &b.gold_kappa)] {
            rows.push(Row::estimate(j, "", "baseline", metric, e));
        }
    }
    // A row about several judges is simulated when any of them is.
    let simulated = |names: &[&String]| {
        summary
            .judges
            .iter()
            .any(|j| j.simulated && names.contains(&&j.name))
    };
    if let Some(a) = &summary.agreement {
        for p in &a.pairwise {
            let who = format!("{} + {}", p.judge_a, p.judge_b);
            let sim = simulated(&[&p.judge_a, &p.judge_b]);
            rows.push(Row::other(
                "pair",
                sim,
                who.clone(),
                "",
                "agreement",
                "percent_agreement",
                &bare(p.n, p.percent),
            ));
            rows.push(Row::other(
                "pair",
                sim,
                who.clone(),
                "",
                "agreement",
                "cohen_kappa",
                &p.cohen_kappa,
            ));
            rows.push(Row::other(
                "pair",
                sim,
                who,
                "",
                "agreement",
                "scott_pi",
                &p.scott_pi,
            ));
        }
        for (metric, r) in [
            ("fleiss_kappa", &a.fleiss_kappa),
            ("krippendorff_alpha", &a.krippendorff_alpha),
        ] {
            if let Some(r) = r {
                let who = if r.raters.is_empty() {
                    a.judges.join(" + ")
                } else {
                    r.raters.join(" + ")
                };
                let sim = simulated(&a.judges.iter().collect::<Vec<_>>());
                rows.push(Row::other(
                    "panel",
                    sim,
                    who,
                    "",
                    "agreement",
                    metric,
                    &r.value,
                ));
            }
        }
    }
    if let Some(c) = summary.jury.as_ref().and_then(|j| j.composer.as_ref()) {
        let who = c.suggestion.members.join(" + ");
        let sim = simulated(&c.suggestion.members.iter().collect::<Vec<_>>());
        for (k, artifact) in c.artifacts.iter().enumerate() {
            for (metric, values) in [("T", &c.suggestion.t), ("WR", &c.suggestion.wr)] {
                let v = values.get(k).copied().flatten();
                let mut row = Row::other(
                    "composer",
                    sim,
                    who.clone(),
                    artifact,
                    "composer",
                    metric,
                    &bare(0, v),
                );
                // The composer reports no sample size of its own.
                row.n = None;
                rows.push(row);
            }
        }
    }
    if let Some(p) = &summary.pointwise {
        rows.extend(super::pointwise::csv_rows(p));
    }
    if let Some(m) = &summary.mitigations {
        rows.extend(super::mitigation::csv_rows(m));
    }
    if let Some(t) = &summary.templates {
        rows.extend(super::templates::csv_rows(t));
    }
    rows
}

fn cell_f(v: Option<f64>) -> String {
    // `{}` prints the shortest representation that round-trips: exact and deterministic.
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x}"))
        .unwrap_or_default()
}

/// Render `results.csv` as bytes.
pub fn render(summary: &Summary) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(COLUMNS)?;
    for r in rows(summary) {
        writer.write_record([
            r.judge,
            r.simulated.to_string(),
            r.artifact,
            r.condition.to_string(),
            r.metric.to_string(),
            r.n.map(|n| n.to_string()).unwrap_or_default(),
            cell_f(r.estimate),
            cell_f(r.ci_low),
            cell_f(r.ci_high),
            cell_f(r.p_value),
            cell_f(r.p_adjusted),
            r.kind.to_string(),
        ])?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// `results.csv`.
pub struct CsvExporter;

impl super::Exporter for CsvExporter {
    fn format(&self) -> super::Format {
        super::Format::Csv
    }

    fn file_name(&self) -> &'static str {
        "results.csv"
    }

    fn render(&self, view: &super::ReportView<'_>) -> std::io::Result<Vec<u8>> {
        render(view.summary).map_err(std::io::Error::other)
    }
}

/// Write `results.csv`.
pub fn write(summary: &Summary, path: &Path) -> std::io::Result<()> {
    let bytes = render(summary).map_err(std::io::Error::other)?;
    std::fs::write(path, bytes)
}
