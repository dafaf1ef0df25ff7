//! One-command reproductions of published judge-bias studies (Chen & Goldfarb-Tarrant 2025,
//! CALM 2024, MT-Bench's position study): a study's design as an [`AuditConfig`] (its
//! template, artifacts, orders and repeats), and a side-by-side table that sets the paper's
//! published values (embedded with their sources, `published.toml`) next to the judge's own,
//! in the paper's units, with a line per finding saying whether this judge shows the paper's
//! effect, the opposite, or nothing detectable at this n.
//!
//! The table is computed from an ordinary [`Summary`], so a stored run re-renders it exactly.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

use crate::analyze::summary::Summary;
use crate::analyze::{Estimate, JudgeResult};
use crate::audit::AuditConfig;
use crate::judge::config::JudgeConfig;
use crate::stats::sign_test;

/// The embedded published values (TOML), with their sources.
pub const PUBLISHED: &str = include_str!("published.toml");

/// What a finding measures, and so its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Chen's sample-level tie detection T, in %.
    TieDetection,
    /// Chen's model-level win-rate shift WR, in %.
    WinrateShift,
    /// CALM's robustness rate RR (share of verdicts unchanged), 0–1.
    RobustnessRate,
    /// MT-Bench's share of pairs with the same verdict in both orders, in %.
    PositionConsistent,
    /// MT-Bench's shares biased to the first / second slot, in %.
    PositionFirstVsSecond,
}

impl Metric {
    /// The unit the paper reports the metric in.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RobustnessRate => "ratio",
            _ => "%",
        }
    }
}

/// The direction of the paper's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The judges favour the artifact (or the first slot).
    Positive,
    /// The judges disfavour the artifact.
    Negative,
    /// An effect whose sign varies by judge.
    Any,
    /// No effect beyond ± `bound` (without a bound: a descriptive figure, no test).
    None,
}

/// One value a paper reports for one of its judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedValue {
    /// The paper's judge (or a summary such as "largest of 11 judges").
    pub judge: String,
    /// The value, in the metric's unit.
    pub value: f64,
}

/// One published finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable id within the study.
    pub id: String,
    /// What is measured.
    pub metric: Metric,
    /// The artifact (absent for the position-consistency metrics, which use the baseline).
    #[serde(default)]
    pub artifact: Option<String>,
    /// The paper's direction.
    pub direction: Direction,
    /// For `direction = "none"`: the bound the paper's judges stay within.
    #[serde(default)]
    pub bound: Option<f64>,
    /// The finding in words.
    pub claim: String,
    /// Where the values come from.
    pub source: String,
    /// The paper's values.
    pub values: Vec<PublishedValue>,
}

/// A study's design and findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    /// Command-line name (`chen2025`, `calm2024`, `mtbench-position`).
    pub id: String,
    /// Full citation.
    pub title: String,
    /// The paper's judge template (a built-in template name).
    pub template: String,
    /// The paper's artifacts, as catalog ids.
    pub artifacts: Vec<String>,
    /// Baseline repeats per order.
    pub repeats: u32,
    /// Published findings.
    #[serde(rename = "finding")]
    pub findings: Vec<Finding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Published {
    study: Vec<Study>,
}

/// Every embedded study.
pub fn studies() -> Vec<Study> {
    // The file is part of the build and checked by a unit test, so a parse failure is a bug.
    toml::from_str::<Published>(PUBLISHED)
        .expect("src/reproduce/published.toml parses")
        .study
}

/// The study named `id`, or an error listing the known ones.
pub fn study(id: &str) -> Result<Study, String> {
    let all = studies();
    let known: Vec<String> = all.iter().map(|s| s.id.clone()).collect();
    all.into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("unknown study `{id}` (known: {})", known.join(", ")))
}

/// Settings of a reproduction run besides the study.
#[derive(Debug, Clone, PartialEq)]
pub struct ReproduceOptions {
    /// The pairs (JSONL or CSV, or a public schema the loaders know); `None`: the built-in pairs.
    pub data: Option<std::path::PathBuf>,
    /// Use at most this many pairs.
    pub limit: Option<usize>,
    /// Run seed.
    pub seed: u64,
    /// Keep the judge's own template instead of the paper's (the table says so).
    pub keep_template: bool,
}

/// The audit that runs `study`'s design on `judge`.
pub fn study_config(
    study: &Study,
    mut judge: JudgeConfig,
    options: &ReproduceOptions,
) -> AuditConfig {
    if !options.keep_template {
        judge.template = study.template.clone();
    }
    let mut config = AuditConfig::empty();
    config.seed = options.seed;
    config.dataset.path = options.data.clone();
    config.dataset.limit = options.limit;
    config.design.artifacts = study.artifacts.clone();
    config.design.repeats = study.repeats;
    config.inline_judges = vec![judge];
    config
}

