//! Reports: the summary document and one exporter per format. Exporters only format what they
//! are given; they never compute a statistic.

pub mod arrow;
mod charts;
mod charts_pointwise;
pub mod compare;
pub mod csv;
pub mod format;
pub mod gh_summary;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod mitigation;
pub mod pointwise;
pub mod rewrites;
pub mod svg;
pub mod templates;
pub mod text;
pub mod view;

pub use view::{Exporter, Format, ReportView, Section};

// The summary's types are defined beside the analysis that builds them; re-exported here,
// where readers of `summary.json` have always found them.
pub use crate::analyze::summary::{
    ArtifactInfo, DatasetInfo, JudgeInfo, PlanInfo, SCHEMA_VERSION, Summary, ToolInfo, Warning,
};
use std::path::{Path, PathBuf};

/// The words every format shows for a run with pending calls.
pub const INCOMPLETE_BANNER: &str = "incomplete run: verdicts provisional";

impl Summary {
    /// The summary with its warnings derived from the results (replacing any it had), so every
    /// exporter shows the same ones.
    pub fn with_warnings(mut self) -> Summary {
        let mut warnings = Vec::new();
        // First, since it qualifies every verdict below it.
        if let Some(c) = &self.completeness {
            warnings.push(Warning {
                kind: "run_incomplete".into(),
                judge: None,
                message: format!(
                    "{INCOMPLETE_BANNER}: {} of {} planned calls committed ({} failed), {} pending (never sent; not counted as failed); continue it with `judge-audit run --resume RUN_DIR`",
                    format::count(c.committed),
                    format::count(c.planned),
                    format::count(c.failed),
                    format::count(c.pending)
                ),
            });
        }
        if self.dataset.skipped > 0 {
            warnings.push(Warning {
                kind: "records_skipped".into(),
                judge: None,
                message: format!(
                    "{} skipped as invalid (--skip-invalid); the audit uses the other {}",
                    format::counted(self.dataset.skipped as u64, "dataset record"),
                    format::counted(self.dataset.pairs as u64, "pair")
                ),
            });
        }
        for info in &self.judge_configs {
            let max_tokens = info.config.get("max_tokens").and_then(|v| v.as_u64());
            if let (Some(min), Some(max)) = (info.template_min_max_tokens, max_tokens)
                && max < u64::from(min)
            {
                warnings.push(Warning {
                    kind: "template_limit".into(),
                    judge: Some(info.name.clone()),
                    message: format!(
                        "max_tokens = {max} is below the minimum of {min} that template `{}` declares: replies may be cut off before the verdict and counted unparseable",
                        info.template
                    ),
                });
            }
        }
        // An artifact that changed under half of its answers: once per distinct count, naming
        // the judges it concerns (judges audited on the same pairs share one).
        let mut low_change: Vec<(&str, Vec<&str>)> = Vec::new();
        for j in &self.judges {
            for a in &j.artifacts {
                if let Some(w) = a.perturbation.as_ref().and_then(|c| c.warning.as_deref()) {
                    match low_change.iter_mut().find(|(m, _)| *m == w) {
                        Some((_, judges)) => judges.push(&j.name),
                        None => low_change.push((w, vec![&j.name])),
                    }
                }
            }
        }
        for (message, judges) in low_change {
            let (judge, message) = if judges.len() == 1 {
                (Some(judges[0].to_string()), message.to_string())
            } else {
                (None, format!("{message} (judges: {})", judges.join(", ")))
            };
            warnings.push(Warning {
                kind: "artifact_low_change".into(),
                judge,
                message,
            });
        }
        for j in &self.judges {
            if let Some(reason) = &j.stopped {
                warnings.push(Warning {
                    kind: "judge_stopped".into(),
                    judge: Some(j.name.clone()),
                    message: format!(
                        "stopped by a permanent error, the audit is incomplete: {reason}"
                    ),
                });
            }
            let c = &j.calls;
            if c.failed > 0 {
                warnings.push(Warning {
                    kind: "calls_failed".into(),
                    judge: Some(j.name.clone()),
                    message: format!(
                        "{} of {} planned failed after retries (counted, not dropped)",
                        format::counted(c.failed, "call"),
                        format::count(c.planned)
                    ),
                });
            }
            if let Some(mass) = j.soft.as_ref().and_then(|s| s.covered_mass)
                && mass < crate::analyze::LOW_LABEL_MASS
            {
                let share = if mass < 0.5 { "a minority" } else { "part" };
                warnings.push(Warning {
                    kind: "label_mass_low".into(),
                    judge: Some(j.name.clone()),
                    message: format!(
                        "label probabilities cover only {:.0}% of the next-token mass on average (P(a) + P(b) + P(tie)); the soft verdict rests on {share} of the mass, the rest went to tokens that are no label",
                        100.0 * mass
                    ),
                });
            }
            if c.pending > 0 {
                warnings.push(Warning {
                    kind: "calls_pending".into(),
                    judge: Some(j.name.clone()),
                    message: format!(
                        "{} of {} planned not sent yet (pending): its verdict is provisional",
                        format::counted(c.pending, "call"),
                        format::count(c.planned)
                    ),
                });
            }
            if c.invalid > 0 {
                warnings.push(Warning {
                    kind: "verdicts_unparseable".into(),
                    judge: Some(j.name.clone()),
                    message: format!(
                        "{} could not be parsed (counted, never coerced)",
                        format::counted(c.invalid, "verdict")
                    ),
                });
            }
        }
        if let Some(p) = &self.pointwise {
            let juries = p
                .juries
                .iter()
                .map(|j| (&j.jury, std::slice::from_ref(&j.criterion)));
            let judges = p.judges.iter().map(|j| (&j.judge, j.criteria.as_slice()));
            for (name, criteria) in judges.chain(juries) {
                let calls: u64 = criteria.iter().map(|c| c.calls).sum();
                let (unparseable, off) = criteria.iter().fold((0, 0), |(u, o), c| {
                    (u + c.invalid.unparseable, o + c.invalid.out_of_range)
                });
                if unparseable + off > 0 {
                    warnings.push(Warning {
                        kind: "grades_invalid".into(),
                        judge: Some(name.clone()),
                        message: format!(
                            "{} of {} could not be read ({} unparseable, {} off the scale; counted, never coerced)",
                            format::counted(unparseable + off, "grade"),
                            format::count(calls),
                            format::count(unparseable),
                            format::count(off)
                        ),
                    });
                }
            }
        }
        self.warnings = warnings;
        self
    }
}

