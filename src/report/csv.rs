//! `results.csv`: every estimate in long format, one row per judge × artifact × metric, for
//! spreadsheets and pipelines.
//!
//! Columns: `judge, simulated, artifact, condition, metric, n, estimate, ci_low, ci_high, p_value,
//! p_adjusted`. Cells that do not apply are empty. Rates and effects are fractions (0.25, not
//! 25%); count metrics (`*_count`) put the count in `estimate` and its denominator in `n`.
//! Baseline rows have an empty `artifact` and condition `baseline`.

use super::Summary;
use crate::analyze::{Estimate, JudgeResult};
use std::path::Path;

/// The header row.
pub const COLUMNS: [&str; 11] = [
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
];

/// Metrics written per artifact (plus `planted_T` for simulated judges with a planted value, and
/// `effective_items_count` for artifacts that change text: n = answers perturbed, estimate =
/// those counted in the estimates).
pub const ARTIFACT_METRICS: [&str; 7] = [
    "T",
    "WR",
    "flip_rate",
    "flips_toward_count",
    "flips_away_count",
    "excess_flip_rate",
    "robustness_rate",
];

/// Metrics written per judge for the baseline.
pub const BASELINE_METRICS: [&str; 9] = [
    "position_consistency",
    "position_prefers_first_count",
    "position_prefers_second_count",
    "position_other_count",
    "position_error_count",
    "noise_flip_rate",
    "gold_accuracy",
    "baseline_invalid_count",
    "calls_failed_count",
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
        }
    }
}

/// Every row, judges in summary order, artifacts in result order, then the judge's baseline.
pub fn rows(summary: &Summary) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in &summary.judges {
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
        rows.push(Row::estimate(
            j,
            "",
            "baseline",
            "position_consistency",
            &pc.rate,
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "position_prefers_first_count",
            pairs,
            Some(pc.prefers_first as f64),
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "position_prefers_second_count",
            pairs,
            Some(pc.prefers_second as f64),
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "position_other_count",
            pairs,
            Some(pc.other as f64),
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "position_error_count",
            pairs,
            Some(pc.error as f64),
        ));
        rows.push(Row::estimate(
            j,
            "",
            "baseline",
            "noise_flip_rate",
            &b.noise_flip_rate,
        ));
        rows.push(Row::estimate(
            j,
            "",
            "baseline",
            "gold_accuracy",
            &b.gold_accuracy,
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "baseline_invalid_count",
            None,
            Some(b.invalid as f64),
        ));
        rows.push(Row::value(
            j,
            "",
            "baseline",
            "calls_failed_count",
            Some(j.calls.planned),
            Some(j.calls.failed as f64),
        ));
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
        ])?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// Write `results.csv`.
pub fn write(summary: &Summary, path: &Path) -> std::io::Result<()> {
    let bytes = render(summary).map_err(std::io::Error::other)?;
    std::fs::write(path, bytes)
}