/// How the judge's value relates to the paper's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The interval excludes no effect, in the paper's direction.
    ShowsEffect,
    /// The interval excludes no effect, in the opposite direction.
    Opposite,
    /// The interval includes no effect: nothing detectable at this n.
    NotDetectable,
    /// `direction = "none"`: the interval lies within the paper's bound.
    WithinBound,
    /// `direction = "none"`: the interval lies beyond the paper's bound.
    BeyondBound,
    /// `direction = "none"`: the interval straddles the bound.
    Inconclusive,
    /// A descriptive figure, compared by eye.
    Descriptive,
    /// The audit has no value for it (artifact missing or no valid verdicts).
    NotMeasured,
}

/// The judge's value of one finding, in the paper's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Point estimate.
    pub value: f64,
    /// Lower bound of the 95% interval (per finding, not adjusted for multiplicity).
    pub ci_low: Option<f64>,
    /// Upper bound.
    pub ci_high: Option<f64>,
    /// Observations behind it.
    pub n: u64,
    /// A second figure where the paper reports two (MT-Bench: biased to the second slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second: Option<f64>,
    /// The p-value of the test behind the outcome, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

/// One line of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The published finding.
    pub finding: Finding,
    /// Unit of both columns.
    pub unit: String,
    /// This judge's value.
    pub measured: Option<Measured>,
    /// How it relates to the paper's.
    pub outcome: Outcome,
    /// The outcome in a sentence.
    pub verdict: String,
}

/// The side-by-side table of a study for one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reproduction {
    /// Study id.
    pub study: String,
    /// Citation.
    pub title: String,
    /// The judge.
    pub judge: String,
    /// Whether it is a simulated reference judge.
    pub simulated: bool,
    /// The template the judge used.
    pub template: String,
    /// Whether that is the paper's template.
    pub paper_template: bool,
    /// Pairs audited.
    pub pairs: usize,
    /// Dataset name.
    pub dataset: String,
    /// One row per finding.
    pub rows: Vec<Row>,
}

/// Significance level of every outcome (the intervals are 95%).
const ALPHA: f64 = 0.05;

fn from_estimate(e: &Estimate, scale: f64) -> Option<Measured> {
    Some(Measured {
        value: e.estimate? * scale,
        ci_low: e.ci_low.map(|v| v * scale),
        ci_high: e.ci_high.map(|v| v * scale),
        n: e.n,
        second: None,
        p_value: e.p_value,
    })
}

fn signed_outcome(m: &Measured, direction: Direction) -> Outcome {
    let (Some(lo), Some(hi)) = (m.ci_low, m.ci_high) else {
        return Outcome::NotDetectable;
    };
    let sign = if lo > 0.0 {
        1
    } else if hi < 0.0 {
        -1
    } else {
        return Outcome::NotDetectable;
    };
    match (direction, sign) {
        (Direction::Any, _) | (Direction::Positive, 1) | (Direction::Negative, -1) => {
            Outcome::ShowsEffect
        }
        _ => Outcome::Opposite,
    }
}

fn bounded_outcome(m: &Measured, bound: f64) -> Outcome {
    let (Some(lo), Some(hi)) = (m.ci_low, m.ci_high) else {
        return Outcome::Inconclusive;
    };
    if lo > -bound && hi < bound {
        Outcome::WithinBound
    } else if lo >= bound || hi <= -bound {
        Outcome::BeyondBound
    } else {
        Outcome::Inconclusive
    }
}

