//! Reports: the summary document and one exporter per format. Exporters only format what they
//! are given; they never compute a statistic.

pub mod arrow;
mod charts;
pub mod compare;
pub mod csv;
pub mod format;
pub mod gh_summary;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod rewrites;
pub mod svg;
pub mod text;
pub mod view;

pub use view::{Exporter, Format, ReportView, Section};

use crate::analyze::{AgreementResult, AnalysisInfo, FlipExample, JudgeResult, JuryAnalysis};
use crate::design::PlanCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the `summary.json` schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Tool identity recorded in every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `judge-audit`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: "judge-audit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The dataset as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Name (file name or `builtin`).
    pub name: String,
    /// sha256 of the canonical pairs.
    pub hash: String,
    /// Pairs used.
    pub pairs: usize,
    /// Records skipped as invalid (`--skip-invalid`).
    pub skipped: usize,
    /// Pairs per category.
    pub categories: BTreeMap<String, usize>,
}

/// An artifact as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Citation.
    pub source: String,
    /// Expected effect from the literature.
    pub expected_effect: String,
    /// One-line description of the operation.
    pub operation: String,
}

/// A judge's configuration as recorded in the summary (no secret, ever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeInfo {
    /// Name.
    pub name: String,
    /// True for simulated judges.
    pub simulated: bool,
    /// Backend kind.
    pub backend: String,
    /// Model id.
    pub model: String,
    /// Template name.
    pub template: String,
    /// sha256 of the template content.
    pub template_sha256: String,
    /// The full configuration as loaded (API keys are never part of it; only env var names).
    pub config: serde_json::Value,
}

impl JudgeInfo {
    /// The judge's configured prices, typed; `None` when it has none.
    pub fn pricing(&self) -> Option<crate::judge::config::Pricing> {
        self.config
            .get("pricing")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
    }
}

/// The plan as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInfo {
    /// Baseline repeats.
    pub repeats: u32,
    /// Tie-detection targets.
    pub tie_targets: String,
    /// Artifact ids.
    pub artifacts: Vec<String>,
    /// Total calls.
    pub total_calls: usize,
    /// Calls per judge and condition.
    pub calls_by_judge: PlanCounts,
}

/// Everything a report shows: the content of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Tool identity.
    pub tool: ToolInfo,
    /// The run's seed (perturbations, simulated judges, bootstrap, retry jitter).
    pub seed: u64,
    /// Dataset.
    pub dataset: DatasetInfo,
    /// Plan.
    pub plan: PlanInfo,
    /// Artifacts audited.
    pub artifacts: Vec<ArtifactInfo>,
    /// Judge configurations.
    pub judge_configs: Vec<JudgeInfo>,
    /// Per-judge results.
    pub judges: Vec<JudgeResult>,
    /// Flipped examples (a few per judge and artifact), for reports to show.
    pub examples: Vec<FlipExample>,
    /// Juries aggregated post hoc from the judges' verdicts, analysed like judges (`kind` =
    /// `jury`, `members`, `rule`); empty with fewer than two judges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub juries: Vec<JudgeResult>,
    /// Agreement between judges (pairwise κ / π, Fleiss' κ, Krippendorff's α).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<AgreementResult>,
    /// Jury design: rules, weights, juror error correlation, effective size, composer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jury: Option<JuryAnalysis>,
    /// How the analysis was run: bootstrap method and size, α, power, multiplicity families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisInfo>,
    /// How much of the plan the run committed; present only when calls are pending (an
    /// interrupted or unfinished run, whose verdicts are provisional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<crate::analyze::Completeness>,
    /// Warnings about the run (judge stopped, records skipped, failed calls, unparseable
    /// verdicts), shown by every exporter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// LLM-rewritten artifacts: rewriter, meaning-check failures, examples (absent without
    /// rewrite artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<rewrites::RewriteSection>,
}

/// The words every format shows for a run with pending calls.
pub const INCOMPLETE_BANNER: &str = "incomplete run: verdicts provisional";

/// A warning about the run, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// What happened: `run_incomplete`, `judge_stopped`, `records_skipped`, `calls_failed`,
    /// `calls_pending`, `label_mass_low` or `verdicts_unparseable`.
    pub kind: String,
    /// The judge it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// The warning in words, numbers included.
    pub message: String,
}

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

/// Evaluate a `--fail-on` gate: it fails when any judge's verdict is `threshold` or worse
/// (CAUTION fails on CAUTION and REJECT; REJECT only on REJECT).
pub fn gate(summary: &Summary, threshold: crate::analyze::Trust) -> Gate {
    let option = threshold.label().to_lowercase();
    let tripped: Vec<String> = summary
        .judges
        .iter()
        .filter(|j| j.trust.verdict >= threshold)
        .map(|j| format!("{} {}", j.name, j.trust.verdict.label()))
        .collect();
    if summary.judges.is_empty() {
        return Gate {
            passed: false,
            line: format!("gate: FAIL (--fail-on {option}: the summary has no judge to check)"),
        };
    }
    if tripped.is_empty() {
        let worst = summary
            .judges
            .iter()
            .map(|j| j.trust.verdict)
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
                summary.judges.len(),
                threshold.label(),
                tripped.join(", ")
            ),
        }
    }
}