/// Write `summary.json` (pretty, trailing newline; byte-identical for identical inputs).
pub fn write_json(summary: &Summary, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, JsonExporter.render(&ReportView::new(summary))?)
}

/// File names of the default reports, in the order [`write_all`] writes them.
pub const REPORT_FILES: [&str; 4] = ["summary.json", "report.md", "report.html", "results.csv"];

/// `summary.json`.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn format(&self) -> Format {
        Format::Json
    }

    fn file_name(&self) -> &'static str {
        "summary.json"
    }

    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>> {
        let mut text = serde_json::to_string_pretty(view.summary).map_err(std::io::Error::other)?;
        text.push('\n');
        Ok(text.into_bytes())
    }
}

/// Write the default reports of `summary` into the folder `out` (created if missing):
/// `summary.json`, `report.md`, `report.html` and `results.csv`. Returns the paths written.
/// Identical summaries give byte-identical files. An error names the file that could not be
/// written.
pub fn write_all(summary: &Summary, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    write_formats(&ReportView::new(summary), &Format::DEFAULT, out)
}

/// Write `formats` of `view` into the folder `out` (created if missing), each once, in the
/// order given. Returns the paths written. An error names the file that could not be written.
pub fn write_formats(
    view: &ReportView<'_>,
    formats: &[Format],
    out: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let named = |path: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(out).map_err(|e| named(out, e))?;
    let mut written = Vec::with_capacity(formats.len());
    let mut done = Vec::with_capacity(formats.len());
    for &format in formats {
        if done.contains(&format) {
            continue;
        }
        done.push(format);
        let exporter = format.exporter();
        let path = out.join(exporter.file_name());
        exporter
            .render(view)
            .and_then(|bytes| std::fs::write(&path, bytes))
            .map_err(|e| named(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The outcome of a `--fail-on` gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// True when no judge reached the threshold verdict.
    pub passed: bool,
    /// The line to print: `gate: PASS (...)` or `gate: FAIL (...)`.
    pub line: String,
}

/// Every gated verdict of the summary, as (name, verdict): the pairwise judges, then the
/// pointwise judges (juries are not gated, as for pairwise juries).
pub fn gated_verdicts(summary: &Summary) -> Vec<(&str, crate::analyze::Trust)> {
    let mut out: Vec<(&str, crate::analyze::Trust)> = summary
        .judges
        .iter()
        .map(|j| (j.name.as_str(), j.trust.verdict))
        .collect();
    if let Some(p) = &summary.pointwise {
        out.extend(p.judges.iter().map(|j| (j.judge.as_str(), j.trust.verdict)));
    }
    out
}

/// The judges (pairwise and pointwise) the audit holds no evidence on: a gate exits 2 for them.
pub fn unaudited(summary: &Summary) -> Vec<&str> {
    gated_verdicts(summary)
        .into_iter()
        .filter(|(_, v)| *v == crate::analyze::Trust::CouldNotAudit)
        .map(|(n, _)| n)
        .collect()
}

/// Evaluate a `--fail-on` gate: it fails when any judge's verdict (pairwise or pointwise) is
/// `threshold` or worse (CAUTION fails on CAUTION and REJECT; REJECT only on REJECT).
pub fn gate(summary: &Summary, threshold: crate::analyze::Trust) -> Gate {
    let option = threshold.label().to_lowercase();
    let verdicts = gated_verdicts(summary);
    let tripped: Vec<String> = verdicts
        .iter()
        .filter(|(_, v)| *v >= threshold)
        .map(|(n, v)| format!("{n} {}", v.label()))
        .collect();
    if verdicts.is_empty() {
        return Gate {
            passed: false,
            line: format!("gate: FAIL (--fail-on {option}: the summary has no judge to check)"),
        };
    }
    if tripped.is_empty() {
        let worst = verdicts
            .iter()
            .map(|(_, v)| *v)
            .max()
            .map(|t| t.label())
            .unwrap_or("none");
        Gate {
            passed: true,
            line: format!(
                "gate: PASS (--fail-on {option}: no judge at {} or worse; worst verdict {worst})",
                threshold.label()
            ),
        }
    } else {
        Gate {
            passed: false,
            line: format!(
                "gate: FAIL (--fail-on {option}: {} of {} judges at {} or worse: {})",
                tripped.len(),
                verdicts.len(),
                threshold.label(),
                tripped.join(", ")
            ),
        }
    }
}