fn measure(finding: &Finding, judge: &JudgeResult) -> (Option<Measured>, Outcome) {
    let artifact = finding
        .artifact
        .as_deref()
        .and_then(|a| judge.artifacts.iter().find(|r| r.artifact == a));
    let measured = match finding.metric {
        Metric::TieDetection => artifact.and_then(|a| from_estimate(&a.tie_detection.score, 100.0)),
        Metric::WinrateShift => artifact.and_then(|a| from_estimate(&a.winrate_shift.shift, 100.0)),
        Metric::RobustnessRate => artifact.and_then(|a| {
            let flip = &a.flip_rate.rate;
            Some(Measured {
                value: 1.0 - flip.estimate?,
                ci_low: flip.ci_high.map(|h| 1.0 - h),
                ci_high: flip.ci_low.map(|l| 1.0 - l),
                n: flip.n,
                second: None,
                p_value: a.excess_flip_rate.p_value,
            })
        }),
        Metric::PositionConsistent => {
            let pc = &judge.baseline.position_consistency;
            from_estimate(&pc.rate, 100.0)
        }
        Metric::PositionFirstVsSecond => {
            let pc = &judge.baseline.position_consistency;
            (pc.n + pc.error > 0).then(|| Measured {
                value: pc.shares.prefers_first * 100.0,
                ci_low: None,
                ci_high: None,
                n: pc.n,
                second: Some(pc.shares.prefers_second * 100.0),
                p_value: Some(sign_test(pc.prefers_first, pc.prefers_second)),
            })
        }
    };
    let Some(m) = measured else {
        return (None, Outcome::NotMeasured);
    };
    let outcome = match (finding.metric, finding.direction) {
        (Metric::RobustnessRate, _) => {
            // Verdicts change beyond the judge's own run-to-run noise: the excess flip rate's
            // interval lies above 0.
            let excess = artifact.map(|a| &a.excess_flip_rate);
            match excess.and_then(|e| e.ci_low) {
                Some(lo) if lo > 0.0 => Outcome::ShowsEffect,
                _ => Outcome::NotDetectable,
            }
        }
        (Metric::PositionFirstVsSecond, direction) => {
            let pc = &judge.baseline.position_consistency;
            match m.p_value {
                Some(p) if p < ALPHA => {
                    let first = pc.prefers_first > pc.prefers_second;
                    if direction == Direction::Any || first == (direction == Direction::Positive) {
                        Outcome::ShowsEffect
                    } else {
                        Outcome::Opposite
                    }
                }
                _ => Outcome::NotDetectable,
            }
        }
        (_, Direction::None) => match finding.bound {
            Some(bound) => bounded_outcome(&m, bound),
            None => Outcome::Descriptive,
        },
        (_, direction) => signed_outcome(&m, direction),
    };
    (Some(m), outcome)
}

fn verdict_sentence(finding: &Finding, m: Option<&Measured>, outcome: Outcome) -> String {
    let unit = finding.metric.unit();
    let interval = m
        .and_then(|m| {
            Some(format!(
                "[{}, {}]",
                fmt(m.ci_low?, unit),
                fmt(m.ci_high?, unit)
            ))
        })
        .unwrap_or_default();
    match outcome {
        Outcome::ShowsEffect => match finding.metric {
            Metric::RobustnessRate => format!(
                "shows the paper's effect: verdicts change beyond the judge's run-to-run noise (RR {interval})"
            ),
            Metric::PositionFirstVsSecond => {
                "shows the paper's effect: the judge favours the first slot (sign test p < 0.05)"
                    .to_string()
            }
            _ => format!("shows the paper's effect: interval {interval} excludes 0"),
        },
        Outcome::Opposite => match finding.metric {
            Metric::PositionFirstVsSecond => {
                "the opposite: the judge favours the second slot (sign test p < 0.05)".to_string()
            }
            _ => format!("the opposite of the paper's effect: interval {interval} excludes 0 on the other side"),
        },
        Outcome::NotDetectable => match finding.metric {
            Metric::RobustnessRate => "nothing detectable at this n: verdict changes are within the judge's run-to-run noise".to_string(),
            Metric::PositionFirstVsSecond => "nothing detectable at this n: first and second slot biases do not differ (sign test p >= 0.05)".to_string(),
            _ => format!("nothing detectable at this n: interval {interval} includes 0"),
        },
        Outcome::WithinBound => format!(
            "agrees with the paper: interval {interval} lies within ±{}",
            fmt(finding.bound.unwrap_or(0.0), unit)
        ),
        Outcome::BeyondBound => format!(
            "differs from the paper: interval {interval} lies beyond ±{}",
            fmt(finding.bound.unwrap_or(0.0), unit)
        ),
        Outcome::Inconclusive => format!(
            "inconclusive at this n: interval {interval} straddles ±{}",
            fmt(finding.bound.unwrap_or(0.0), unit)
        ),
        Outcome::Descriptive => "descriptive: compare with the paper's judges".to_string(),
        Outcome::NotMeasured => "not measured: the audit has no valid verdicts for it".to_string(),
    }
}

fn fmt(v: f64, unit: &str) -> String {
    if unit == "%" {
        format!("{v:.1}%")
    } else {
        format!("{v:.3}")
    }
}

/// The side-by-side table of `study` for `judge` in `summary`.
pub fn reproduction(
    study: &Study,
    summary: &Summary,
    judge: &str,
    template: &str,
) -> Result<Reproduction, String> {
    let result = summary
        .judges
        .iter()
        .find(|j| j.name == judge)
        .ok_or_else(|| format!("the run has no judge named `{judge}`"))?;
    let rows = study
        .findings
        .iter()
        .map(|finding| {
            let (measured, outcome) = measure(finding, result);
            Row {
                verdict: verdict_sentence(finding, measured.as_ref(), outcome),
                unit: finding.metric.unit().to_string(),
                finding: finding.clone(),
                measured,
                outcome,
            }
        })
        .collect();
    Ok(Reproduction {
        study: study.id.clone(),
        title: study.title.clone(),
        judge: judge.to_string(),
        simulated: result.simulated,
        template: template.to_string(),
        paper_template: template == study.template,
        pairs: summary.dataset.pairs,
        dataset: summary.dataset.name.clone(),
        rows,
    })
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The table as Markdown (also printed by `judge-audit reproduce`).
pub fn render_markdown(r: &Reproduction) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Reproduction: {}\n", md_cell(&r.title));
    let simulated = if r.simulated {
        " (SIMULATED judge)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "Judge `{}`{simulated} on {} pairs of `{}`; template `{}`{}.",
        md_cell(&r.judge),
        r.pairs,
        md_cell(&r.dataset),
        md_cell(&r.template),
        if r.paper_template {
            " (the paper's)"
        } else {
            " (the judge's own, not the paper's)"
        }
    );
    let _ = writeln!(
        out,
        "Intervals are 95% per finding, not adjusted for multiplicity; the audit report beside this file carries the Holm-adjusted tests.\n"
    );
    let _ = writeln!(out, "| finding | paper | this judge | n | outcome |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in &r.rows {
        let unit = row.finding.metric.unit();
        let paper: Vec<String> = row
            .finding
            .values
            .iter()
            .map(|v| format!("{} {}", md_cell(&v.judge), fmt(v.value, unit)))
            .collect();
        let measured = match &row.measured {
            None => "—".to_string(),
            Some(m) => {
                let mut s = fmt(m.value, unit);
                if let Some(second) = m.second {
                    s = format!("first {s} / second {}", fmt(second, unit));
                }
                if let (Some(lo), Some(hi)) = (m.ci_low, m.ci_high) {
                    let _ = write!(s, " [{}, {}]", fmt(lo, unit), fmt(hi, unit));
                }
                s
            }
        };
        let n = row.measured.as_ref().map_or(0, |m| m.n);
        let _ = writeln!(
            out,
            "| **{}**: {} ({}) | {} | {measured} | {n} | {} |",
            md_cell(&row.finding.id),
            md_cell(&row.finding.claim),
            md_cell(&row.finding.source),
            paper.join("; "),
            md_cell(&row.verdict)
        );
    }
    out
}

/// Write `reproduction.md` and `reproduction.json` into `out`.
pub fn write(r: &Reproduction, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("reproduction.md"), render_markdown(r))?;
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(out.join("reproduction.json"), json + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_studies_parse_and_name_catalog_artifacts_and_builtin_templates() {
        let all = studies();
        let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["chen2025", "calm2024", "mtbench-position"]);
        let catalog = crate::perturb::Catalog::builtin();
        for s in &all {
            crate::judge::template::Template::builtin(&s.template).expect("a built-in template");
            for a in &s.artifacts {
                assert!(
                    catalog.get(a).is_some(),
                    "{} names unknown artifact {a}",
                    s.id
                );
            }
            for f in &s.findings {
                assert!(!f.values.is_empty(), "{}: {} has no values", s.id, f.id);
                if let Some(a) = &f.artifact {
                    assert!(s.artifacts.contains(a), "{}: {} measures {a}", s.id, f.id);
                }
                if f.bound.is_some() {
                    assert_eq!(
                        f.direction,
                        Direction::None,
                        "{}: a bound without direction none",
                        f.id
                    );
                }
            }
        }
        assert!(
            study("nope")
                .unwrap_err()
                .contains("chen2025, calm2024, mtbench-position")
        );
    }

    fn measured(lo: f64, hi: f64) -> Measured {
        Measured {
            value: (lo + hi) / 2.0,
            ci_low: Some(lo),
            ci_high: Some(hi),
            n: 10,
            second: None,
            p_value: None,
        }
    }

    #[test]
    fn outcomes_follow_the_interval_and_the_papers_direction() {
        assert_eq!(
            signed_outcome(&measured(1.0, 5.0), Direction::Positive),
            Outcome::ShowsEffect
        );
        assert_eq!(
            signed_outcome(&measured(-5.0, -1.0), Direction::Positive),
            Outcome::Opposite
        );
        assert_eq!(
            signed_outcome(&measured(-5.0, -1.0), Direction::Negative),
            Outcome::ShowsEffect
        );
        assert_eq!(
            signed_outcome(&measured(-5.0, -1.0), Direction::Any),
            Outcome::ShowsEffect
        );
        assert_eq!(
            signed_outcome(&measured(-1.0, 1.0), Direction::Positive),
            Outcome::NotDetectable
        );
        assert_eq!(
            bounded_outcome(&measured(-2.0, 2.0), 2.5),
            Outcome::WithinBound
        );
        assert_eq!(
            bounded_outcome(&measured(3.0, 9.0), 2.5),
            Outcome::BeyondBound
        );
        assert_eq!(
            bounded_outcome(&measured(1.0, 9.0), 2.5),
            Outcome::Inconclusive
        );
    }
}
